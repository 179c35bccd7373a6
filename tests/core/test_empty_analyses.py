"""Images in which no concept fires are valid analyses; long class lists can be stopped; CSV
exports never carry a spreadsheet formula."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from insight_desktop.core.engine import NO_CONCEPTS_NOTICE, AnalysisStopped, Analyzer
from insight_desktop.core.report import csv_cell, csv_text, save_contributions

from .fakes import TextColourBackbone, random_sae, write_test_bundle


@pytest.fixture
def silent_analyzer(tmp_path):
    """An SAE whose threshold no code reaches: nothing ever fires."""
    bb = TextColourBackbone(d=8, background=True)
    return Analyzer(write_test_bundle(tmp_path / "m", bb, random_sae(8, 32, k=3, threshold=1e6)), backbone=bb,
                    device="cpu", prompt_cache=False)


@pytest.mark.parametrize("shape", [(1, 2000), (64, 64)])
@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_an_image_in_which_no_concept_fires_is_a_valid_analysis(silent_analyzer, shape, mode):
    rgb = np.zeros((*shape, 3), np.uint8)  # a black strip / square
    a = silent_analyzer.analyze(rgb, ["red", "green", "blue"], background=True, window_mode=mode)
    assert a.concepts == () and a.codes.nnz == 0 and a.decoder.concepts.size == 0
    assert NO_CONCEPTS_NOTICE in a.notices
    assert a.display_map(0, (5, 7)).shape == (5, 7) and not a.display_map(0, (5, 7)).any()
    seg = a.segmentation  # every pixel still labelled, from the decoder bias (docs/method.md §6.1)
    assert seg.labels.shape == shape and len(np.unique(seg.labels)) == 1
    assert all(not s.contributions or all(c.value == 0 for c in s.contributions) for s in seg.segments)
    cls = a.classification
    assert cls.contributions.shape == (3, 0) and np.isclose(cls.probabilities.sum(), 1.0)
    np.testing.assert_allclose(cls.logits, cls.bias)  # nothing fires: the logits are the bias alone


def test_an_image_with_concepts_has_no_such_notice(tmp_path):
    bb = TextColourBackbone(d=8)
    an = Analyzer(write_test_bundle(tmp_path / "m", bb, random_sae(8, 32, k=3, threshold=0.0)), backbone=bb,
                  device="cpu", prompt_cache=False)
    a = an.analyze(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), ["red"])
    assert a.concepts and NO_CONCEPTS_NOTICE not in a.notices


def test_encoding_three_thousand_classes_stops_when_asked(silent_analyzer):
    backbone = silent_analyzer.backbone
    classes = [f"class {i}" for i in range(3000)]
    before = backbone.text_calls
    with pytest.raises(AnalysisStopped):
        silent_analyzer.analyze(np.zeros((64, 64, 3), np.uint8), classes,
                                should_stop=lambda: backbone.text_calls - before >= 2)
    assert backbone.text_calls - before == 2  # stopped between groups, not after all 3,000


def test_csv_cells_escape_formulas_and_keep_numbers():
    assert csv_cell('=HYPERLINK("http://evil","click")') == '\'=HYPERLINK("http://evil","click")'
    for text in ("+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "=", "- sky"):
        assert csv_cell(text) == "'" + text
    for number in ("-0.5", "+3", "-1e-05", "-inf", "12", "cat", ""):
        assert csv_cell(number) == number
    assert csv_cell(-3) == "-3" and csv_cell(-0.25) == "-0.25"
    rows = list(csv.reader(io.StringIO(csv_text(["a", "=b"], [[1, "=x"], [-2.5, "ok"]]))))
    assert rows == [["a", "'=b"], ["1", "'=x"], ["-2.5", "ok"]]


def test_contributions_export_escapes_a_concept_named_as_a_formula(tmp_path):
    bb = TextColourBackbone(d=8)
    an = Analyzer(write_test_bundle(tmp_path / "m", bb, random_sae(8, 32, k=3, threshold=0.0)), backbone=bb,
                  device="cpu", prompt_cache=False)
    a = an.analyze(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), ["=cmd|' /C calc'!A0"])
    evil = '=HYPERLINK("http://evil.example","x")'
    save_contributions(tmp_path / "why.csv", a, lambda j: evil)
    rows = list(csv.DictReader((tmp_path / "why.csv").open(encoding="utf-8")))
    named = [r for r in rows if r["concept"]]
    assert named and all(r["name"] == "'" + evil for r in named)
    assert {r["class"] for r in rows if r["task"] == "zero-shot"} == {"'=cmd|' /C calc'!A0"}
    assert any(float(r["value"]) < 0 for r in rows)  # negative numbers are still plain numbers
    for r in rows:
        float(r["value"])


def test_an_empty_analysis_survives_the_analysis_store(silent_analyzer, tmp_path):
    """Saving writes zero-length arrays (no active concept): they must round-trip."""
    from insight_desktop.core.analysis_store import load_analysis, save_analysis

    a = silent_analyzer.analyze(np.zeros((1, 300, 3), np.uint8), ["red", "green"], background=True)
    save_analysis(tmp_path / "a.analysis", a)
    b, _ = load_analysis(tmp_path / "a.analysis")
    assert b.concepts == () and b.decoder.rows.shape == (0, 8) and b.notices == a.notices
    np.testing.assert_array_equal(b.segmentation.labels, a.segmentation.labels)
    assert b.classification.contributions.shape == (2, 0)
