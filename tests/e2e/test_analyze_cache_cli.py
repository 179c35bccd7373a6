"""`insight analyze` reads and fills the app's disk cache of analyses; `--no-cache` computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from insight_desktop.cli import main
from tests.core.fakes import random_sae, write_test_bundle


@pytest.fixture
def bundle(tmp_path, tiny_backbone):
    return write_test_bundle(tmp_path / "model.zip", tiny_backbone, random_sae(tiny_backbone.feature_dim, 64, k=4))


def test_a_second_run_reads_the_cache_and_no_cache_computes(tmp_path, bundle, capsys, monkeypatch):
    from insight_desktop.core.engine import Analyzer

    monkeypatch.setenv("INSIGHT_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)).save(tmp_path / "a.png")

    def run(out: str, *extra: str) -> int:
        return main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--classes", "sky,grass",
                     "--out", str(tmp_path / out), "--device", "cpu", "-q", *extra])

    assert run("first") == 0
    entries = list((tmp_path / "cache" / "analyses").glob("*.analysis.safetensors"))
    assert len(entries) == 1

    def no_computing(*args, **kwargs):
        raise RuntimeError("computed instead of read from the cache")

    monkeypatch.setattr(Analyzer, "analyze", no_computing)
    assert run("second") == 0  # read back: nothing computed
    first, second = (json.loads((tmp_path / d / "a.json").read_text()) for d in ("first", "second"))
    assert second["concepts"] == first["concepts"] and second["image_size"] == first["image_size"]
    assert (tmp_path / "second" / "a_labels.png").read_bytes() == (tmp_path / "first" / "a_labels.png").read_bytes()
    capsys.readouterr()
    assert run("third", "--no-cache") == 1 and "computed instead of read" in capsys.readouterr().err
    assert run("fourth", "--window", "224") == 1  # other window settings: another key
    assert list((tmp_path / "cache" / "analyses").glob("*.analysis.safetensors")) == entries
