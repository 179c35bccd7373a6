"""An :class:`.analysis.Analysis` as one file and back, exactly: safetensors for the arrays, JSON
(in the safetensors header's metadata) for everything else. Never pickle (ARCHITECTURE rule 6).

Why safetensors and not ``.npz``: it is already the house format; its header says where every
array lies, so reading is one ``read()`` and every array is a zero-copy, read-only view of those
bytes (an ``.npz`` is a zip: each member is unpacked and copied, and compressed members are
inflated); and the file is written one array at a time (:func:`.safetensors_io.write_safetensors`,
atomic), so an 8000×6000 analysis is never held twice in memory.

The value is a tree of frozen dataclasses, tuples, mappings, scalars and arrays. It is walked
generically: every dataclass listed in :data:`TYPES` is written as its type name and its fields,
and rebuilt field by field without calling ``__init__`` (so what comes back is exactly what went
in: the same dtypes, the same values, arrays read-only). A type or a field that this version does
not know makes the file unreadable (:class:`AnalysisFormatError`), as does any damage: a cache
treats that as a miss. :data:`SCHEMA` fingerprints the field names of every listed type, so an
analysis written before a field was added or renamed is never read as the new shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import struct
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .analysis import Analysis, ConceptActivation, Faithfulness
from .safetensors_io import LazyTensor, write_safetensors
from .tasks.classification import ClassExplanation, ClassificationResult
from .tasks.codes import ConceptContribution, PatchCodes
from .tasks.decoder import ActiveDecoder
from .tasks.resample import AxisTaps, GridSampler, NeighbourGram
from .tasks.segmentation import PixelExplanation, Segment, SegmentationResult

FORMAT = "insight-analysis"
#: bump when the layout of the file changes (the schema below follows the dataclasses by itself)
FORMAT_VERSION = 1

#: every type an Analysis may hold; nothing else is ever built from a file
TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Analysis, ConceptActivation, Faithfulness, PatchCodes, ActiveDecoder, ConceptContribution,
    SegmentationResult, Segment, PixelExplanation, NeighbourGram, GridSampler, AxisTaps,
    ClassificationResult, ClassExplanation)}

_FIELDS = {name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in TYPES.items()}

#: safetensors dtype names of the arrays an analysis holds (little-endian)
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def _schema() -> str:
    fields = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in sorted(TYPES.items())}
    return hashlib.sha256(json.dumps([FORMAT_VERSION, fields]).encode()).hexdigest()[:16]


#: changes whenever a listed dataclass gains, loses or renames a field (or the format version changes)
SCHEMA = _schema()


class AnalysisFormatError(ValueError):
    """A file is not a readable analysis of this version (foreign, truncated, damaged or older)."""


# --------------------------------------------------------------------------- value ↔ JSON tree
#: arrays holding every long tuple of plain ints / floats (and columns of tuples of records), end to end:
#: an analysis holds hundreds of thousands of such numbers (each active concept's parents, each
#: segment's contributions), which would be slow to parse and rebuild one JSON node at a time
POOLS = {"ti": ("pool.int", np.int64), "tf": ("pool.float", np.float64)}
POOL_MIN = 4  # shorter tuples stay inline
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _pool_kind(values: tuple) -> str | None:
    """"ti" / "tf" when every value is a plain int (in int64) / a plain float, else None."""
    kinds = {type(v) for v in values}
    if kinds == {int}:
        return "ti" if _INT64[0] <= min(values) and max(values) <= _INT64[1] else None
    return "tf" if kinds == {float} else None


class _Encoder:
    """Turns a value into a JSON tree; its arrays go to ``arrays`` under names ``a0, a1, …``."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.pools: dict[str, list] = {"ti": [], "tf": []}
        # Shared parts (the segmentation's codes are the analysis's) are stored once and come back
        # shared: id → name or number; the values are held so that their ids stay unique meanwhile.
        self._seen: dict[int, tuple[Any, Any]] = {}

    def pool_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.array(self.pools[tag], dtype=dtype) for tag, (name, dtype) in POOLS.items()
                if self.pools[tag]}

    def _pooled(self, tag: str, values: tuple) -> dict:
        pool = self.pools[tag]
        pool.extend(values)
        return {tag: [len(pool) - len(values), len(pool)]}

    def _tuple(self, value: tuple) -> Any:
        if len(value) >= POOL_MIN:
            tag = _pool_kind(value)
            if tag is not None:
                return self._pooled(tag, value)
            cls = type(value[0])
            if TYPES.get(cls.__name__) is cls and all(type(v) is cls for v in value):  # records: by columns
                names = [f.name for f in dataclasses.fields(cls)]
                columns = [tuple(getattr(v, name) for v in value) for name in names]
                tags = [_pool_kind(c) for c in columns]
                if None not in tags:
                    return {"tc": cls.__name__, "cols": {name: self._pooled(t, c)  # type: ignore[arg-type]
                                                         for name, t, c in zip(names, tags, columns)}}
        return {"t": [self.tree(v) for v in value]}

    def tree(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"f": repr(value)}  # JSON has no NaN or ∞
        if id(value) in self._seen:
            return self._seen[id(value)][1]
        if isinstance(value, np.ndarray):
            if value.dtype not in _NAMES:
                raise TypeError(f"an analysis array of dtype {value.dtype} cannot be stored")
            name = f"a{len(self.arrays)}"
            self.arrays[name] = value
            self._seen[id(value)] = (value, {"a": name})
            return {"a": name}
        if isinstance(value, np.generic):
            return {"np": value.dtype.str, "v": self.tree(value.item())}
        if isinstance(value, tuple):
            return self._tuple(value)
        if isinstance(value, list):
            return {"l": [self.tree(v) for v in value]}
        if isinstance(value, (dict, MappingProxyType)):
            return {"m": [[self.tree(k), self.tree(v)] for k, v in value.items()],
                    "ro": isinstance(value, MappingProxyType)}
        cls = type(value)
        if dataclasses.is_dataclass(value) and TYPES.get(cls.__name__) is cls:
            number = len(self._seen)
            self._seen[id(value)] = (value, {"r": number})
            return {"d": cls.__name__, "n": number, "f": {f.name: self.tree(getattr(value, f.name))
                                                          for f in dataclasses.fields(value)}}
        raise TypeError(f"an analysis cannot hold a {cls.__name__}")


class _Decoder:
    """The inverse of :class:`_Encoder`; anything it does not expect is an :class:`AnalysisFormatError`."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.built: dict[int, Any] = {}  # dataclasses rebuilt so far, by number: a later {"r": n} is the same object
        self._pools: dict[str, tuple] = {}

    def _slice(self, tag: str, span: Any) -> tuple:
        if tag not in self._pools:  # plain ints / floats, made in one C loop; slices of a tuple are tuples
            self._pools[tag] = tuple(self.arrays[POOLS[tag][0]].tolist())
        pool = self._pools[tag]
        start, end = (int(v) for v in span)
        if not 0 <= start <= end <= len(pool):
            raise AnalysisFormatError("a tuple lies outside its pool")
        return pool[start:end]

    def _fields(self, name: Any, stored: dict) -> tuple[type, tuple[str, ...]]:
        cls = TYPES.get(name)
        if cls is None:
            raise AnalysisFormatError(f"unknown type {name!r} in the analysis tree")
        names = _FIELDS[name]
        if stored.keys() != set(names):
            raise AnalysisFormatError(f"{cls.__name__} fields differ from this version's")
        return cls, names

    def value(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict):
            raise AnalysisFormatError(f"unexpected {type(node).__name__} in the analysis tree")
        if "a" in node:
            return self.arrays[node["a"]]
        if "r" in node:
            return self.built[node["r"]]
        if "ti" in node or "tf" in node:
            tag = "ti" if "ti" in node else "tf"
            return self._slice(tag, node[tag])
        if "tc" in node:
            cls, names = self._fields(node["tc"], node["cols"])
            columns = [self._slice(*next(iter(node["cols"][name].items()))) for name in names]
            if len({len(c) for c in columns}) != 1:
                raise AnalysisFormatError("the columns of a tuple of records differ in length")
            return tuple(self._record(cls, zip(names, row)) for row in zip(*columns))
        if "f" in node and "d" not in node:
            return float(node["f"])
        if "np" in node:
            return np.dtype(node["np"]).type(self.value(node["v"]))
        if "t" in node:
            return tuple(self.value(v) for v in node["t"])
        if "l" in node:
            return [self.value(v) for v in node["l"]]
        if "m" in node:
            items = {self.value(k): self.value(v) for k, v in node["m"]}
            return MappingProxyType(items) if node.get("ro") else items
        if "d" in node:
            cls, names = self._fields(node["d"], node["f"])
            obj = self.built[int(node["n"])] = self._record(cls, ())
            obj.__dict__.update((name, self.value(node["f"][name])) for name in names)
            return obj
        raise AnalysisFormatError("unknown node in the analysis tree")

    @staticmethod
    def _record(cls: type, items: Any) -> Any:
        obj: Any = object.__new__(cls)  # no __init__: the stored state is kept exactly (frozen: via __dict__)
        obj.__dict__.update(items)
        return obj


# --------------------------------------------------------------------------- files
def save_analysis(path: str | Path, analysis: Analysis, extra: dict[str, str] | None = None) -> int:
    """Write ``analysis`` to ``path`` atomically; ``extra`` goes into the metadata. Returns the size in bytes."""
    encoder = _Encoder()
    tree = encoder.tree(analysis)
    metadata = {**(extra or {}), "format": FORMAT, "format_version": str(FORMAT_VERSION), "schema": SCHEMA,
                "tree": json.dumps(tree, separators=(",", ":"), allow_nan=False)}
    arrays = {**encoder.arrays, **encoder.pool_arrays()}
    tensors = [LazyTensor.of(name, np.ascontiguousarray(arr)) for name, arr in arrays.items()]
    return Path(write_safetensors(path, tensors, metadata)).stat().st_size


def analysis_from_bytes(data: bytes, where: str = "analysis") -> tuple[Analysis, dict[str, str]]:
    """The Analysis in ``data`` (a file's bytes) and its metadata; its arrays are read-only views of ``data``.
    Raises :class:`AnalysisFormatError` for anything but an intact analysis file of this version."""
    try:
        header, start = _header(data)
        meta = header.pop("__metadata__", None) or {}
        if meta.get("format") != FORMAT or meta.get("format_version") != str(FORMAT_VERSION):
            raise AnalysisFormatError(f"{where} is not an analysis of format {FORMAT} v{FORMAT_VERSION}")
        if meta.get("schema") != SCHEMA:
            raise AnalysisFormatError(f"{where} was written by another version of Insight Desktop")
        arrays = {name: _array(data, start, spec) for name, spec in header.items()}
        analysis = _Decoder(arrays).value(json.loads(meta["tree"]))
    except AnalysisFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise AnalysisFormatError(f"{where} is damaged: {exc}") from exc
    if not isinstance(analysis, Analysis):
        raise AnalysisFormatError(f"{where} does not hold an analysis")
    return analysis, {k: v for k, v in meta.items() if k != "tree"}


def load_analysis(path: str | Path) -> tuple[Analysis, dict[str, str]]:
    """Read a file written by :func:`save_analysis` (OSError if it cannot be read at all)."""
    return analysis_from_bytes(Path(path).read_bytes(), str(path))


def _header(data: bytes) -> tuple[dict[str, Any], int]:
    if len(data) < 8:
        raise AnalysisFormatError("too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise AnalysisFormatError("the header is longer than the file (truncated?)")
    header = json.loads(data[8:8 + n])
    if not isinstance(header, dict):
        raise AnalysisFormatError("the header is not a JSON object")
    return header, 8 + n


def _array(data: bytes, start: int, spec: Any) -> np.ndarray:
    dtype = np.dtype(DTYPES[spec["dtype"]])
    shape = tuple(int(s) for s in spec["shape"])
    begin, end = (int(v) for v in spec["data_offsets"])
    count = math.prod(shape)
    if min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != count * dtype.itemsize \
            or start + end > len(data):
        raise AnalysisFormatError("an array lies outside the file or has the wrong size")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=start + begin).reshape(shape)
    arr = arr.astype(dtype.newbyteorder("="), copy=False)  # a no-op on little-endian machines
    arr.flags.writeable = False
    return arr
