"""The Matryoshka level slider: levels 1..L equal a model truncated to L decoded on its own, the
slider at its right end is the full result, drags are one undo step, and the mIoU / FVU plot."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QUndoStack

from insight_desktop.core.tasks.codes import PatchCodes
from insight_desktop.core.tasks.decoder import ActiveDecoder
from insight_desktop.core.tasks.segmentation import SegmentationInputs, segment
from insight_desktop.gui.whatif.levels import LevelsPanel, miou, n_levels
from insight_desktop.gui.whatif.switches import SwitchController


@pytest.fixture
def slider(qtbot, document):
    stack = QUndoStack()
    controller = SwitchController(document, stack)
    panel = LevelsPanel()
    qtbot.addWidget(panel)
    panel.levelChosen.connect(controller.set_level)
    controller.stateChanged.connect(lambda s: panel.show_level(s.level))
    panel.set_analysis(document.analysis, n_levels(document.analysis, document.catalog))
    yield panel, controller, stack, document
    controller.shutdown()
    panel.shutdown()


def settle(qtbot, controller):
    qtbot.waitUntil(lambda: not controller.pending(), timeout=30_000)


def truncated(base, level: int):
    """The codes and decoder of the model cut to its first ``level`` levels, made from scratch."""
    levels = {c.concept: c.level for c in base.concepts}
    keep_rows = np.array([j for j in base.decoder.concepts if levels.get(int(j), 1) <= level], dtype=np.int64)
    decoder = ActiveDecoder(keep_rows, base.decoder.rows_of(keep_rows).astype(np.float32), base.decoder.bias)
    dense = base.codes.dense()
    dense[:, [j for j, lv in levels.items() if lv > level]] = 0.0
    return PatchCodes.from_dense(dense, base.grid), decoder


def test_levels_1_to_L_equal_a_truncated_model_and_the_right_end_is_the_full_result(qtbot, slider):
    panel, controller, stack, doc = slider
    base = doc.analysis
    assert panel.n == len(doc.catalog.relations.group_ends) == 2
    assert panel.slider.maximum() == 2 and panel.slider.value() == 2
    deep = [c.concept for c in base.concepts if c.level > 1]
    assert deep and any(c.level == 1 for c in base.concepts)   # both levels fire in the photo
    panel.slider.setValue(1)
    assert controller.state.level == 1
    settle(qtbot, controller)
    shown = doc.analysis
    assert shown is not base and not np.isin(shown.codes.indices, deep).any()
    codes, decoder = truncated(base, 1)
    np.testing.assert_allclose(shown.decoder.decode(shown.codes), decoder.decode(codes), rtol=0, atol=1e-9)
    seg = base.segmentation
    independent = segment(SegmentationInputs(codes, decoder, base.class_embeddings, seg.class_names[:3],
                                             seg.sampler, opaque_labels=seg.opaque_labels))
    np.testing.assert_array_equal(shown.segmentation.labels, independent.labels)
    got = {s.label: s for s in shown.segmentation.segments}
    for s in independent.segments:   # the explanations too: the charts show the level-1 model's bars
        assert got[s.label].contributions == s.contributions
    panel.slider.setValue(2)
    assert controller.state.level is None
    assert doc.analysis is base


def test_a_drag_of_the_slider_is_one_undo_step(qtbot, slider):
    panel, controller, stack, doc = slider
    base = doc.analysis
    panel.slider.setValue(1)
    panel.slider.setValue(2)
    panel.slider.setValue(1)
    assert stack.count() == 1 and controller.state.level == 1
    settle(qtbot, controller)
    stack.undo()
    assert doc.analysis is base and panel.slider.value() == 2 and controller.state.level is None
    stack.redo()
    assert panel.slider.value() == 1


def test_the_plot_shows_miou_against_the_full_model_and_the_fvu(qtbot, slider):
    panel, _controller, _stack, doc = slider
    qtbot.waitUntil(lambda: panel.curve is not None, timeout=30_000)
    curve = panel.curve
    assert curve.levels.tolist() == [1, 2]
    assert curve.miou[-1] == pytest.approx(1.0) and 0.0 <= curve.miou[0] <= 1.0
    assert np.isfinite(curve.fvu).all() and (curve.fvu >= 0).all()   # (the tiny SAE is random: no order)
    if "features" in curve.fvu_label:   # against x: at the last level the analysis' own FVU
        assert curve.fvu[-1] == pytest.approx(doc.analysis.faithfulness.fvu, rel=1e-3)
    else:                               # against the full reconstruction: 0 at the last level
        assert curve.fvu[-1] == 0.0
    xs, ys = panel.miou_curve.getData()
    assert xs.tolist() == [1.0, 2.0] and ys[-1] == pytest.approx(1.0)


def test_miou_of_planted_maps():
    a = np.array([[0, 0, 1, 1]])
    b = np.array([[0, 1, 1, 1]])
    assert miou(a, b) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert miou(a, a) == 1.0
