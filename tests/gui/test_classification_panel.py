"""ClassificationPanel on a real zero-shot result of chelsea (and a probe made from its codes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from insight_desktop.core.tasks.classification import probe_classify
from insight_desktop.gui.widgets.classification_panel import PROBE, ZERO_SHOT, ClassificationPanel
from tests.gui.conftest import CLASSES, show_widget


@pytest.fixture
def panel(qtbot, document):
    return show_widget(qtbot, ClassificationPanel(document), 420, 800)


def _column(panel, col: int) -> list[str]:
    return [panel.table.item(r, col).text() for r in range(panel.table.rowCount())]


def _click_row(qtbot, panel, row: int) -> None:
    rect = panel.table.visualItemRect(panel.table.item(row, 1))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def _shown_matches(panel, result, c: int) -> None:
    """The chart shows explain(c): the largest contributions with their exact values, and its bars
    (shown, folded into 'other concepts', bias) add up to the logit."""
    why = result.explain(c)
    values = {x.concept: x.value for x in why.contributions}
    shown = panel.chart.bars()
    assert len(shown) == min(panel.chart.top, len(why.contributions))
    assert all(v == values[j] for j, v in shown)
    smallest_shown = min(abs(v) for _, v in shown)
    assert all(abs(v) <= smallest_shown for j, v in values.items() if j not in dict(shown))
    # exactness comes from the data: Σ contributions + bias = logit
    assert sum(values.values()) + why.bias == pytest.approx(result.logits[c], rel=1e-12, abs=1e-12)
    assert panel.chart.total() == pytest.approx(result.logits[c], rel=1e-12, abs=1e-12)
    assert f"'{result.class_names[c]}'" in panel.chart.title()


def test_table_ranks_the_classes_by_probability(panel, document):
    zs = document.analysis.classification
    order = np.argsort(-zs.probabilities)
    assert _column(panel, 1) == [zs.class_names[c] for c in order]
    assert sorted(_column(panel, 1)) == sorted(CLASSES)
    assert _column(panel, 2) == [f"{100 * zs.probabilities[c]:.1f} %" for c in order]
    assert _column(panel, 3) == [f"{zs.logits[c]:.3f}" for c in order]
    opaque = np.exp(zs.opaque_logits - zs.opaque_logits.max())
    opaque /= opaque.sum()
    assert _column(panel, 4) == [f"{100 * opaque[c]:.1f} %" for c in order]
    assert panel.method.currentText() == ZERO_SHOT and not panel.method.isEnabled()  # no probe in this bundle
    assert zs.predicted_name in panel.summary.text()


def test_selecting_a_class_shows_its_exact_contributions(qtbot, panel, document):
    zs = document.analysis.classification
    assert panel.selected_class() == zs.predicted  # something to read straight away
    _shown_matches(panel, zs, zs.predicted)
    assert panel.chart.bias() == zs.bias[zs.predicted]
    last = panel.table.rowCount() - 1
    _click_row(qtbot, panel, last)
    c = int(np.argsort(-zs.probabilities)[last])
    assert c != zs.predicted and panel.selected_class() == c
    _shown_matches(panel, zs, c)
    document.set_analysis(document.analysis)  # a new analysis keeps the user's choice
    assert panel.selected_class() == c


def test_a_bar_click_selects_its_concept(qtbot, panel, document):
    shown = panel.chart.bars()
    i = next(i for i, (j, _) in enumerate(shown) if j != document.concept)
    qtbot.mouseClick(panel.chart, Qt.MouseButton.LeftButton, pos=panel.chart.bar_center(i))
    assert document.concept == shown[i][0]
    qtbot.mouseClick(panel.chart, Qt.MouseButton.LeftButton, pos=QPoint(5, 2))  # the title: nothing
    assert document.concept == shown[i][0]


def test_the_probe_is_offered_when_the_bundle_has_one(qtbot, panel, document):
    zs = document.analysis.classification
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, document.catalog.n_concepts)) * (rng.random((4, document.catalog.n_concepts)) < 0.3)
    probe = probe_classify(W, ("tabby", "lynx", "teapot", "kite"), zs.concepts, zs.activations)
    document.set_analysis(dataclasses.replace(document.analysis, probe=probe))
    assert panel.method.isEnabled() and [panel.method.itemText(i) for i in range(2)] == [ZERO_SHOT, PROBE]
    qtbot.keyClick(panel.method, Qt.Key.Key_Down)
    assert panel.method.currentText() == PROBE
    order = np.argsort(-probe.probabilities)
    assert _column(panel, 1) == [probe.class_names[c] for c in order]
    assert panel.table.columnCount() == 4  # no opaque path for a probe
    assert panel.selected_class() == probe.predicted
    _shown_matches(panel, probe, probe.predicted)
    assert panel.chart.bias() is None  # the probe has no bias
    qtbot.keyClick(panel.method, Qt.Key.Key_Up)
    assert _column(panel, 1) == [zs.class_names[c] for c in np.argsort(-zs.probabilities)]


def test_without_an_analysis_the_panel_says_so(panel, document):
    document.set_analysis(None)
    assert panel.table.rowCount() == 0 and panel.chart.bars() == []
    assert panel.summary.text() == "No analysis yet" and panel.chart.message()
    assert panel.method.count() == 0
