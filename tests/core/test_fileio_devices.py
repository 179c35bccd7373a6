"""Atomic writes lose nothing; device choice is explicit and clear."""

from __future__ import annotations

import json
import os

import pytest

from insight_desktop.core.devices import DeviceError, resolve_device
from insight_desktop.core.fileio import atomic_output, atomic_write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(OSError, match="disk full"):
        with atomic_output(path) as fh:
            fh.write(b'{"v": 2, "half')
            raise OSError(28, "disk full")
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_successful_write_replaces(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(path, [1, 2])
    atomic_write_json(path, [3])
    assert json.loads(path.read_text()) == [3]
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's owner-only mode


def test_device_choice():
    import torch

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
