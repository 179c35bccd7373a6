"""`insight analyze --ablate` and `insight faithfulness` on a tiny model built from local files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from insight_desktop.cli import main
from insight_desktop.core.engine import Analyzer
from insight_desktop.core.tasks.whatif import switch_off
from tests.core.fakes import random_sae, write_test_bundle
from tests.e2e.test_analyze_cli import picture

CLASSES = "sky,grass,road"


@pytest.fixture
def bundle(tmp_path, tiny_backbone):
    return write_test_bundle(tmp_path / "model.zip", tiny_backbone, random_sae(tiny_backbone.feature_dim, 64, k=4))


def test_analyze_ablate_prints_the_planted_change(tmp_path, bundle, capsys):
    """The concepts speaking for the largest segment, switched off: the CLI prints that class's share
    falling exactly as the core computes it, and the classification before → after."""
    rgb = picture(120, 200)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    analyzer = Analyzer(bundle, device="cpu")
    try:
        analysis = analyzer.analyze(rgb, CLASSES.split(","))
    finally:
        analyzer.close()
    seg = analysis.segmentation
    largest = max(seg.segments, key=lambda s: s.pixels)
    off = sorted(c.concept for c in largest.contributions if c.value > 0)
    expected = switch_off(analysis, off)
    before, after = (float(v[largest.label]) for v in (expected.segmentation.shares_before,
                                                         expected.segmentation.shares_after))
    assert after < before, "switching off its positive contributors must shrink the segment"

    out = tmp_path / "out"
    rc = main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--classes", CLASSES, "--out", str(out),
               "-q", "--device", "cpu", "--no-cache", "--ablate", ",".join(map(str, off + [63]))])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    text = captured.out
    assert "(concepts only)" in text
    assert f"{largest.name:<20} {100 * before:6.1f}% → {100 * after:6.1f}%" in text
    assert f"{100 * expected.segmentation.changed_share:.1f}% of the pixels change label" in text
    cls = expected.classification
    assert f"classification: {cls.class_names[cls.predicted_before]} → {cls.class_names[cls.predicted_after]}" in text
    report = json.loads((out / "a_ablation.json").read_text())
    assert report["switched_off"] == sorted(set(off + [63]))
    if 63 not in analysis.codes.active_concepts():
        assert report["not_active"] == [63] and "not active in this image (no change): 63" in text
    row = next(r for r in report["segmentation"]["shares"] if r["class"] == largest.name)
    assert row["before"] == pytest.approx(before) and row["after"] == pytest.approx(after)

    rc = main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--classes", CLASSES, "--out", str(out),
               "-q", "--device", "cpu", "--no-cache", "--ablate", ",".join(map(str, off)), "--keep-residual"])
    assert rc == 0
    assert "(concepts + residual)" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--ablate", "3,x", "--classes", CLASSES], "comma-separated concept ids"),
    (["--ablate", "3"], "--ablate needs --classes"),
    (["--keep-residual", "--classes", CLASSES], "--keep-residual goes with --ablate"),
])
def test_analyze_ablate_refuses_bad_input(tmp_path, bundle, capsys, argv, message):
    Image.fromarray(picture(60, 60)).save(tmp_path / "a.png")
    rc = main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--out", str(tmp_path / "o"), "-q",
               "--device", "cpu", "--no-cache", *argv])
    assert rc == 2 and message in capsys.readouterr().err


def test_faithfulness_on_a_folder(tmp_path, bundle, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(picture(96, 128, seed=i)).save(folder / f"p{i}.png")
    rc = main(["faithfulness", str(folder), "--model", str(bundle), "--classes", CLASSES, "--steps", "4",
               "--seeds", "2", "--json", "-q", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    assert [img["name"] for img in doc["images"]] == ["p0.png", "p1.png"]
    for img in doc["images"]:
        assert {c["task"] for c in img["curves"]} == {"segmentation", "classification"}
        for c in img["curves"]:
            assert len(c["top"]) == len(c["random"]) == 5 and c["top"][0] == pytest.approx(c["random"][0])
            diff = np.subtract(c["random"], c["top"])
            assert c["area_between"] == pytest.approx((diff[1:] + diff[:-1]).sum() / 8)
    assert {s["task"]: s["images"] for s in doc["summary"]} == {"segmentation": 2, "classification": 2}

    rc = main(["faithfulness", str(folder / "p0.png"), "--model", str(bundle), "--classes", CLASSES, "--steps", "3",
               "-q", "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0 and "p0.png" in text and "top falls faster" in text and "of 1" in text
    assert main(["faithfulness", str(tmp_path / "nothing"), "--model", str(bundle), "-q"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
