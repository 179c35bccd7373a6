"""The folder index's SQLite schema and its array layout: what a user reading the file needs to know.

**Why SQLite** (stdlib ``sqlite3``, no new dependency): the file opens in the ``sqlite3`` command
line, DB Browser for SQLite or ``pandas.read_sql``; one transaction per image makes each image's
rows appear all at once or not at all, so a killed build loses at most the image being written
and running it again resumes for free; WAL mode lets the app query the index while it grows.

**Tables** (one file per folder and concept model):

* ``meta(key, value)``: ``format_version``, ``model_identity`` (the bundle manifest's identity),
  ``n_concepts`` (m), ``folder`` (absolute path when built), the dtypes and codec of the blobs.
* ``images``: one row per image file, ``path`` relative to the folder (POSIX ``/``), ``folder``
  its sub-folder ("" for the top), ``size`` and ``mtime_ns`` (what decides "changed": no hash,
  so an unchanged folder is checked without reading any image), ``status`` ``ok`` or ``error``
  (then ``error`` says why and ``error_kind`` is ``unreadable`` — not retried until the file
  changes — or ``analysis`` — retried on the next run, as it may be passing, e.g. out of
  memory), the image's ``image_h × image_w``, the ``analysis_h × analysis_w`` size the backbone
  saw, ``patch_size``, the patch grid ``grid_h × grid_w`` (``n_patches``), the ``fvu`` of the
  SAE's reconstruction and ``nnz`` (stored codes).
* ``codes(image_id, indptr, concepts, activations)``: the image's sparse codes on its grid as
  CSR, patches row-major (patch ``q = r·grid_w + c``). Each blob is a little-endian numpy array,
  compressed with zlib when ``meta.codec`` is ``zlib``::

      indptr      = np.frombuffer(zlib.decompress(b), "<u4")   # [n_patches + 1] row offsets
      concepts    = np.frombuffer(zlib.decompress(b), "<u2")   # [nnz] ids ("<i4" when m > 65535)
      activations = np.frombuffer(zlib.decompress(b), "<f2")   # [nnz] z > 0, float16

  Patch ``q``'s concepts are ``concepts[indptr[q]:indptr[q + 1]]`` (increasing). Activations are
  rounded to float16 (clipped to its largest finite value); codes that round to 0 are dropped,
  so every stored code fires.
* ``stats(concept, image_id, max, mean, patches)``: per image, every concept that fires in it:
  its largest activation, its mean over *all* the image's patches (zeros included) and the
  number of patches where it fires, all from the float16 codes (so ``max`` is exactly the best
  decoded patch). A ``WITHOUT ROWID`` table keyed ``(concept, image_id)``: the rows of one
  concept lie together, which is the index the top-images and frequency queries read.
* ``folder_counts(folder, concept, images)``: how many images of each sub-folder a concept fires
  in, kept up to date with every insert and delete, so the contrast between two groups of
  sub-folders reads a few thousand rows instead of every image's statistics.
"""

from __future__ import annotations

import zlib

import numpy as np

#: bump when the tables or the blob layout change; an index of another version is rebuilt
FORMAT_VERSION = 1
INDPTR_DTYPE = "<u4"
VALUE_DTYPE = "<f2"
#: zlib at this level: ~2× smaller codes (sorted ids of neighbouring patches repeat), ~0.1 ms per image to read
CODEC, ZLIB_LEVEL = "zlib", 6
OK, ERROR = "ok", "error"
UNREADABLE, ANALYSIS_FAILED = "unreadable", "analysis"
_F16_MAX = float(np.finfo(np.float16).max)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    folder TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error TEXT,
    error_kind TEXT,
    image_h INTEGER, image_w INTEGER,
    analysis_h INTEGER, analysis_w INTEGER,
    patch_size INTEGER,
    grid_h INTEGER, grid_w INTEGER,
    n_patches INTEGER,
    fvu REAL,
    nnz INTEGER
);
CREATE INDEX IF NOT EXISTS images_by_folder ON images (folder, status);
CREATE TABLE IF NOT EXISTS codes (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    indptr BLOB NOT NULL,
    concepts BLOB NOT NULL,
    activations BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS stats (
    concept INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    max REAL NOT NULL,
    mean REAL NOT NULL,
    patches INTEGER NOT NULL,
    PRIMARY KEY (concept, image_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folder_counts (
    folder TEXT NOT NULL,
    concept INTEGER NOT NULL,
    images INTEGER NOT NULL,
    PRIMARY KEY (folder, concept)
) WITHOUT ROWID;
"""


def concept_dtype(n_concepts: int) -> str:
    """uint16 ids while every id fits (m ≤ 65535), else int32."""
    return "<u2" if n_concepts <= 65535 else "<i4"


def layout_meta(n_concepts: int) -> dict[str, str]:
    """The ``meta`` rows that describe the blobs (written once, read back by every reader)."""
    return {"format_version": str(FORMAT_VERSION), "n_concepts": str(int(n_concepts)),
            "concept_dtype": concept_dtype(n_concepts), "activation_dtype": VALUE_DTYPE,
            "indptr_dtype": INDPTR_DTYPE, "codec": CODEC,
            "layout": "CSR over the patch grid, patches row-major; see the insight_desktop.core.index.schema docstring"}


def quantize(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays as stored: activations rounded to float16 (clipped to its range), codes that
    round to zero dropped (their patch's offsets shrink accordingly)."""
    v16 = np.minimum(np.asarray(values, np.float32), _F16_MAX).astype(np.float16)
    keep = v16 > 0
    indptr = np.asarray(indptr, np.int64)
    if not keep.all():
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        indptr = kept_before[indptr]
    return indptr.astype(np.uint32), np.asarray(indices)[keep], v16[keep]


def encode(array: np.ndarray, dtype: str, codec: str = CODEC) -> bytes:
    raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return zlib.compress(raw, ZLIB_LEVEL) if codec == "zlib" else raw


def decode(blob: bytes, dtype: str, codec: str = CODEC) -> np.ndarray:
    raw = zlib.decompress(blob) if codec == "zlib" else blob
    return np.frombuffer(raw, dtype=dtype)
