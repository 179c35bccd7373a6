"""The concept-model bundle: everything the app needs to open one concept model.

A bundle is a folder (or the same members in one ``.zip`` file)::

    manifest.json           format + version, backbone (id, spec, feature dim), SAE config,
                            thresholds, provenance, sha256 of every binary part
    sae.safetensors         the Matryoshka SAE (docs/method.md §2)
    relations.safetensors   co-occurrence statistics, top tokens, μ (docs/method.md §4)
    names.json              automatic names, candidates, annotator edits (docs/method.md §5)
    thumbnails/NNNNN.jpg    optional: a strip of the concept's top patches

Loading validates every part and raises a specific :class:`BundleError` subclass whose message
says what is wrong and where. ``names.json`` is not hash-checked: annotators edit it.
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
from typing import Any, Mapping

from .. import safetensors_io
from ..fileio import atomic_output

FORMAT = "insight-concept-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SAE_FILE = "sae.safetensors"
RELATIONS_FILE = "relations.safetensors"
NAMES_FILE = "names.json"
THUMBNAILS_DIR = "thumbnails"
HASHED_PARTS = (SAE_FILE, RELATIONS_FILE)
PROBE_FILE = "probe.safetensors"  # optional: concept-bottleneck probe, see add_probe()


class BundleError(RuntimeError):
    """A concept-model bundle cannot be used; subclasses say why."""


class BundleMissingPartError(BundleError):
    """A required file of the bundle is absent."""


class BundleVersionError(BundleError):
    """The bundle was written by a newer Insight Desktop."""


class BundleIntegrityError(BundleError):
    """A part does not match the hash recorded in the manifest, or cannot be parsed."""


class BundleIncompatibleError(BundleError):
    """Parts disagree with each other or with the backbone (e.g. SAE width ≠ feature dim)."""


@dataclass(frozen=True)
class BundleManifest:
    backbone: Mapping[str, Any]          # {"id", "spec", "feature_dim"}
    sae_config: Mapping[str, Any]        # SAEConfig.to_dict()
    thresholds: Mapping[str, float]      # {"sae_threshold", "tau", "eps"}
    provenance: Mapping[str, Any]        # source images, token count, date, command, …
    files: Mapping[str, str] = field(default_factory=dict)  # part → sha256
    thumbnails: Mapping[str, Any] = field(default_factory=dict)  # {"count", "crop_px", "per_concept"}
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": self.format_version, "backbone": dict(self.backbone),
                "sae": dict(self.sae_config), "thresholds": dict(self.thresholds),
                "provenance": dict(self.provenance), "files": dict(self.files), "thumbnails": dict(self.thumbnails)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> "BundleManifest":
        if d.get("format") != FORMAT:
            raise BundleError(f"{where} is not an Insight concept model (manifest format {d.get('format')!r})")
        version = d.get("format_version")
        if not isinstance(version, int):
            raise BundleIntegrityError(f"{where}: manifest has no valid format_version")
        if version > FORMAT_VERSION:
            raise BundleVersionError(f"{where} has bundle format {version}, newer than this Insight Desktop reads "
                                     f"({FORMAT_VERSION}): please update the application")
        try:
            return cls(backbone=d["backbone"], sae_config=d["sae"], thresholds=d["thresholds"],
                       provenance=d.get("provenance", {}), files=d.get("files", {}),
                       thumbnails=d.get("thumbnails", {}), format_version=version)
        except KeyError as exc:
            raise BundleIntegrityError(f"{where}: manifest lacks the entry {exc}") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- reading: a folder or a zip, the same members ----------------------------------------------
class _Parts:
    """Uniform read access to the members of a bundle folder or zip file."""

    def __init__(self, path: Path):
        self.path = path
        self._zip = None
        if path.is_file():
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise BundleIntegrityError(f"'{path}' is not a readable bundle zip file: {exc}") from exc
            names = self._zip.namelist()
            # Accept zips whose members sit in one top-level folder (as made by most zip tools).
            prefixes = {n.split("/", 1)[0] + "/" for n in names if "/" in n}
            self._prefix = ""
            if MANIFEST not in names and len(prefixes) == 1 and prefixes.pop() + MANIFEST in names:
                self._prefix = names[0].split("/", 1)[0] + "/"
            self._names = {n[len(self._prefix):] for n in names if n.startswith(self._prefix)}
        elif not path.is_dir():
            raise BundleMissingPartError(f"concept model '{path}' does not exist")

    def exists(self, name: str) -> bool:
        return name in self._names if self._zip else (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        if not self.exists(name):
            raise BundleMissingPartError(f"concept model '{self.path}' lacks its part '{name}'")
        try:
            if self._zip:
                return self._zip.read(self._prefix + name)
            return (self.path / name).read_bytes()
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise BundleIntegrityError(f"concept model '{self.path}': cannot read '{name}': {exc}") from exc

    def members(self, folder: str) -> list[str]:
        """Names of the parts inside ``folder`` (e.g. ``thumbnails``), as ``folder/file``."""
        if self._zip:
            return sorted(n for n in self._names if n.startswith(folder + "/") and not n.endswith("/"))
        where = self.path / folder
        return sorted(f"{folder}/{p.name}" for p in where.iterdir() if p.is_file()) if where.is_dir() else []

    def close(self) -> None:
        if self._zip:
            self._zip.close()


class ConceptModel:
    """A loaded, validated bundle. Parts load on first use; ``load(..., eager=True)`` reads all."""

    def __init__(self, path: Path, parts: _Parts, manifest: BundleManifest):
        self.path, self._parts, self.manifest = path, parts, manifest

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, *, eager: bool = True) -> "ConceptModel":
        path = Path(path)
        parts = _Parts(path)
        try:
            raw = json.loads(parts.read(MANIFEST))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleIntegrityError(f"concept model '{path}': manifest.json is not valid JSON: {exc}") from exc
        manifest = BundleManifest.from_dict(raw, f"'{path}'")
        model = cls(path, parts, manifest)
        model._check_parts()
        if eager:
            _ = model.sae, model.relations, model.names
        return model

    def _check_parts(self) -> None:
        from ..sae import SAEConfig

        for name in (SAE_FILE, RELATIONS_FILE, NAMES_FILE):
            if not self._parts.exists(name):
                raise BundleMissingPartError(f"concept model '{self.path}' lacks its part '{name}'")
        for name, expected in self.manifest.files.items():
            actual = sha256_bytes(self._parts.read(name))
            if actual != expected:
                raise BundleIntegrityError(
                    f"concept model '{self.path}': '{name}' does not match its recorded hash "
                    f"(expected {expected[:12]}…, found {actual[:12]}…): the file was changed or damaged")
        try:
            self.sae_config = SAEConfig.from_dict(self.manifest.sae_config)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleIntegrityError(f"concept model '{self.path}': invalid SAE config in manifest: {exc}") from exc
        dim = self.manifest.backbone.get("feature_dim")
        if dim is not None and int(dim) != self.sae_config.d_in:
            raise BundleIncompatibleError(
                f"concept model '{self.path}': the SAE reads {self.sae_config.d_in}-dim features but the "
                f"backbone {self.manifest.backbone.get('id')!r} gives {dim}-dim features")

    # -- parts -------------------------------------------------------------------------------
    @cached_property
    def sae(self):
        from ..sae import SAEError
        from ..sae.io import sae_from_tensors

        tensors, meta = safetensors_io.load_torch(self._parts.read(SAE_FILE), f"'{self.path}/{SAE_FILE}'",
                                                  BundleIntegrityError)
        try:
            sae = sae_from_tensors(self.sae_config, tensors, source=f"'{self.path}/{SAE_FILE}'", metadata=meta)
        except SAEError as exc:
            raise BundleIncompatibleError(str(exc)) from exc
        return sae

    @cached_property
    def relations(self):
        from .relations import Relations, RelationsError

        arrays, meta = safetensors_io.load_numpy(self._parts.read(RELATIONS_FILE),
                                                 f"'{self.path}/{RELATIONS_FILE}'", BundleIntegrityError)
        try:
            rel = Relations.from_arrays(arrays, json.loads(meta.get("insight_relations", "{}")))
        except (RelationsError, ValueError) as exc:
            raise BundleIntegrityError(f"concept model '{self.path}': {RELATIONS_FILE}: {exc}") from exc
        if rel.n_concepts != self.sae_config.n_concepts:
            raise BundleIncompatibleError(
                f"concept model '{self.path}': relations cover {rel.n_concepts} concepts, the SAE has "
                f"{self.sae_config.n_concepts}")
        return rel

    @cached_property
    def names(self):
        from .naming import ConceptNames, NamingError

        try:
            names = ConceptNames.from_json(self._parts.read(NAMES_FILE).decode("utf-8"))
        except (NamingError, UnicodeDecodeError, ValueError) as exc:
            raise BundleIntegrityError(f"concept model '{self.path}': {NAMES_FILE} is invalid: {exc}") from exc
        if len(names.names) != self.sae_config.n_concepts:
            raise BundleIncompatibleError(
                f"concept model '{self.path}': {NAMES_FILE} names {len(names.names)} concepts, the SAE has "
                f"{self.sae_config.n_concepts}")
        return names

    def thumbnail(self, concept: int) -> bytes | None:
        """JPEG bytes of the strip of concept ``concept``'s top patches, or None."""
        name = thumbnail_name(concept)
        return self._parts.read(name) if self._parts.exists(name) else None

    @property
    def n_concepts(self) -> int:
        return self.sae_config.n_concepts

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
        m, cfg = self.manifest, self.sae_config
        prov = m.provenance
        return "\n".join([
            f"concept model  {self.path}",
            f"backbone       {m.backbone.get('id')}",
            f"concepts       {cfg.n_concepts} in {len(cfg.group_sizes)} levels {list(cfg.group_sizes)}, k = {cfg.k}",
            "thresholds     " + ", ".join(f"{k} {v:g}" for k, v in m.thresholds.items()),
            f"built          {prov.get('date', '?')} from {prov.get('images', '?')} images, "
            f"{prov.get('tokens', '?')} tokens",
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
    if as_zip:
        with atomic_output(out) as fh, zipfile.ZipFile(fh, "w") as zf:
            for name, data in members.items():
                compress = zipfile.ZIP_STORED if name.endswith((".jpg", ".safetensors")) else zipfile.ZIP_DEFLATED
                zf.writestr(name, data, compress_type=compress)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in members.items():
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
    arrays, meta = safetensors_io.load_numpy(model._parts.read(PROBE_FILE), where, BundleIntegrityError)
    try:
        W = arrays["W"].astype(np.float32)
        names = tuple(str(n) for n in json.loads(meta["class_names"]))
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
    parts = _Parts(path)
    try:
        manifest = json.loads(parts.read(MANIFEST))
        m = int(manifest["sae"]["n_concepts"])
    except (KeyError, TypeError, ValueError) as exc:
        parts.close()
        raise BundleIntegrityError(f"'{path}': cannot read the manifest to add a probe: {exc}") from exc
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
        if parts._zip is None:
            atomic_write_bytes(path / PROBE_FILE, data)
            atomic_write_bytes(path / MANIFEST, manifest_bytes)
            return path
        members = {name: parts.read(name) for name in sorted(parts._names) if not name.endswith("/")}
    finally:
        parts.close()
    members.update({PROBE_FILE: data, MANIFEST: manifest_bytes})
    with atomic_output(path) as fh, zipfile.ZipFile(fh, "w") as zf:
        for name, blob in members.items():
            compress = zipfile.ZIP_STORED if name.endswith((".jpg", ".safetensors")) else zipfile.ZIP_DEFLATED
            zf.writestr(name, blob, compress_type=compress)
    return path
