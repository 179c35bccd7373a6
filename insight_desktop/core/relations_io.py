"""Relations on disk: one safetensors file (arrays) whose metadata holds one JSON entry (facts).

Arrays (sparse matrices as their CSR parts)::

    f                                   int64 [m]
    D.indptr  D.indices  D.data         CSR [m, m], float64
    C.data                              int64, on D's pattern (C and D share it by construction)
    C.indptr  C.indices                 only when C's pattern differs from D's
    top_tokens  top_values              int64 / float32 [m, top_n]
    top_codes.indptr/.indices/.data     CSR [m·top_n, m], float32

Written atomically (temp file, fsync, rename), read with clear :class:`RelationsError` messages.
No pickles. The writer streams one array at a time into the file (:func:`write_safetensors`)
instead of building the whole file in memory first (``safetensors.numpy.save`` would): C and D
alone can be hundreds of MB, and a checkpoint must not double the memory of the pass it saves.
Files are plain safetensors, read back with the ``safetensors`` library.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from .fileio import atomic_output
from .relations_codes import RelationsError

FORMAT = "insight-relations"
FORMAT_VERSION = 1
_META_KEY = "insight_relations"
_ST_DTYPES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64",
              np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


class LazyTensor(NamedTuple):
    """An array announced by dtype and shape, produced only when it is written."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    produce: Callable[[], np.ndarray]

    @classmethod
    def of(cls, name: str, arr: np.ndarray) -> "LazyTensor":
        return cls(name, arr.dtype, tuple(arr.shape), lambda: arr)


def write_safetensors(path: str | Path, tensors: Sequence[LazyTensor], metadata: Mapping[str, str]) -> Path:
    """Write a safetensors file atomically, producing and writing one array at a time."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for t in tensors:
        dtype = np.dtype(t.dtype)
        if dtype not in _ST_DTYPES:
            raise TypeError(f"{t.name}: dtype {dtype} cannot be stored")
        size = int(np.prod(t.shape, dtype=np.int64)) * dtype.itemsize
        header[t.name] = {"dtype": _ST_DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    path = Path(path)
    with atomic_output(path) as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for t in tensors:
            arr = np.ascontiguousarray(t.produce())
            if arr.dtype != np.dtype(t.dtype) or tuple(arr.shape) != tuple(t.shape):
                raise ValueError(f"{t.name}: produced {arr.dtype} {arr.shape}, announced {t.dtype} {t.shape}")
            fh.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).data.cast("B"))
    return path


class SafetensorsReader(Mapping):
    """Read-only mapping over an open safetensors file; each array is read when first asked for."""

    def __init__(self, handle):
        self._fh = handle
        self._keys = list(handle.keys())

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise KeyError(key)
        return self._fh.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _csr_parts(prefix: str, mat: sp.csr_matrix) -> dict[str, np.ndarray]:
    # np.asarray: no copy when the index arrays already have the stored dtype.
    return {f"{prefix}.indptr": np.asarray(mat.indptr, dtype=np.int64),
            f"{prefix}.indices": np.asarray(mat.indices, dtype=np.int32), f"{prefix}.data": mat.data}


def relations_to_arrays(rel) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {"f": rel.f, "top_tokens": rel.top_tokens, "top_values": rel.top_values}
    arrays.update(_csr_parts("D", rel.D))
    arrays.update(_csr_parts("top_codes", rel.top_codes))
    same_pattern = (rel.C.nnz == rel.D.nnz and np.array_equal(rel.C.indptr, rel.D.indptr)
                    and np.array_equal(rel.C.indices, rel.D.indices))
    arrays.update({"C.data": rel.C.data} if same_pattern else _csr_parts("C", rel.C))
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_concepts": rel.n_concepts,
                "n_tokens": rel.n_tokens, "group_ends": list(rel.group_ends), "tau": rel.tau, "eps": rel.eps,
                "top_n": rel.top_n, "provenance": dict(rel.provenance)}
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata


def relations_from_arrays(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]):
    from .relations_model import Relations

    if metadata.get("format") != FORMAT:
        raise RelationsError(f"not an Insight relations file (format {metadata.get('format')!r})")
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise RelationsError(f"relations file format {metadata['format_version']} was written by a newer "
                             f"Insight Desktop (this version reads up to {FORMAT_VERSION})")
    try:
        m, top_n = int(metadata["n_concepts"]), int(metadata["top_n"])
        D = _csr("D", arrays, (m, m))
        if "C.indptr" in arrays:
            C = _csr("C", arrays, (m, m))
        else:
            C = sp.csr_matrix((arrays["C.data"], D.indices, D.indptr), shape=(m, m))
        codes = _csr("top_codes", arrays, (m * top_n, m))
        return Relations(n_concepts=m, n_tokens=int(metadata["n_tokens"]), group_ends=tuple(metadata["group_ends"]),
                         f=arrays["f"], C=C, D=D, top_tokens=arrays["top_tokens"], top_values=arrays["top_values"],
                         top_codes=codes, tau=float(metadata["tau"]), eps=float(metadata["eps"]),
                         provenance=metadata.get("provenance") or {})
    except KeyError as exc:
        raise RelationsError(f"relations data is incomplete: {exc.args[0]!r} is missing") from exc
    except (ValueError, TypeError) as exc:
        raise RelationsError(f"relations data is inconsistent: {exc}") from exc


def _csr(prefix: str, arrays: Mapping[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    indptr, indices, data = (arrays[f"{prefix}.{p}"] for p in ("indptr", "indices", "data"))
    if indptr.ndim != 1 or indptr.size != shape[0] + 1:
        raise RelationsError(f"{prefix}: indptr has {indptr.size} entries, expected {shape[0] + 1}")
    if indices.size != data.size or (indptr.size and indptr[-1] != data.size):
        raise RelationsError(f"{prefix}: {indices.size} indices, {data.size} values, indptr ends at {indptr[-1]}")
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def save_relations(rel, path: str | Path) -> Path:
    arrays, metadata = relations_to_arrays(rel)
    return write_safetensors(path, [LazyTensor.of(k, v) for k, v in arrays.items()],
                             {_META_KEY: json.dumps(metadata, sort_keys=True)})


def load_relations(path: str | Path):
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise RelationsError(f"relations file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="np") as fh:
            raw = (fh.metadata() or {}).get(_META_KEY)
            if raw is None:
                raise RelationsError(f"'{path}' is a safetensors file but holds no Insight relations")
            arrays = dict(SafetensorsReader(fh))
    except (SafetensorError, OSError) as exc:
        raise RelationsError(f"relations file '{path}' is truncated or damaged: {exc}") from exc
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise RelationsError(f"relations file '{path}': unreadable metadata: {exc}") from exc
    try:
        return relations_from_arrays(arrays, metadata)
    except RelationsError as exc:
        raise RelationsError(f"relations file '{path}': {exc}") from exc
