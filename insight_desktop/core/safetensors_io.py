"""safetensors beyond the library's load/save: metadata with the tensors, streaming writes, lazy reads.

* In memory: read tensors *and* metadata from bytes (e.g. a zip member), write bytes.
  ``safetensors.*.load`` returns tensors only; the metadata lives in the JSON header, which is
  specified as an 8-byte little-endian length followed by that many bytes of JSON.
* Streaming: :func:`write_safetensors` writes a file atomically one array at a time
  (:class:`LazyTensor` produces each array only when it is written) instead of building the whole
  file in memory first (``safetensors.numpy.save`` would): relation statistics and their
  checkpoints can be hundreds of MB. :class:`SafetensorsReader` reads an open file array by array.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from .fileio import atomic_output

_ST_DTYPES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64",
              np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
              np.dtype(np.float16): "F16", np.dtype(np.int16): "I16", np.dtype(np.uint16): "U16",
              np.dtype(np.int8): "I8", np.dtype(np.uint32): "U32", np.dtype(np.uint64): "U64"}


def metadata_of(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("header length exceeds the file size (truncated?)")
    header = json.loads(data[8:8 + n])
    return dict(header.get("__metadata__") or {})


def load_numpy(data: bytes, where: str,
               error: type[Exception] = ValueError) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors.numpy import load

    try:
        return load(data), metadata_of(data)
    except Exception as exc:  # noqa: BLE001 — safetensors raises several types for damaged data
        raise error(f"{where} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc


def load_torch(data: bytes, where: str, error: type[Exception] = ValueError) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors.torch import load

    try:
        return load(data), metadata_of(data)
    except Exception as exc:  # noqa: BLE001
        raise error(f"{where} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc


def dump_numpy(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.numpy import save

    return _sorted_header(save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata))


def dump_torch(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return _sorted_header(save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata))


def _sorted_header(data: bytes) -> bytes:
    """``data`` with its JSON header's keys in a fixed order: safetensors writes the metadata from a
    hash map, whose order changes from call to call, so equal inputs would give different bytes
    (and a rebuilt or resumed model bundle would not be byte-identical to the first)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


# ----------------------------------------------------------------------------- streaming files
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
            if arr.size:  # an empty array has no bytes (and memoryview cannot cast a zero-length shape)
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
