"""Opening a backbone whose options may name files in the model store.

Backbones take local files (and open_clip tags found in open_clip's own cache); they never import
the store. This module sits above both. :func:`open_backbone` turns every ``store:<id>`` option
into the installed file's path, hands an open_clip ``pretrained`` tag the store's copy of its
weights (used when open_clip's cache has none) and a hint on how to get them, and then builds the
backbone. The backbone's spec keeps the ``store:`` references as written, so a concept model built
on it stays portable between machines. Every place that builds a backbone from a spec (the
analyzer, the CLI, the build dialog, the demo) calls :func:`open_backbone`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..backbones import Backbone, BackboneError, BackboneSpec, create_backbone
from ..backbones.openclip_loading import CHECKPOINT_SUFFIXES, looks_like_path
from .model_store import ModelStore, StoreError, is_store_reference

__all__ = ["open_backbone", "resolved_options"]


def open_backbone(spec: BackboneSpec | str, device: str | None = "auto", *, store: ModelStore | None = None,
                  **options: Any) -> Backbone:
    """:func:`~insight_desktop.core.backbones.create_backbone` with model-store references resolved.

    ``spec`` and ``options`` as for ``create_backbone``; ``store`` defaults to the user's store
    (read only when an option needs it). A reference to a missing item raises
    :class:`~insight_desktop.core.backbones.BackboneError` with the store's advice.
    """
    if isinstance(spec, str):
        spec = BackboneSpec(spec, options)
    elif options:
        spec = BackboneSpec(spec.name, {**spec.options, **options})
    backbone = create_backbone(spec.name, device=device, **resolved_options(spec, store))
    written = {k: v for k, v in spec.options.items() if is_store_reference(v)}
    if written:  # the spec records what was asked for, not this machine's paths
        backbone.spec = dataclasses.replace(backbone.spec, options={**backbone.spec.options, **written})
    return backbone


def resolved_options(spec: BackboneSpec, store: ModelStore | None = None) -> dict[str, Any]:
    """``spec.options`` with every ``store:<id>`` replaced by the installed file's path; for an open_clip
    ``pretrained`` tag also ``pretrained_fallback`` (the store's copy of its weights) and
    ``offline_hint`` (the ``insight models get`` command that fetches them), when there are any."""
    store = ModelStore() if store is None else store  # reads nothing until asked
    out = {}
    for key, value in spec.options.items():
        if is_store_reference(value):
            try:
                value = str(store.resolve(value))
            except StoreError as exc:
                raise BackboneError(str(exc)) from None
        out[key] = value
    tag, model = spec.options.get("pretrained"), spec.options.get("model")
    if isinstance(tag, str) and isinstance(model, str) and _is_openclip_tag(tag):
        # open_clip's model name: a JSON model config registers under its file stem
        model_name = Path(model).stem if looks_like_path(model, (".json",)) else model
        fallback = _store_tag_file(store, model_name, tag)
        if fallback is not None:
            out["pretrained_fallback"] = fallback
        hint = _fetch_hint(store, model_name, tag)
        if hint:
            out["offline_hint"] = hint
    return out


def _is_openclip_tag(value: str) -> bool:
    """A pretrained tag such as ``laion2b_s34b_b88k``, not a file and not a store reference."""
    return not is_store_reference(value) and not looks_like_path(value, CHECKPOINT_SUFFIXES)


def _store_tag_file(store: ModelStore, model_name: str, tag: str) -> str | None:
    """A checkpoint of this model + tag imported into (or fetched by) the model store, if any."""
    try:
        item = store.find_openclip(model_name, tag)
    except StoreError:  # a damaged index must not hide the backbone's "not available offline" message
        return None
    return str(item.path) if item is not None and item.path.is_file() else None


def _fetch_hint(store: ModelStore, model_name: str, tag: str) -> str:
    """How to get this model + tag into the store, when the catalogue knows a file for it."""
    try:
        ids = [e.id for e in store.known_models() if e.open_clip == (model_name, tag)]
    except StoreError:
        return ""
    return f"Or fetch them once with `insight models get {ids[0]}` (or import them there)." if ids else ""
