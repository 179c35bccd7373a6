"""The folder index file: where it lives, opening it, and writing one image at a time.

Every write is one transaction (an image's row, codes, statistics and folder counts together), so
the file is always consistent: a process killed mid-write leaves the image unwritten, and the
next build writes it. WAL mode with ``synchronous=NORMAL``: readers (the app's queries) never
wait for the writer, and a commit costs no fsync (a power cut may lose the last few images, never
the file).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np

from ..tasks.codes import PatchCodes
from . import schema

INDEX_SUFFIX = ".sqlite"


class IndexMismatchError(ValueError):
    """The file is an index of another model, another format version, or not an index at all."""


def folder_key(folder: str | os.PathLike) -> str:
    """16 hex digits of sha256 of the folder's absolute, resolved path."""
    return hashlib.sha256(str(Path(folder).resolve()).encode("utf-8")).hexdigest()[:16]


def indexes_dir() -> Path:
    from ..paths import user_data_dir

    return user_data_dir() / "indexes"


def index_path(folder: str | os.PathLike, model_identity: str, root: str | os.PathLike | None = None) -> Path:
    """Where the index of ``folder`` by the model ``model_identity`` lives:
    ``<user data>/indexes/<folder key>-<first 16 of the identity>.sqlite``."""
    base = Path(root) if root is not None else indexes_dir()
    return base / f"{folder_key(folder)}-{model_identity[:16]}{INDEX_SUFFIX}"


def indexes_of(folder: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Path]:
    """Every index of ``folder`` (one per model it was indexed with), newest first."""
    base = Path(root) if root is not None else indexes_dir()
    found = list(base.glob(f"{folder_key(folder)}-*{INDEX_SUFFIX}")) if base.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


@dataclass(frozen=True)
class ImageEntry:
    """A file of the folder as the index keys it: relative POSIX path, byte size, mtime in ns."""

    path: str
    size: int
    mtime_ns: int

    @property
    def folder(self) -> str:
        parent = str(PurePosixPath(self.path).parent)
        return "" if parent == "." else parent

    @classmethod
    def of(cls, file: Path, root: Path) -> "ImageEntry":
        st = file.stat()
        return cls(file.relative_to(root).as_posix(), int(st.st_size), int(st.st_mtime_ns))


@dataclass(frozen=True)
class StoredState:
    """What the index holds about a file: enough to decide whether to analyse it again."""

    size: int
    mtime_ns: int
    status: str
    error_kind: str | None


def connect(path: str | os.PathLike, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode (``readonly``: queries only, and the file must exist)."""
    if readonly and not Path(path).is_file():
        raise FileNotFoundError(f"no folder index at '{path}'")
    con = sqlite3.connect(os.fspath(path), timeout=30.0)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        if readonly:
            con.execute("PRAGMA query_only=ON")
    except sqlite3.DatabaseError as exc:
        con.close()
        raise IndexMismatchError(f"'{path}' is not a folder index ({exc})") from None
    return con


def read_meta(con: sqlite3.Connection, where: str | os.PathLike) -> dict[str, str]:
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        raise IndexMismatchError(f"'{where}' is not a folder index") from None
    if meta.get("format_version") != str(schema.FORMAT_VERSION):
        raise IndexMismatchError(f"'{where}' is a folder index of format {meta.get('format_version')!r}, "
                                 f"this version reads {schema.FORMAT_VERSION}: index the folder again")
    return meta


class IndexStore:
    """The writer's side of one index file (one per thread; queries use :class:`.queries.FolderIndex`)."""

    def __init__(self, path: str | os.PathLike, *, model_identity: str, n_concepts: int, folder: str | os.PathLike):
        """Open the index at ``path``, creating it (and its folder) for this model if it is not there.
        An existing index of another model or format raises :class:`IndexMismatchError`."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = connect(self.path)
        try:
            with self.con:
                self.con.executescript(schema.SCHEMA)
                if self.con.execute("SELECT count(*) FROM meta").fetchone()[0] == 0:
                    rows = {**schema.layout_meta(n_concepts), "model_identity": model_identity,
                            "folder": str(Path(folder).resolve())}
                    self.con.executemany("INSERT INTO meta VALUES (?, ?)", sorted(rows.items()))
            self.meta = read_meta(self.con, self.path)
            if self.meta.get("model_identity") != model_identity or int(self.meta["n_concepts"]) != n_concepts:
                raise IndexMismatchError(f"'{self.path}' indexes the folder with another concept model")
        except BaseException:
            self.con.close()
            raise
        self._ids = self.meta["concept_dtype"]
        self._codec = self.meta["codec"]
        self._batched = False

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "IndexStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write several images in one transaction (the synthetic benchmark; a build commits each image)."""
        self._batched = True
        try:
            with self.con:
                yield
        finally:
            self._batched = False

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._batched:
            yield
        else:
            with self.con:
                yield

    # ------------------------------------------------------------------ reading its own state
    def stored(self) -> dict[str, StoredState]:
        rows = self.con.execute("SELECT path, size, mtime_ns, status, error_kind FROM images")
        return {p: StoredState(s, t, st, k) for p, s, t, st, k in rows}

    # ------------------------------------------------------------------ writing
    def put_image(self, entry: ImageEntry, codes: PatchCodes, *, image_size: tuple[int, int],
                  analysis_size: tuple[int, int], patch_size: int, fvu: float) -> None:
        """Store ``codes`` (replacing whatever the index held for ``entry.path``) in one transaction."""
        indptr, ids, values = schema.quantize(codes.indptr, codes.indices, codes.values)
        concepts, maxima, sums, patches = _per_concept(indptr, ids, values)
        n = codes.n_patches
        with self._transaction():
            self._remove(entry.path)
            cur = self.con.execute(
                "INSERT INTO images (path, folder, size, mtime_ns, status, image_h, image_w, analysis_h, analysis_w, "
                "patch_size, grid_h, grid_w, n_patches, fvu, nnz) "
                "VALUES (?, ?, ?, ?, 'ok', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.path, entry.folder, entry.size, entry.mtime_ns, *map(int, image_size), *map(int, analysis_size),
                 int(patch_size), *codes.grid, n, None if fvu != fvu else float(fvu), int(ids.size)))
            image_id = cur.lastrowid
            self.con.execute("INSERT INTO codes VALUES (?, ?, ?, ?)",
                             (image_id, schema.encode(indptr, schema.INDPTR_DTYPE, self._codec),
                              schema.encode(ids, self._ids, self._codec),
                              schema.encode(values, schema.VALUE_DTYPE, self._codec)))
            self.con.executemany("INSERT INTO stats VALUES (?, ?, ?, ?, ?)",
                                 zip(concepts.tolist(), [image_id] * concepts.size, maxima.tolist(),
                                     (sums / max(n, 1)).tolist(), patches.tolist()))
            self.con.executemany(
                "INSERT INTO folder_counts VALUES (?, ?, 1) "
                "ON CONFLICT (folder, concept) DO UPDATE SET images = images + 1",
                ((entry.folder, c) for c in concepts.tolist()))

    def put_error(self, entry: ImageEntry, kind: str, message: str) -> None:
        """Record that ``entry`` could not be indexed (``kind``: schema.UNREADABLE or schema.ANALYSIS_FAILED)."""
        with self._transaction():
            self._remove(entry.path)
            self.con.execute("INSERT INTO images (path, folder, size, mtime_ns, status, error, error_kind) "
                             "VALUES (?, ?, ?, ?, 'error', ?, ?)",
                             (entry.path, entry.folder, entry.size, entry.mtime_ns, message, kind))

    def remove(self, paths: Iterable[str]) -> None:
        """Drop these images (files deleted from the folder), one transaction each."""
        for path in paths:
            with self._transaction():
                self._remove(path)

    def _remove(self, path: str) -> None:
        row = self.con.execute("SELECT i.id, i.folder, c.concepts FROM images i LEFT JOIN codes c ON c.image_id = i.id "
                               "WHERE i.path = ?", (path,)).fetchone()
        if row is None:
            return
        image_id, folder, blob = row
        if blob is not None:
            concepts = np.unique(schema.decode(blob, self._ids, self._codec)).tolist()
            self.con.executemany("DELETE FROM stats WHERE concept = ? AND image_id = ?",
                                 ((c, image_id) for c in concepts))
            self.con.executemany("UPDATE folder_counts SET images = images - 1 WHERE folder = ? AND concept = ?",
                                 ((folder, c) for c in concepts))
            self.con.execute("DELETE FROM folder_counts WHERE folder = ? AND images <= 0", (folder,))
            self.con.execute("DELETE FROM codes WHERE image_id = ?", (image_id,))
        self.con.execute("DELETE FROM images WHERE id = ?", (image_id,))

    def compact(self) -> None:
        """Checkpoint the WAL into the file and VACUUM (after many deletions; the benchmark measures after it)."""
        self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.con.execute("VACUUM")


def _per_concept(indptr: np.ndarray, ids: np.ndarray, values: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per concept that fires: (ids ascending, max, sum over patches, patches where it fires),
    from the stored float16 values (so ``max`` is exactly the best decoded patch)."""
    if not ids.size:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty, empty.astype(np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids, v = ids[order].astype(np.int64), values[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    # a concept fires at most once per patch (CSR ids are unique within a row), so entries = patches
    return (sorted_ids[starts], np.maximum.reduceat(v, starts), np.add.reduceat(v, starts),
            np.diff(np.r_[starts, sorted_ids.size]))
