"""Loading OpenCLIP models and CLIP-DINOiser heads from local files, with clear errors.

Everything here works offline: a pretrained tag is resolved to a file already in open_clip's
(Hugging Face or URL) cache *before* any model is built, so a missing download fails fast
with a message that says how to provide the weights, instead of waiting on the network.
Every failure becomes a :class:`BackboneError` that names the file and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .base import BackboneError

if TYPE_CHECKING:  # open_clip is imported when a model is built, not when this module is
    from open_clip.coca_model import CoCa
    from open_clip.model import CLIP, CustomTextCLIP

#: file suffixes accepted as a local OpenCLIP checkpoint
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
#: output channels of CLIP-DINOiser's ``obj_proj`` (768 → 256 for ViT-B/16)
OBJ_PROJ_DIM = 256
_DINOISER_KEYS = ("obj_proj.weight", "obj_proj.bias", "bkg_decoder.weight", "bkg_decoder.bias")


def file_sha256(*paths: str | os.PathLike | None) -> str:
    """sha256 over the bytes of the given files, in order (``None`` entries are skipped)."""
    h = hashlib.sha256()
    for p in paths:
        if p is None:
            continue
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def looks_like_path(value: str, suffixes: tuple[str, ...]) -> bool:
    """A value is a path (not a registry name/tag) if it exists, has a separator or a known suffix."""
    return os.path.exists(value) or os.sep in value or "/" in value or value.lower().endswith(suffixes)


# ----------------------------------------------------------------------------- model config


def resolve_model_config(model: str) -> tuple[str, Path | None]:
    """Return the open_clip model name for ``model`` (a config name or a JSON config path).

    A JSON file is registered with open_clip under its file stem (``add_model_config``), so it
    goes through open_clip's normal config lookup. Returns ``(name, config_path_or_None)``.
    """
    import open_clip

    if not looks_like_path(model, (".json",)):
        if open_clip.get_model_config(model) is None:
            raise BackboneError(f"unknown open_clip model {model!r}; "
                                "give an open_clip model name or a JSON model-config file")
        return model, None
    path = Path(model).expanduser()
    if not path.is_file():
        raise BackboneError(f"model config file {path.name} not found: {path}")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BackboneError(f"model config file {path.name} is not valid JSON ({e}): {path}") from None
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise BackboneError(f"model config file {path.name} needs the keys embed_dim, vision_cfg, text_cfg: {path}")
    name = path.stem
    # open_clip's registry is global and keyed by file stem: never shadow a built-in config.
    builtin = Path(open_clip.__file__).parent / "model_configs" / f"{name}.json"
    if builtin.is_file() and json.loads(builtin.read_text(encoding="utf-8")) != cfg:
        raise BackboneError(f"model config file {path.name} has the name of a built-in open_clip model but differs "
                            "from it; rename the file")
    if open_clip.get_model_config(name) != cfg:  # re-adding rescans every config file: skip if current
        open_clip.add_model_config(path)
    return name, path


# ----------------------------------------------------------------------------- pretrained weights


@dataclass(frozen=True)
class ResolvedWeights:
    """A local checkpoint file plus what open_clip needs to know about the tag it came from."""

    path: Path
    label: str  # the tag, or the file name for a local file
    quick_gelu: bool = False


def resolve_pretrained(model_name: str, pretrained: str | None, cache_dir: str | None, *,
                       fallback_file: str | os.PathLike | None = None, offline_hint: str = "") -> ResolvedWeights:
    """Map ``pretrained`` (a tag or a local file) to a local checkpoint file, without network.

    A tag is looked up in open_clip's caches first; ``fallback_file`` (the caller's copy of that
    tag's weights, e.g. the model store's) is used when they have none. ``offline_hint`` is added
    to the "not available offline" error: how the caller's side can provide the weights.
    """
    import open_clip

    if not pretrained:
        raise BackboneError("no pretrained weights given: pass an open_clip pretrained tag or a local checkpoint file")
    if looks_like_path(pretrained, CHECKPOINT_SUFFIXES):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise BackboneError(f"checkpoint file {path.name} not found: {path}")
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise BackboneError(f"checkpoint file {path.name} has an unsupported type; "
                                f"use one of {', '.join(CHECKPOINT_SUFFIXES)}")
        return ResolvedWeights(path, path.name)
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise BackboneError(
            f"{pretrained!r} is neither a checkpoint file nor a known open_clip pretrained tag for {model_name}"
            + (f"; known tags: {', '.join(tags)}" if tags else "")
        )
    cached = _cached_tag_file(cfg, cache_dir)
    if cached is None and fallback_file is not None and os.path.isfile(fallback_file):
        cached = str(fallback_file)
    if cached is None:
        raise BackboneError(
            f"the weights for {model_name} / {pretrained} are not available offline (not in the open_clip or "
            f"Hugging Face cache{' ' + str(cache_dir) if cache_dir else ''}). Download them once on a connected "
            f"machine (open_clip.create_model({model_name!r}, pretrained={pretrained!r})), or pass a local "
            f"checkpoint file (.safetensors/.bin/.pt/.pth) as pretrained=/path/to/file."
            + (f" {offline_hint}" if offline_hint else "")
        )
    return ResolvedWeights(Path(cached), pretrained, bool(cfg.get("quick_gelu", False)))


def _cached_tag_file(cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    """Where open_clip would find this tag's file in its caches; ``None`` if it would download."""
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            return None
        repo_id, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        # open_clip prefers a safetensors sibling of a .bin/.pth file; so do we.
        candidates = [filename[:-4] + ".safetensors"] if filename.endswith((".bin", ".pth")) else []
        if filename == "open_clip_pytorch_model.bin":
            candidates = ["open_clip_model.safetensors"]
        for name in [*candidates, filename]:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found
        return None
    url = cfg.get("url", "")
    if url:
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        return target if os.path.isfile(target) else None
    return None


def create_openclip_model(
    model_name: str, weights: ResolvedWeights, cache_dir: str | None = None
) -> CLIP | CustomTextCLIP | CoCa:
    """Build the open_clip model and load ``weights`` strictly (weights_only), in eval mode on CPU.

    The type is what ``open_clip.create_model`` builds for any of its configs (it says nn.Module)."""
    import open_clip

    try:
        model = open_clip.create_model(
            model_name,
            pretrained=str(weights.path),
            device="cpu",
            weights_only=True,
            cache_dir=cache_dir,
            force_quick_gelu=weights.quick_gelu,
        )
    except Exception as e:  # open_clip/torch/safetensors raise many types; translate them all
        raise BackboneError(f"cannot load the open_clip checkpoint {weights.path.name} for {model_name}: "
                            f"{_reason(e)} ({weights.path})") from e
    return model.eval()


def _reason(e: BaseException, unreadable: bool = False) -> str:
    """A one-line, human reason for a checkpoint loading failure.

    ``unreadable``: the exception came from reading the file itself, so anything not otherwise
    explained means the file is not a valid checkpoint.
    """
    import pickle

    text = f"{type(e).__name__}: {e}"
    low = text.lower()
    if "error(s) in loading state_dict" in low or "size mismatch" in low or "missing key" in low:
        return "its keys or tensor shapes do not match the model config — " + _first_lines(str(e), 3)
    if "weights only load failed" in low or "weights_only" in low:
        return ("it holds Python objects besides tensors, which torch.load(weights_only=True) refuses for safety; "
                "save just the state dict (or a .safetensors file)")
    corrupt_markers = ("safetensor", "pytorchstreamreader", "zip archive", "central directory", "unpickl",
                       "invalid load key", "eof", "header", "truncated", "deserializ")
    # Unpickling garbage surfaces as KeyError/IndexError/EOFError/UnpicklingError.
    garbage = (KeyError, IndexError, EOFError, pickle.UnpicklingError, UnicodeDecodeError)
    if unreadable or isinstance(e, garbage) or any(m in low for m in corrupt_markers):
        return "the file is truncated, corrupt or not a checkpoint — " + _first_lines(text, 1)
    return _first_lines(text, 2)


def _first_lines(text: str, n: int, limit: int = 400) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    out = " ".join(lines[:n])
    return out if len(out) <= limit else out[: limit - 1] + "…"


# ----------------------------------------------------------------------------- CLIP-DINOiser heads


@dataclass
class DinoiserHeads:
    """CLIP-DINOiser's two trained heads on the ViT layer features (width W)."""

    obj_proj: nn.Conv2d  # W → 256, 3×3, replicate padding: patch embedding for correlation pooling
    bkg_decoder: nn.Conv2d  # W → 1, 1×1: FOUND background score on L2-normalised layer features


def load_dinoiser_heads(path: str | os.PathLike, width: int) -> DinoiserHeads:
    """Read CLIP-DINOiser's ``last.pt`` (weights_only) and build its heads for ViT width ``width``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneError(f"CLIP-DINOiser weights file {path.name} not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BackboneError(f"cannot read CLIP-DINOiser weights {path.name}: {_reason(e, unreadable=True)} "
                            f"({path})") from e
    state = state_dict_of(ckpt)
    if state is None or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"CLIP-DINOiser weights {path.name} hold no state dict (expected a dict of tensors at "
                            f"top level or under {'/'.join(map(repr, STATE_DICT_KEYS))}): {path}")
    tensors = {}
    for key in _DINOISER_KEYS:
        # Training wrappers prefix keys ("module.", "model."): match on the key's suffix.
        hits = [k for k in state if (k == key or k.endswith("." + key)) and isinstance(state[k], torch.Tensor)]
        if len(hits) != 1:
            problem = "is missing" if not hits else f"is ambiguous ({', '.join(sorted(hits))})"
            raise BackboneError(f"CLIP-DINOiser weights {path.name}: key {key!r} {problem}; "
                                f"this does not look like CLIP-DINOiser's last.pt ({path})")
        tensors[key] = state[hits[0]].detach().float()
    expected = {
        "obj_proj.weight": (OBJ_PROJ_DIM, width, 3, 3),
        "obj_proj.bias": (OBJ_PROJ_DIM,),
        "bkg_decoder.weight": (1, width, 1, 1),
        "bkg_decoder.bias": (1,),
    }
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise BackboneError(
                f"CLIP-DINOiser weights {path.name}: {key} has shape {tuple(tensors[key].shape)}, expected {shape} "
                f"for a ViT of width {width}; the file belongs to a different backbone ({path})"
            )
    obj_proj = nn.Conv2d(width, OBJ_PROJ_DIM, 3, padding=1, padding_mode="replicate")
    bkg_decoder = nn.Conv2d(width, 1, 1)
    obj_proj.load_state_dict({"weight": tensors["obj_proj.weight"], "bias": tensors["obj_proj.bias"]})
    bkg_decoder.load_state_dict({"weight": tensors["bkg_decoder.weight"], "bias": tensors["bkg_decoder.bias"]})
    return DinoiserHeads(obj_proj.eval(), bkg_decoder.eval())


#: where training scripts keep the state dict inside a checkpoint: CLIP-DINOiser's ``last.pt`` is
#: ``{'epoch': …, 'model_state_dict': {…}}``; other wrappers use ``state_dict`` or ``model``
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model")


def state_dict_of(ckpt: Any) -> dict[str, Any] | None:
    """The dict of tensors of a loaded checkpoint: the checkpoint itself, or the dict a training
    wrapper keeps under one of :data:`STATE_DICT_KEYS`; None when it is not a dict at all."""
    if not isinstance(ckpt, dict):
        return None
    for key in STATE_DICT_KEYS:
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    return ckpt
