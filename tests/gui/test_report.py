"""Exports of a real analysis: the label mask reads back as the labels, the contribution tables
read back as the analysis' own numbers."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from insight_desktop import __version__
from insight_desktop.core.report import (
    BIAS_NAME,
    COLUMNS,
    UNITS,
    contributions_rows,
    provenance,
    save_contributions,
    save_label_mask,
)
from insight_desktop.core.tasks.classification import probe_classify
from insight_desktop.core.tasks.render import class_colours


@pytest.fixture(scope="module")
def analysis(tiny_analysis, tiny_catalog):
    """chelsea's analysis with a (random, sparse) probe added, so every section is present."""
    zs = tiny_analysis.classification
    rng = np.random.default_rng(1)
    W = rng.normal(size=(3, tiny_catalog.n_concepts)) * (rng.random((3, tiny_catalog.n_concepts)) < 0.4)
    probe = probe_classify(W, ("tabby", "teapot", "kite"), zs.concepts, zs.activations)
    return dataclasses.replace(tiny_analysis, probe=probe)


def test_label_mask_reads_back_as_the_labels_with_named_classes(tmp_path, analysis):
    seg = analysis.segmentation
    sidecar = save_label_mask(tmp_path / "chelsea_labels.png", seg)
    assert sidecar == tmp_path / "chelsea_labels.json"
    with Image.open(tmp_path / "chelsea_labels.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), seg.labels)
        palette = im.getpalette()[:3 * len(seg.class_names)]
    colours = class_colours(len(seg.class_names))
    assert palette == [v for c in colours for v in c]
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    assert meta["classes"] == list(seg.class_names) and meta["background_label"] is None
    assert meta["pixels"] == np.bincount(seg.labels.ravel(), minlength=len(seg.class_names)).tolist()
    assert meta["colours"] == [list(c) for c in colours] and meta["image_size"] == list(seg.labels.shape)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea_labels.json", "chelsea_labels.png"]


def _check_rows(rows, analysis, name_of) -> None:
    """Rows (as read back, numbers parsed) hold exactly the analysis' values, named by ``name_of``,
    and add up to its logits."""
    seg = analysis.segmentation
    for s in seg.segments:
        mine = [r for r in rows if r["task"] == "segment" and r["label"] == s.label]
        assert all(r["class"] == s.name and r["pixels"] == s.pixels for r in mine)
        assert [(r["concept"], r["name"], r["value"]) for r in mine[:-1]] == [
            (c.concept, name_of(c.concept), c.value) for c in s.contributions]
        assert (mine[-1]["concept"], mine[-1]["name"], mine[-1]["value"]) == (None, BIAS_NAME, s.bias)
        assert sum(r["value"] for r in mine) == pytest.approx(s.logit_sum, rel=1e-6)
    for result in (analysis.classification, analysis.probe):
        for c, name in enumerate(result.class_names):
            mine = [r for r in rows if r["task"] == result.method and r["label"] == c]
            assert all(r["class"] == name and r["pixels"] is None for r in mine)
            values = dict(zip(result.concepts.tolist(), result.contributions[c].tolist()))
            assert all(r["value"] == values[r["concept"]] for r in mine[:-1])
            assert all(r["name"] == name_of(r["concept"]) for r in mine[:-1])
            assert len(mine) - 1 == np.count_nonzero(result.contributions[c])
            assert mine[-1]["value"] == result.bias[c]
            assert sum(r["value"] for r in mine) == pytest.approx(result.logits[c], rel=1e-12, abs=1e-12)
    acts = [(r["concept"], r["name"], r["value"]) for r in rows if r["task"] == "activation"]
    assert acts == [(a.concept, name_of(a.concept), a.activation) for a in analysis.concepts]
    assert {r["task"] for r in rows} == {"segment", "zero-shot", "probe", "activation"}


def test_rows_hold_every_contribution(analysis, tiny_catalog):
    rows = contributions_rows(analysis, tiny_catalog.name)
    assert all(tuple(r) == COLUMNS for r in rows)
    _check_rows(rows, analysis, tiny_catalog.name)
    # a segment's values add up to its logit summed over its pixels, a class's to its logit
    assert {(r["task"], r["unit"]) for r in rows} == {(t, UNITS[t]) for t in {r["task"] for r in rows}}
    assert UNITS["segment"] == "logit_sum" and UNITS["zero-shot"] == UNITS["probe"] == "logit"
    assert {r["name"] for r in rows if r["concept"] is not None} <= {f"c{j}" for j in range(64)}  # the model's names


def test_csv_round_trip(tmp_path, analysis, tiny_catalog):
    path = tmp_path / "why.csv"
    origin = provenance(analysis, image="/photos/chelsea.png", model=tiny_catalog.path,
                        backbone=tiny_catalog.backbone_id)
    sidecar = save_contributions(path, analysis, tiny_catalog.name, origin)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        text = list(reader)

    def parse(r):
        num = {k: (None if r[k] == "" else int(r[k])) for k in ("label", "pixels", "concept")}
        return {**r, **num, "class": r["class"] or None, "value": float(r["value"])}

    rows = [parse(r) for r in text]
    assert len(rows) == len(contributions_rows(analysis, tiny_catalog.name))
    _check_rows(rows, analysis, tiny_catalog.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["why.csv", "why.provenance.json"]  # nothing left over
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    assert meta["table"] == "why.csv" and meta["provenance"] == origin
    assert origin["image"] == "/photos/chelsea.png" and origin["backbone"] == tiny_catalog.backbone_id
    assert origin["model"] == Path(tiny_catalog.path).name and origin["window_mode"] == analysis.window_mode
    assert origin["app_version"] == __version__


def test_json_round_trip(tmp_path, analysis, tiny_catalog):
    path = tmp_path / "why.json"
    origin = provenance(analysis, image="chelsea.png", model=tiny_catalog.path, backbone=tiny_catalog.backbone_id)
    assert save_contributions(path, analysis, tiny_catalog.name, origin) is None  # no sidecar: JSON holds it
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["provenance"] == origin and list(tmp_path.iterdir()) == [path]
    assert data["columns"] == list(COLUMNS)
    assert data["rows"] == contributions_rows(analysis, tiny_catalog.name)
    _check_rows(data["rows"], analysis, tiny_catalog.name)


def test_an_unknown_format_is_refused_and_nothing_is_written(tmp_path, analysis, tiny_catalog):
    with pytest.raises(ValueError, match=r"\.xlsx"):
        save_contributions(tmp_path / "why.xlsx", analysis, tiny_catalog.name)
    assert list(tmp_path.iterdir()) == []
