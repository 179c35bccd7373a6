"""The concept-model bundle: everything the app needs to open one concept model.

A bundle is a folder (or the same members in one ``.zip`` file)::

    manifest.json           format + version, backbone (id, spec, feature dim), SAE config,
                            thresholds, provenance, sha256 of every binary part
    sae.safetensors         the Matryoshka SAE (docs/method.md §2)
    relations.safetensors   co-occurrence statistics, top tokens, μ (docs/method.md §4)
    names.json              automatic names, candidates, annotator edits (docs/method.md §5)
    thumbnails/NNNNN.jpg    optional: a strip of the concept's top patches

Loading validates every part and raises a specific :class:`BundleError` subclass whose message
says what is wrong and where. ``names.json`` is not hash-checked: annotators edit it. Bundles
come from anyone, so every JSON field is type-checked and every member size-limited before it
is read (:mod:`.bundle_schema`, :mod:`.bundle_parts`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import safetensors_io
from ..fileio import atomic_output
from . import bundle_schema as schema
from .bundle_parts import MANIFEST, Parts
from .bundle_schema import (  # noqa: F401 — the errors are part of this module's interface
    FORMAT,
    FORMAT_VERSION,
    BundleError,
    BundleIncompatibleError,
    BundleIntegrityError,
    BundleLimitError,
    BundleMissingPartError,
    BundleVersionError,
)

SAE_FILE = "sae.safetensors"
RELATIONS_FILE = "relations.safetensors"
NAMES_FILE = "names.json"
THUMBNAILS_DIR = "thumbnails"
HASHED_PARTS = (SAE_FILE, RELATIONS_FILE)
PROBE_FILE = "probe.safetensors"  # optional: concept-bottleneck probe, see add_probe()


@dataclass(frozen=True)
class BundleManifest:
    backbone: Mapping[str, Any]          # {"id", "spec", "feature_dim"}
    sae_config: Mapping[str, Any]        # SAEConfig.to_dict()
    thresholds: Mapping[str, float]      # {"sae_threshold", "tau", "eps"}
    provenance: Mapping[str, Any]        # source images, token count, date, command, …
    files: Mapping[str, str] = field(default_factory=dict)  # part → sha256
    thumbnails: Mapping[str, Any] = field(default_factory=dict)  # {"count", "crop_px", "per_concept"}
    format_version: int = FORMAT_VERSION

    @property
    def identity(self) -> str:
        """What an analysis or a curation depends on in this model: sha256 of the backbone spec, the
        SAE config, the thresholds and the hash of every binary part (SAE, relations, probe).
        ``names.json`` is left out: a rename changes no analysis, and a curated copy of a bundle is
        the same model."""
        parts = {"backbone": self.backbone, "sae": self.sae_config, "thresholds": self.thresholds,
                 "files": self.files}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": self.format_version, "backbone": dict(self.backbone),
                "sae": dict(self.sae_config), "thresholds": dict(self.thresholds),
                "provenance": dict(self.provenance), "files": dict(self.files), "thumbnails": dict(self.thumbnails)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "BundleManifest":
        """The manifest ``d`` (parsed JSON), every field type-checked (:func:`.bundle_schema.check_manifest`)."""
        return cls(**schema.check_manifest(d, where, HASHED_PARTS))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ConceptModel:
    """A loaded, validated bundle. Parts load on first use; ``load(..., eager=True)`` reads all."""

    def __init__(self, path: Path, parts: Parts, manifest: BundleManifest):
        self.path, self._parts, self.manifest = path, parts, manifest

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, *, eager: bool = True) -> "ConceptModel":
        path = Path(path)
        parts = Parts(path)
        try:
            raw = schema.load_json(parts.read(MANIFEST, schema.MAX_MANIFEST_BYTES), f"concept model '{path}': "
                                   f"{MANIFEST}", max_bytes=schema.MAX_MANIFEST_BYTES)
            model = cls(path, parts, BundleManifest.from_dict(raw, f"'{path}'"))
            model._check_parts()
            if eager:
                _ = model.sae, model.relations, model.names
        except BaseException:
            parts.close()
            raise
        return model

    def _limit(self, name: str) -> int:
        """The most bytes part ``name`` may have, from what the manifest says the model is."""
        m = self.sae_config.n_concepts
        if name == SAE_FILE:
            return schema.sae_part_limit(self.sae_config)
        if name == RELATIONS_FILE:
            return schema.relations_part_limit(m)
        if name == PROBE_FILE:
            return schema.probe_part_limit(m)
        if name == NAMES_FILE:
            return schema.MAX_NAMES_BYTES
        if name == MANIFEST:
            return schema.MAX_MANIFEST_BYTES
        if name.startswith(THUMBNAILS_DIR + "/"):
            return schema.MAX_THUMBNAIL_BYTES
        return schema.MAX_PART_BYTES

    def _read(self, name: str) -> bytes:
        return self._parts.read(name, self._limit(name))

    def _check_parts(self) -> None:
        self.sae_config = schema.sae_config(self.manifest.sae_config, f"'{self.path}'")
        self.notices: tuple[str, ...] = ()
        required = (SAE_FILE, RELATIONS_FILE, NAMES_FILE)
        for name in required:
            if not self._parts.exists(name):
                raise BundleMissingPartError(f"concept model '{self.path}' lacks its part '{name}'")
        total = 0
        for name in dict.fromkeys((*required, *self.manifest.files)):
            if self._parts.exists(name):
                size = self._parts.size(name)
                if size > self._limit(name):
                    self._read(name)  # raises BundleLimitError before reading, naming the part
                total += size
        if total > schema.MAX_TOTAL_BYTES:
            raise BundleLimitError(f"concept model '{self.path}': its parts hold {total:,} bytes, more than the "
                                   f"{schema.MAX_TOTAL_BYTES:,} a concept model may have")
        for name, expected in self.manifest.files.items():
            actual = sha256_bytes(self._read(name))
            if actual != expected:
                raise BundleIntegrityError(
                    f"concept model '{self.path}': '{name}' does not match its recorded hash "
                    f"(expected {expected[:12]}…, found {actual[:12]}…): the file was changed or damaged")
        dim = self.manifest.backbone.get("feature_dim")
        if dim is not None and dim != self.sae_config.d_in:
            raise BundleIncompatibleError(
                f"concept model '{self.path}': the SAE reads {self.sae_config.d_in}-dim features but the "
                f"backbone {schema.short(self.manifest.backbone.get('id'))!r} gives {dim}-dim features")

    # -- parts -------------------------------------------------------------------------------
    @cached_property
    def sae(self):
        from ..sae import SAEError
        from ..sae.io import sae_from_tensors

        tensors, meta = safetensors_io.load_torch(self._read(SAE_FILE), f"'{self.path}/{SAE_FILE}'",
                                                  BundleIntegrityError)
        try:
            sae = sae_from_tensors(self.sae_config, tensors, source=f"'{self.path}/{SAE_FILE}'", metadata=meta)
        except SAEError as exc:
            raise BundleIncompatibleError(str(exc)) from exc
        return sae

    @cached_property
    def relations(self):
        from .relations import Relations, RelationsError

        where = f"concept model '{self.path}': {RELATIONS_FILE}"
        arrays, meta = safetensors_io.load_numpy(self._read(RELATIONS_FILE), where, BundleIntegrityError)
        metadata = schema.check_relations_metadata(meta.get("insight_relations"), f"{where} metadata")
        try:
            rel = Relations.from_arrays(arrays, metadata)
        except RelationsError as exc:
            raise BundleIntegrityError(f"{where}: {exc}") from exc
        if rel.n_concepts != self.sae_config.n_concepts:
            raise BundleIncompatibleError(
                f"concept model '{self.path}': relations cover {rel.n_concepts} concepts, the SAE has "
                f"{self.sae_config.n_concepts}")
        return rel

    @cached_property
    def names(self):
        """The concept names; names too long to show are shortened, and :attr:`notices` says so."""
        names, notices = schema.check_names(self._read(NAMES_FILE), f"concept model '{self.path}'",
                                            self.sae_config.n_concepts)
        self.notices = tuple(dict.fromkeys((*self.notices, *notices)))
        return names

    def thumbnail(self, concept: int) -> bytes | None:
        """JPEG bytes of the strip of concept ``concept``'s top patches, or None."""
        name = thumbnail_name(concept)
        return self._read(name) if self._parts.exists(name) else None

    @property
    def n_concepts(self) -> int:
        return self.sae_config.n_concepts

    @property
    def model_identity(self) -> str:
        """:attr:`BundleManifest.identity` of this model (the key of its analyses and curations)."""
        return self.manifest.identity

    @cached_property
    def probe(self):
        """The optional concept-bottleneck probe: ``(W [C, m] float32 read-only, class names)`` or None."""
        return _read_probe(self) if self._parts.exists(PROBE_FILE) else None

    # -- compatibility -----------------------------------------------------------------------
    def check_backbone(self, backbone) -> None:
        """Raise :class:`BundleIncompatibleError` unless ``backbone`` is the one this model was built on."""
        if int(backbone.feature_dim) != self.sae_config.d_in:
            raise BundleIncompatibleError(
                f"concept model '{self.path}' needs {self.sae_config.d_in}-dim features; backbone "
                f"{backbone.id!r} gives {backbone.feature_dim}")
        expected = self.manifest.backbone.get("id")
        if expected and backbone.id != expected:
            raise BundleIncompatibleError(
                f"concept model '{self.path}' was built on backbone {expected!r}, not {backbone.id!r} "
                "(different weights: the concepts would not mean the same)")

    def close(self) -> None:
        self._parts.close()

    def summary(self) -> str:
        m, cfg, short = self.manifest, self.sae_config, schema.short
        prov = m.provenance
        return "\n".join([
            f"concept model  {self.path}",
            f"backbone       {short(m.backbone.get('id'))}",
            f"concepts       {cfg.n_concepts} in {len(cfg.group_sizes)} levels {list(cfg.group_sizes)}, k = {cfg.k}",
            "thresholds     " + ", ".join(f"{short(k, 40)} {v:g}" for k, v in m.thresholds.items()),
            f"built          {short(prov.get('date', '?'))} from {short(prov.get('images', '?'))} images, "
            f"{short(prov.get('tokens', '?'))} tokens",
            f"thumbnails     {m.thumbnails.get('count', 0)}",
            "probe          " + (f"{len(self.probe[1])} classes" if self._parts.exists(PROBE_FILE) else "none"),
        ])


def thumbnail_name(concept: int) -> str:
    return f"{THUMBNAILS_DIR}/{concept:05d}.jpg"


# -- writing -----------------------------------------------------------------------------------
def write_bundle(out: str | os.PathLike, *, backbone: Mapping[str, Any], sae, relations, names,
                 provenance: Mapping[str, Any], thumbnails: Mapping[int, bytes] | None = None,
                 thumbnail_info: Mapping[str, Any] | None = None, as_zip: bool | None = None,
                 overwrite: bool = False) -> Path:
    """Write a bundle folder (or zip, when ``as_zip`` or ``out`` ends in ``.zip``) atomically."""
    from ..sae.io import sae_tensors_and_metadata

    out = Path(out)
    as_zip = out.suffix.lower() == ".zip" if as_zip is None else as_zip
    if out.exists() and not overwrite:
        raise FileExistsError(f"'{out}' exists; choose another name or allow overwriting")
    tensors, sae_meta = sae_tensors_and_metadata(sae)
    arrays, rel_meta = relations.to_arrays()
    members: dict[str, bytes] = {
        SAE_FILE: safetensors_io.dump_torch(tensors, sae_meta),
        RELATIONS_FILE: safetensors_io.dump_numpy(arrays, {"insight_relations": json.dumps(rel_meta)}),
        NAMES_FILE: names.to_json().encode("utf-8"),
    }
    for concept, jpeg in (thumbnails or {}).items():
        members[thumbnail_name(int(concept))] = jpeg
    manifest = BundleManifest(
        backbone=dict(backbone), sae_config=sae.config.to_dict(),
        thresholds={"sae_threshold": float(sae.threshold), "tau": float(relations.tau), "eps": float(relations.eps)},
        provenance={"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **dict(provenance)},
        files={name: sha256_bytes(members[name]) for name in HASHED_PARTS},
        thumbnails={"count": len(thumbnails or {}), **dict(thumbnail_info or {})},
    )
    members[MANIFEST] = (json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")
    return write_members(out, members.items(), as_zip)


def zip_compression(name: str) -> int:
    """How a member is compressed in a ``.zip`` bundle: JPEG thumbnails and the SAE's float32
    weights are stored (deflate saves under 10 % of them and costs time at every load); the rest
    is deflated — relations (integer counts and sparse indices: 2.4× smaller on the demo model)
    and JSON."""
    return zipfile.ZIP_STORED if name.endswith(".jpg") or name in (SAE_FILE, PROBE_FILE) else zipfile.ZIP_DEFLATED


def write_members(out: Path, members: Iterable[tuple[str, bytes]], as_zip: bool) -> Path:
    """Write a bundle's ``(name, bytes)`` members to ``out`` atomically: one ``.zip`` (see
    :func:`zip_compression`), or a folder built beside it and swapped in (an old folder there is
    moved aside first and deleted only afterwards)."""
    if as_zip:
        with atomic_output(out) as fh, zipfile.ZipFile(fh, "w") as zf:
            for name, data in members:
                zf.writestr(name, data, compress_type=zip_compression(name))
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in members:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if out.exists():  # overwrite: move the old bundle aside first, delete it only afterwards
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# -- optional part: the concept-bottleneck probe (docs/method.md §6a) ------------------------------------
def _read_probe(model: ConceptModel):
    import numpy as np

    where = f"'{model.path}/{PROBE_FILE}'"
    arrays, meta = safetensors_io.load_numpy(model._read(PROBE_FILE), where, BundleIntegrityError)
    try:
        W = arrays["W"].astype(np.float32)
        raw = schema.load_json(meta["class_names"], f"{where} class_names", max_bytes=schema.MAX_MANIFEST_BYTES)
        if not isinstance(raw, list) or len(raw) > schema.MAX_PROBE_CLASSES:
            raise ValueError("class_names must be a list of at most "
                             f"{schema.MAX_PROBE_CLASSES} names")
        names = tuple(schema.short(n) for n in raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleIntegrityError(f"{where} is not a probe (needs tensor 'W' and class_names metadata): "
                                   f"{exc}") from exc
    if W.ndim != 2 or W.shape != (len(names), model.n_concepts):
        raise BundleIncompatibleError(f"{where}: W has shape {W.shape}, expected [{len(names)} classes, "
                                      f"{model.n_concepts} concepts]")
    W.flags.writeable = False
    return W, names


def add_probe(bundle: str | os.PathLike, W, class_names, metadata: Mapping[str, Any] | None = None) -> Path:
    """Store a probe (``W`` [C, m], one name per class) in a bundle folder or zip, atomically.

    The part's hash goes into the manifest, so loading verifies it like the other parts. A folder
    gets the probe file first and the manifest second (a crash in between leaves the old,
    still-valid manifest); a zip is rewritten whole into a temporary file and renamed. An
    existing probe is replaced. Close ConceptModels open on a zip bundle first (Windows cannot
    replace an open file); models loaded before do not see the new probe: load the bundle again.
    """
    import numpy as np

    from ..fileio import atomic_write_bytes

    path = Path(bundle)
    parts = Parts(path)
    try:
        manifest = schema.load_json(parts.read(MANIFEST, schema.MAX_MANIFEST_BYTES), f"'{path}': {MANIFEST}",
                                    max_bytes=schema.MAX_MANIFEST_BYTES)
        m = BundleManifest.from_dict(manifest, f"'{path}'").sae_config["n_concepts"]
    except BundleError:
        parts.close()
        raise
    W = np.ascontiguousarray(np.asarray(W, dtype=np.float32))
    names = [str(n) for n in class_names]
    if W.ndim != 2 or W.shape != (len(names), m):
        parts.close()
        raise ValueError(f"probe W must have shape [{len(names)} classes, {m} concepts], not {W.shape}")
    meta = {"class_names": json.dumps(names), "insight_probe": json.dumps(dict(metadata or {}))}
    data = safetensors_io.dump_numpy({"W": W}, meta)
    manifest["files"] = {**manifest.get("files", {}), PROBE_FILE: sha256_bytes(data)}
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    try:
        if not parts.is_zip:
            atomic_write_bytes(path / PROBE_FILE, data)
            atomic_write_bytes(path / MANIFEST, manifest_bytes)
            return path
        members = {name: parts.read(name, schema.MAX_PART_BYTES) for name in parts.names}
    finally:
        parts.close()
    members.update({PROBE_FILE: data, MANIFEST: manifest_bytes})
    with atomic_output(path) as fh, zipfile.ZipFile(fh, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob, compress_type=zip_compression(name))
    return path
