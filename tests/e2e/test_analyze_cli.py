"""`insight analyze`, `eval-seg`, `eval-cls`, `train-probe` on a tiny model built from local files."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from insight_desktop.cli import main
from insight_desktop.core.concepts.bundle import ConceptModel
from tests.core.fakes import lossless_sae, random_sae, write_test_bundle


@pytest.fixture
def bundle(tmp_path, tiny_backbone):
    return write_test_bundle(tmp_path / "model.zip", tiny_backbone, random_sae(tiny_backbone.feature_dim, 64, k=4))


@pytest.fixture
def lossless_bundle(tmp_path, tiny_backbone):
    d = tiny_backbone.feature_dim
    return write_test_bundle(tmp_path / "lossless", tiny_backbone, lossless_sae(d, b_dec=torch.linspace(-0.2, 0.2, d)))


def picture(h, w, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:] = rng.integers(0, 256, 3)
    rgb[h // 3:, : w // 2] = rng.integers(0, 256, 3)
    rgb[h // 2:, w // 2:] = rng.integers(0, 256, 3)
    return rgb


def test_analyze_writes_pictures_tables_and_json(tmp_path, bundle, capsys):
    Image.fromarray(picture(120, 200)).save(tmp_path / "a.png")
    Image.fromarray(picture(90, 60, seed=1)).convert("L").save(tmp_path / "b.jpg")  # greyscale file
    out = tmp_path / "out"
    rc = main(["analyze", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--model", str(bundle),
               "--classes", "sky, grass,road", "--background", "--out", str(out), "--top", "3", "-q",
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    for stem, size in (("a", (200, 120)), ("b", (60, 90))):
        report = json.loads((out / f"{stem}.json").read_text())
        assert report["image_size"] == [size[1], size[0]]
        assert report["provenance"]["model_path"] == str(bundle) and report["provenance"]["backbone"]
        assert report["provenance"]["image"] == str(tmp_path / ("a.png" if stem == "a" else "b.jpg"))
        sidecar = json.loads((out / f"{stem}_contributions.provenance.json").read_text())
        assert sidecar["provenance"] == report["provenance"]
        assert len([c for c in report["concepts"] if "heatmap" in c]) == min(3, len(report["concepts"]))
        for c in report["concepts"][:3]:
            assert Image.open(out / c["heatmap"]).size == size
        mask = Image.open(out / f"{stem}_labels.png")
        assert mask.mode == "P" and mask.size == size
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2, 3}
        seg = report["segmentation"]
        assert [e["name"] for e in seg["legend"]] == ["sky", "grass", "road", "background"]
        assert sum(e["pixels"] for e in seg["legend"]) == size[0] * size[1]
        for s in seg["segments"]:
            if s["name"] != "background":
                full = [r for r in csv.DictReader(open(out / f"{stem}_contributions.csv"))
                        if r["task"] == "segment" and r["class"] == s["name"]]
                assert {r["unit"] for r in full} == {"logit_sum"}
                assert sum(float(r["value"]) for r in full) == pytest.approx(s["logit_sum"], rel=1e-4)
        assert report["classification"]["method"] == "zero-shot"
        assert report["classification"]["predicted"] in ("sky", "grass", "road")
        assert Image.open(out / f"{stem}_legend.png").mode == "RGB"
        assert Image.open(out / f"{stem}_segmentation.png").size == size
        rows = list(csv.DictReader(open(out / f"{stem}_concepts.csv")))
        assert rows and rows[0]["rank"] == "1" and float(rows[0]["activation"]) >= float(rows[-1]["activation"])
        assert set(report["faithfulness"]) == {"fvu", "cosine", "residual_mean"}


def test_analyze_errors_are_clear(tmp_path, bundle, capsys):
    Image.fromarray(picture(40, 40)).save(tmp_path / "a.png")
    base = ["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--out", str(tmp_path / "o"), "-q",
            "--device", "cpu"]
    assert main(base + ["--classes", "cat,Cat"]) == 1
    assert "listed twice" in capsys.readouterr().err
    (tmp_path / "classes.txt").write_text("# none\n\n")
    assert main(base + ["--classes-file", str(tmp_path / "classes.txt")]) == 1
    assert "empty" in capsys.readouterr().err
    assert main(base + ["--classes-file", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read --classes-file" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(base[:1] + [str(tmp_path / "bad.png")] + base[2:]) == 1
    assert "skipped" in capsys.readouterr().err
    assert main(base + ["--classes", "cat,dog"]) == 0  # plain concepts + classes without background work


def test_eval_seg_reports_both_paths(tmp_path, lossless_bundle, capsys):
    data = tmp_path / "seg"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "classes.txt").write_text("background\nthing\nstuff\n")
    for i in range(3):
        rgb = picture(64, 96, seed=i)
        Image.fromarray(rgb).save(data / "images" / f"{i}.jpg")
        mask = np.zeros((64, 96), np.uint8)
        mask[32:, :48] = 1
        mask[40:, 48:] = 2
        mask[0, :] = 255
        Image.fromarray(mask, mode="L").save(data / "masks" / f"{i}.png")
    results = tmp_path / "r.json"
    rc = main(["eval-seg", str(data), "--model", str(lossless_bundle), "--background", "-q", "--device", "cpu",
               "--out", str(results)])
    out = capsys.readouterr().out
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("mIoU"))
    concept, opaque = re.findall(r"\d+\.\d", line)
    assert concept == opaque, "a lossless SAE must score exactly like the opaque features"
    saved = json.loads(results.read_text())
    assert saved["concepts"]["mIoU"] == saved["opaque"]["mIoU"] and len(saved["concepts"]["iou"]) == 3
    (data / "classes.txt").write_text("thing\nstuff\nthing\n")
    assert main(["eval-seg", str(data), "--model", str(lossless_bundle), "-q", "--device", "cpu"]) == 1
    assert "twice" in capsys.readouterr().err


def test_the_cli_says_which_window_mode_ran(tmp_path, bundle, capsys):
    Image.fromarray(picture(120, 300)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    rc = main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--classes", "sky,road", "--out", str(out),
               "--device", "cpu", "--window-mode", "reference"])
    assert rc == 0
    report = json.loads((out / "a.json").read_text())
    assert report["window_mode"] == "reference" and report["window_description"].startswith("reference (")
    assert "a.png: windows: reference (" in capsys.readouterr().out
    data = tmp_path / "seg"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "classes.txt").write_text("sky\nroad\n")
    Image.fromarray(picture(120, 300)).save(data / "images" / "0.png")
    Image.fromarray(np.zeros((120, 300), np.uint8), mode="L").save(data / "masks" / "0.png")
    for args, said in (([], "windows: reference (each window encoded separately"),
                       (["--window-mode", "fast"], "windows: fast (features averaged")):
        assert main(["eval-seg", str(data), "--model", str(bundle), "-q", "--device", "cpu", *args]) == 0
        assert said in capsys.readouterr().out


def test_train_probe_then_eval_cls(tmp_path, lossless_bundle, capsys):
    folder = tmp_path / "cls"
    for c, name in enumerate(["dark_room", "bright_sky"]):
        (folder / name).mkdir(parents=True)
        for i in range(5):
            rgb = np.full((40, 50, 3), 30 + 190 * c, np.uint8)
            rgb[::7] = 128
            Image.fromarray(rgb).save(folder / name / f"{i}.png")
    assert main(["eval-cls", str(folder), "--model", str(lossless_bundle), "-q", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "zero-shot through concepts" in out and "has no probe" in out
    assert main(["train-probe", str(folder), "--model", str(lossless_bundle), "-q", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "← chosen" in out and "probe saved" in out
    W, names = ConceptModel.load(lossless_bundle).probe
    assert names == ("bright_sky", "dark_room") and W.shape == (2, 64)
    assert main(["info", str(lossless_bundle)]) == 0
    assert re.search(r"^probe +2 classes$", capsys.readouterr().out, flags=re.M)
    assert main(["eval-cls", str(folder), "--model", str(lossless_bundle), "-q", "--device", "cpu"]) == 0
    probe_line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("concept-bottleneck probe"))
    assert "100.0 %" in probe_line
    assert main(["train-probe", str(tmp_path), "--model", str(lossless_bundle), "-q", "--device", "cpu"]) == 1
    assert "two sub-folders" in capsys.readouterr().err
