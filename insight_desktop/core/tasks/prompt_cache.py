"""Class-prompt embeddings kept on disk, so a class list costs the text tower once per machine.

Encoding a class's 80 prompts costs more than analysing an image, and loading a text tower
(MiniLM through sentence-transformers, a CLIP text tower) costs seconds more: without this cache
every start of the app paid both before its first heatmap.

One small ``.npy`` file per class (``t_c``, float32 ``[d]``, unit norm) under the user cache dir,
named by the sha256 of (format, text-tower identity, template set, class name). The identity is
the backbone's ``id``, which hashes its weights (a refitted bridge or other weights give other
keys), so a stale entry is never found rather than ever wrong. Files are written atomically;
a damaged or foreign file reads as absent. The folder is bounded (``max_bytes``): when a write
takes it over, the least recently used files go. Read-only *seed* files (safetensors with the
same key fields in their metadata; the demo backbone ships one for its default classes) answer
before the text tower is loaded at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..fileio import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "insight-class-prompts/1"
#: the folder under the user cache dir
FOLDER = "class-prompts"
#: default bound on the folder (≈ 12,000 classes at d = 1281)
MAX_BYTES = 64 << 20


def templates_digest(templates: Sequence[object]) -> str:
    """sha256 of a template set (callables ``name → text``): each template rendered with ``{}``."""
    rendered = [t("{}") if callable(t) else str(t) for t in templates]
    return hashlib.sha256(json.dumps(rendered, ensure_ascii=False).encode("utf-8")).hexdigest()


def prompt_key(identity: str, templates_sha: str, name: str) -> str:
    blob = json.dumps([FORMAT, identity, templates_sha, name], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _valid(v: np.ndarray, dim: int) -> bool:
    return v.shape == (dim,) and bool(np.isfinite(v).all()) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-3


class PromptEmbeddingStore:
    """``t_c`` of class names for one text tower (``identity``) and template set, on disk.

    ``folder`` None means the user cache dir's ``class-prompts``. ``seeds``: read-only safetensors
    files (:func:`write_seed_file`) consulted after the folder. Errors never escape: a cache that
    cannot be read or written only costs encoding time.
    """

    def __init__(self, identity: str, templates_sha: str, dim: int, folder: str | os.PathLike | None = None,
                 seeds: Iterable[str | os.PathLike] = (), max_bytes: int = MAX_BYTES):
        if folder is None:
            from ..paths import user_cache_dir

            folder = user_cache_dir() / FOLDER
        self.folder = Path(folder)
        self.identity, self.templates_sha, self.dim = identity, templates_sha, int(dim)
        self.max_bytes = int(max_bytes)
        self._seed_paths = [Path(p) for p in seeds]
        self._seeds: dict[str, np.ndarray] | None = None

    def _path(self, name: str) -> Path:
        return self.folder / f"{prompt_key(self.identity, self.templates_sha, name)}.npy"

    def get_many(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The embeddings found (folder first, then seeds), by name; absent names are left out."""
        found: dict[str, np.ndarray] = {}
        for name in names:
            path = self._path(name)
            try:
                v = np.load(path, allow_pickle=False)
                if _valid(v, self.dim):
                    found[name] = v.astype(np.float32, copy=False)
                    os.utime(path)  # recently used: evicted last
                    continue
                log.warning("ignoring damaged class-prompt cache file %s", path)
            except FileNotFoundError:
                pass
            except Exception as exc:  # noqa: BLE001 — any damage means "encode again"
                log.warning("ignoring unreadable class-prompt cache file %s: %s", path, exc)
        missing = [n for n in names if n not in found]
        if missing and self._seed_paths:
            seeds = self._load_seeds()
            found.update({n: seeds[n] for n in missing if n in seeds})
        return found

    def put_many(self, embeddings: Mapping[str, np.ndarray]) -> None:
        """Store freshly encoded embeddings (atomically, one file each), then keep the folder bounded."""
        try:
            for name, v in embeddings.items():
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(v, dtype=np.float32), allow_pickle=False)
                atomic_write_bytes(self._path(name), buf.getvalue())
            self._bound()
        except OSError as exc:  # read-only or full: costs time next run, not this result
            log.warning("cannot write the class-prompt cache in %s: %s", self.folder, exc)

    def _bound(self) -> None:
        files = []
        for entry in os.scandir(self.folder):
            if entry.name.endswith(".npy") and entry.is_file():
                st = entry.stat()
                files.append((st.st_mtime_ns, st.st_size, entry.path))
        total = sum(size for _, size, _ in files)
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(files):  # least recently used first, down to 3/4 of the bound
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size
            if total <= self.max_bytes * 3 // 4:
                break

    def _load_seeds(self) -> dict[str, np.ndarray]:
        if self._seeds is None:
            self._seeds = {}
            for path in self._seed_paths:
                self._seeds.update(read_seed_file(path, self.identity, self.templates_sha, self.dim))
        return self._seeds


def read_seed_file(path: str | os.PathLike, identity: str, templates_sha: str, dim: int) -> dict[str, np.ndarray]:
    """name → ``t_c`` from a seed file, if it was made for this text tower and template set (else {})."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if (meta.get("format"), meta.get("identity"), meta.get("templates_sha256")) != (
                    FORMAT, identity, templates_sha):
                return {}
            names = json.loads(meta.get("names", "[]"))
            emb = fh.get_tensor("embeddings")
        if not isinstance(names, list) or emb.shape != (len(names), dim):
            raise ValueError(f"{len(names)} names for embeddings of shape {emb.shape}")
        return {str(n): emb[i].astype(np.float32) for i, n in enumerate(names) if _valid(emb[i], dim)}
    except Exception as exc:  # noqa: BLE001 — a bad seed file only means encoding
        log.warning("ignoring class-prompt seed file %s: %s", path, exc)
        return {}


def write_seed_file(path: str | os.PathLike, identity: str, templates_sha: str, names: Sequence[str],
                    embeddings: np.ndarray) -> None:
    """Write a seed file (``scripts/build_demo_prompts.py`` makes the demo backbone's)."""
    from safetensors.numpy import save

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.shape[0] != len(names):
        raise ValueError(f"{len(names)} names for {emb.shape[0]} embeddings")
    meta = {"format": FORMAT, "identity": identity, "templates_sha256": templates_sha,
            "names": json.dumps(list(names), ensure_ascii=False)}
    atomic_write_bytes(path, save({"embeddings": emb}, metadata=meta))
