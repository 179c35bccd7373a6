"""Analyses already computed, kept on disk so that a revisited image or a restored session shows at once.

An entry is one file, ``<key>.analysis.safetensors`` (:mod:`.analysis_store`), under
``user_cache_dir()/analyses``. Its key (:func:`analysis_key`) hashes everything the analysis
depends on: the decoded pixels (so a file changed on disk gets a new key, and a copied or renamed
file keeps its own), the model's content identity (:func:`model_identity`: the hashes its
manifest records for its parts, not its path), the class list, the background flag, the window
settings, and the file format's schema (so an entry of another version is never read).

The cache is bounded: after every put, the least recently *used* entries are deleted until the
total fits the limit (a hit touches the file's mtime; the access time is unreliable on
``noatime`` disks). Entries are written atomically (temporary file + rename), so two app
instances sharing the folder never read half a file; one that vanishes while another instance
reads or evicts is a miss. A damaged, truncated or foreign entry is a miss too, and is deleted.
Nothing here raises on a disk problem: a cache that cannot be used only costs a recomputation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from .paths import user_cache_dir

if TYPE_CHECKING:  # the file format (and the task modules it knows) loads when first used
    from .analysis import Analysis

log = logging.getLogger(__name__)

SUFFIX = ".analysis.safetensors"
#: default bound on the folder (an 8000×6000 analysis with classes is ≈ 0.3 GB, a 448-px one ≈ 1 MB)
DEFAULT_LIMIT_BYTES = 1_000_000_000
#: a temporary file this old belongs to a write that never finished (a crash): delete it
STALE_TEMP_S = 3600.0


def default_folder() -> Path:
    return user_cache_dir() / "analyses"


def model_identity(manifest: Any) -> str:
    """:attr:`.concepts.bundle.BundleManifest.identity`: what an analysis depends on in a model."""
    return manifest.identity


def image_digest(image: np.ndarray) -> str:
    """sha256 of the decoded pixels with their shape and dtype (≈ 0.1 s for 8000×6000 RGB)."""
    image = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    h.update(image.reshape(-1).view(np.uint8).data)  # no copy
    return h.hexdigest()


def analysis_key(image: np.ndarray | str, model: str, classes: Sequence[str] | None, *, background: bool = False,
                 window_mode: str = "fast", options: Mapping[str, Any] | None = None) -> str:
    """The cache key. ``image``: the pixels, or their :func:`image_digest`; ``model``: its
    :func:`model_identity`; ``classes`` None (no segmentation) differs from an empty list;
    ``options``: any other analysis setting (window, stride, classify) that is not the default."""
    from .analysis_store import SCHEMA

    digest = image if isinstance(image, str) else image_digest(image)
    parts = {"schema": SCHEMA, "image": digest, "model": model,
             "classes": None if classes is None else [str(c) for c in classes],
             "background": bool(background), "window_mode": str(window_mode),
             "options": {str(k): v for k, v in sorted((options or {}).items())}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size: int
    used: float  # last use (mtime)


class AnalysisCache:
    """A bounded folder of analyses; thread-safe and safe to share between processes."""

    def __init__(self, folder: str | os.PathLike | None = None, limit_bytes: int = DEFAULT_LIMIT_BYTES):
        self.folder = Path(folder) if folder is not None else default_folder()
        self.limit_bytes = max(0, int(limit_bytes))
        self._lock = threading.Lock()  # one eviction at a time within the process
        self._writer: _Writer | None = None

    def path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.folder / f"{key}{SUFFIX}"

    # ------------------------------------------------------------------ get / put
    def get(self, key: str) -> Analysis | None:
        """The analysis stored under ``key``, or None (not there, unreadable: then deleted)."""
        from .analysis_store import AnalysisFormatError, analysis_from_bytes

        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None  # not there (or being evicted by another instance right now)
        try:
            analysis, meta = analysis_from_bytes(data, str(path))
            if meta.get("key") != key:
                raise AnalysisFormatError(f"{path} holds the analysis of another key")
        except AnalysisFormatError as exc:
            log.info("dropping unreadable analysis cache entry: %s", exc)
            self._remove(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: the last to be evicted
        return analysis

    def put(self, key: str, analysis: Analysis) -> bool:
        """Store ``analysis`` under ``key`` (replacing any entry), then evict down to the limit.
        False when it was not stored (larger than the limit, or the disk refused)."""
        from .analysis_store import save_analysis

        path = self.path(key)
        try:
            size = save_analysis(path, analysis, {"key": key})
        except (OSError, TypeError, ValueError) as exc:
            log.warning("could not store an analysis in the cache %s: %s", self.folder, exc)
            return False
        self.evict()
        return size <= self.limit_bytes and path.exists()

    def put_later(self, key: str, analysis: Analysis) -> None:
        """:meth:`put` on a background thread, so the caller (the worker) is not held up by the write.
        A write cut short by the process ending leaves only a temporary file (removed later)."""
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = _Writer(self)
                self._writer.start()
            writer = self._writer
        writer.jobs.put((key, analysis))

    def wait_for_writes(self, timeout: float | None = None) -> bool:
        """Block until every :meth:`put_later` so far is on disk (tests, the CLI); True when done."""
        writer = self._writer
        if writer is None:
            return True
        done = threading.Event()
        writer.jobs.put(done)
        return done.wait(timeout)

    # ------------------------------------------------------------------ size and eviction
    def entries(self) -> list[CacheEntry]:
        """Every entry, least recently used first."""
        found = []
        for path in self._files():
            if path.name.endswith(SUFFIX) and not path.name.startswith("."):
                with contextlib.suppress(OSError):
                    st = path.stat()
                    found.append(CacheEntry(path.name[:-len(SUFFIX)], path, st.st_size, st.st_mtime))
        return sorted(found, key=lambda e: (e.used, e.key))

    def size_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def set_limit(self, limit_bytes: int) -> None:
        self.limit_bytes = max(0, int(limit_bytes))
        self.evict()

    def evict(self) -> int:
        """Delete least recently used entries (and stale temporary files) until the rest fits; bytes freed."""
        freed = 0
        with self._lock:
            now = time.time()
            for path in self._files():
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if now - path.stat().st_mtime > STALE_TEMP_S:
                            path.unlink()
            entries = self.entries()
            total = sum(e.size for e in entries)
            for entry in entries:
                if total <= self.limit_bytes:
                    break
                if self._remove(entry.path):
                    freed += entry.size
                total -= entry.size  # gone either way: another instance may have taken it
        return freed

    def clear(self) -> int:
        """Delete every entry; the bytes freed."""
        freed = 0
        with self._lock:
            for entry in self.entries():
                if self._remove(entry.path):
                    freed += entry.size
        return freed

    def _files(self) -> Iterator[Path]:
        try:
            yield from self.folder.iterdir()
        except OSError:
            return

    @staticmethod
    def _remove(path: Path) -> bool:
        try:
            path.unlink()
            return True
        except OSError:  # gone already, or open in another process on Windows: leave it
            return False


class _Writer(threading.Thread):
    """Writes queued entries one after the other. A daemon: quitting never waits for a write
    (atomic writes leave no half entry behind, only a temporary file that eviction removes)."""

    def __init__(self, cache: AnalysisCache):
        super().__init__(name="insight-analysis-cache", daemon=True)
        self.cache = cache
        self.jobs: queue.Queue = queue.Queue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if isinstance(job, threading.Event):
                job.set()
            else:
                self.cache.put(*job)
