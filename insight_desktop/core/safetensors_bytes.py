"""safetensors in memory: read tensors *and* metadata from bytes (e.g. a zip member), write bytes.

``safetensors.*.load`` returns tensors only; the metadata lives in the JSON header, which is
specified as an 8-byte little-endian length followed by that many bytes of JSON.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np


def metadata_of(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("header length exceeds the file size (truncated?)")
    header = json.loads(data[8:8 + n])
    return dict(header.get("__metadata__") or {})


def load_numpy(data: bytes, where: str, error: type[Exception] = ValueError) -> tuple[dict[str, np.ndarray], dict[str, str]]:
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

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata)


def dump_torch(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
