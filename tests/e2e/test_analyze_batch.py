"""`insight analyze` on a batch: an image that fails is reported and the others are still written;
an image in which no concept fires is a result, not a failure; CSVs never carry formulas."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from insight_desktop.cli import main
from tests.core.fakes import random_sae, write_test_bundle


@pytest.fixture
def silent_bundle(tmp_path, tiny_backbone):
    """A model whose SAE threshold no code reaches: no concept fires on any image."""
    return write_test_bundle(tmp_path / "silent.zip", tiny_backbone,
                             random_sae(tiny_backbone.feature_dim, 64, k=4, threshold=1e6))


def test_a_batch_reports_per_image_and_carries_on(tmp_path, silent_bundle, capsys, monkeypatch):
    from insight_desktop.core.engine import Analyzer

    real = Analyzer.analyze

    def flaky(self, image, *args, **kwargs):
        if np.asarray(image).shape[:2] == (7, 7):
            raise RuntimeError("boom inside the analysis")
        return real(self, image, *args, **kwargs)

    monkeypatch.setattr(Analyzer, "analyze", flaky)
    Image.fromarray(np.zeros((1, 2000, 3), np.uint8)).save(tmp_path / "strip.png")
    Image.fromarray(np.zeros((7, 7, 3), np.uint8)).save(tmp_path / "fails.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / "after.png")
    out = tmp_path / "out"
    rc = main(["analyze", *(str(tmp_path / n) for n in ("strip.png", "fails.png", "broken.png", "after.png")),
               "--model", str(silent_bundle), "--classes", "sky,=HYPERLINK(\"x\")", "--out", str(out),
               "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "fails.png: RuntimeError: boom inside the analysis" in captured.err
    assert f"skipped {tmp_path / 'broken.png'}: not a supported image file" in captured.err
    assert "2 image(s) analysed" in captured.out and "2 skipped: fails.png, broken.png" in captured.out
    assert "strip.png: windows:" in captured.out + captured.err and "no concept fires" in captured.out + captured.err
    for stem, size in (("strip", [1, 2000]), ("after", [40, 60])):
        report = json.loads((out / f"{stem}.json").read_text())
        assert report["image_size"] == size and report["concepts"] == []
        assert any("No concept fires" in n for n in report["notices"])
        assert (out / f"{stem}_labels.png").is_file() and (out / f"{stem}_contributions.csv").is_file()
        rows = list(csv.DictReader((out / f"{stem}_contributions.csv").open(encoding="utf-8")))
        assert "'=HYPERLINK(\"x\")" in {r["class"] for r in rows}
    assert not list(out.glob("fails*")) and not list(out.glob("broken*"))


def test_allow_truncated_flag(tmp_path, silent_bundle, capsys):
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    base = ["analyze", str(tmp_path / "cut.png"), "--model", str(silent_bundle), "--out", str(tmp_path / "o"),
            "-q", "--device", "cpu"]
    assert main(base) == 1 and "file is truncated" in capsys.readouterr().err
    assert main(base + ["--allow-truncated"]) == 0
    assert json.loads((tmp_path / "o" / "cut.json").read_text())["image_size"] == [48, 64]
