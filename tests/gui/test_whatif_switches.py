"""Switching concepts off in the app: the segmentation and classification recomputed from the
codes (a planted label change), Shift extends to the subtree, "switch off all rejected",
"restore all", and undo / redo on the curation's stack showing the exact previous Analysis."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack

from insight_desktop.core.paths import resource_path
from insight_desktop.core.tasks.decoder import without_concepts
from insight_desktop.core.tasks.segmentation import segment
from insight_desktop.gui.whatif.switches import SwitchController, SwitchState, derive
from insight_desktop.gui.widgets.qt_concept_tree_model import Column
from tests.gui.conftest import visible_pixels, wait_for_analysis

CHELSEA = resource_path("samples", "chelsea.png")
CHECK = Qt.ItemDataRole.CheckStateRole


def settle(qtbot, controller):
    """Wait until the state asked for is shown."""
    qtbot.waitUntil(lambda: not controller.pending(), timeout=30_000)


def biggest_segment(analysis):
    return max((s for s in analysis.segmentation.segments if s.contributions), key=lambda s: s.pixels)


def positive_contributors(segment_):
    return [c.concept for c in segment_.contributions if c.value > 0]


@pytest.fixture
def switches(qtbot, document):
    stack = QUndoStack()
    controller = SwitchController(document, stack)
    yield controller, stack, document
    controller.shutdown()


def test_switching_off_a_segments_positive_contributors_changes_its_label(qtbot, switches):
    controller, stack, doc = switches
    base = doc.analysis
    seg = biggest_segment(base)
    off = positive_contributors(seg)
    assert controller.set_off(off, True)
    settle(qtbot, controller)
    shown = doc.analysis
    assert shown is not base and shown.image_size == base.image_size
    was = base.segmentation.labels == seg.label
    now = shown.segmentation.labels
    assert np.count_nonzero(now[was] != seg.label) > 0.5 * np.count_nonzero(was)   # the planted change
    # exactly what the core gives from the codes without them (z_j = 0), computed independently
    expected = segment(base.segmentation_inputs(without_concepts(base.codes, np.array(sorted(off)))))
    np.testing.assert_array_equal(now, expected.labels)
    view = controller.view
    np.testing.assert_array_equal(view.changed, now != base.segmentation.labels)
    assert view.changed_pixels == int(np.count_nonzero(now != base.segmentation.labels))
    assert view.shares_before.sum() == pytest.approx(1.0) and view.shares_after.sum() == pytest.approx(1.0)
    assert view.shares_after[seg.label] < view.shares_before[seg.label]
    # the switched-off concepts fire nowhere now and contribute to nothing
    assert not np.isin(shown.codes.indices, off).any()
    cls = shown.classification
    assert not np.isin(cls.concepts, off).any()
    np.testing.assert_allclose(cls.contributions.sum(axis=1) + cls.bias, cls.logits)
    assert not np.allclose(cls.logits, base.classification.logits)
    np.testing.assert_array_equal(cls.opaque_logits, base.classification.opaque_logits)  # x's own: unchanged


def test_everything_off_leaves_the_bias_only(qtbot, switches):
    controller, _stack, doc = switches
    base = doc.analysis
    view = derive(base, SwitchState(off=frozenset(c.concept for c in base.concepts)))
    assert view.analysis.codes.nnz == 0
    assert np.allclose(view.analysis.decoder.decode(view.analysis.codes), base.decoder.bias)
    cls = view.analysis.classification
    assert cls.concepts.size == 0
    np.testing.assert_allclose(cls.logits, cls.bias)
    assert all(s.contributions == () for s in view.analysis.segmentation.segments)


def test_undo_and_redo_show_the_exact_previous_analysis(qtbot, switches):
    controller, stack, doc = switches
    base = doc.analysis
    first, second = (c.concept for c in base.concepts[:2])
    controller.set_off([first], True)
    settle(qtbot, controller)
    after_first = doc.analysis
    controller.set_off([second], True)
    settle(qtbot, controller)
    after_second = doc.analysis
    assert controller.state.off == {first, second} and stack.count() == 2
    stack.undo()
    settle(qtbot, controller)
    assert doc.analysis is after_first and controller.state.off == {first}
    stack.undo()
    assert doc.analysis is base and controller.state == SwitchState()
    stack.redo()
    stack.redo()
    settle(qtbot, controller)
    assert doc.analysis is after_second and controller.state.off == {first, second}
    assert stack.undoText() == "Switch off 1 concept(s)"


def test_restore_all_and_a_new_analysis_start_from_all_on(qtbot, switches, tiny_analyzer, sample_rgb):
    controller, stack, doc = switches
    base = doc.analysis
    controller.set_off([base.concepts[0].concept], True)
    settle(qtbot, controller)
    assert controller.restore_all()
    assert doc.analysis is base and controller.state == SwitchState() and controller.view.changed_pixels == 0
    stack.undo()
    settle(qtbot, controller)
    assert controller.state.off == {base.concepts[0].concept}
    other = tiny_analyzer.analyze(sample_rgb[:, ::-1], classes=["cat", "sky"])   # the worker's next analysis
    doc.set_analysis(other)
    assert controller.base is other and controller.state == SwitchState()
    stack.undo()   # belongs to the analysis before: it leaves this one alone
    assert doc.analysis is other and controller.state == SwitchState()


def test_the_tree_check_boxes_switch_and_follow(qtbot, switches):
    from insight_desktop.gui.widgets.concept_tree import ConceptTreePanel

    controller, _stack, doc = switches
    panel = ConceptTreePanel(doc)
    qtbot.addWidget(panel)
    model = panel.model
    j = doc.analysis.concepts[0].concept
    index = model.index_of(j, Column.NAME)
    assert model.data(index, CHECK) is None and not model.flags(index) & Qt.ItemFlag.ItemIsUserCheckable
    model.switchable = True
    assert model.data(index, CHECK) == Qt.CheckState.Checked and model.flags(index) & Qt.ItemFlag.ItemIsUserCheckable
    inactive = next(k for k in range(model.n_concepts) if doc.concept_activation(k) == 0)
    assert model.data(model.index_of(inactive, Column.NAME), CHECK) is None   # nothing to switch
    model.switchToggled.connect(lambda k: controller.toggle([k]))
    controller.stateChanged.connect(lambda s: model.set_switched_off(s.off))
    with qtbot.waitSignal(model.dataChanged):
        assert model.setData(index, Qt.CheckState.Unchecked, CHECK)
    assert controller.state.off == {j} and model.data(index, CHECK) == Qt.CheckState.Unchecked
    model.setData(index, Qt.CheckState.Checked, CHECK)
    assert controller.state.off == frozenset() and model.data(index, CHECK) == Qt.CheckState.Checked


@pytest.fixture
def shown(qtbot, window, tiny_bundle):
    window.start([CHELSEA], tiny_bundle)
    wait_for_analysis(qtbot, window)
    qtbot.waitUntil(lambda: window.review.controller.curation is not None, timeout=5_000)
    return window


def test_in_the_window_shift_extends_to_the_subtree_and_undo_takes_it_back(qtbot, shown, monkeypatch):
    from insight_desktop.gui.review.curation_controller import subtree
    from insight_desktop.gui.whatif import wiring_switches

    w, doc = shown, shown.document
    controller, base = w.whatif.controller, doc.analysis
    catalog = doc.catalog
    parent = next(j for j in range(catalog.n_concepts) if catalog.children(j))   # "1 is a parent of 0"
    monkeypatch.setattr(wiring_switches.QApplication, "keyboardModifiers",
                        staticmethod(lambda: Qt.KeyboardModifier.ShiftModifier))
    w.tree.model.setData(w.tree.model.index_of(parent, Column.NAME), Qt.CheckState.Unchecked, CHECK)
    assert controller.state.off == frozenset(subtree(catalog, parent)) and len(controller.state.off) > 1
    assert w.whatif.dock.isVisible()
    w.actions.undo.trigger()
    settle(qtbot, controller)
    assert doc.analysis is base and controller.state.off == frozenset()


def test_in_the_window_a_chart_box_switches_off_and_the_change_is_highlighted(qtbot, shown):
    from insight_desktop.gui.review.curation_controller import subtree

    w, doc = shown, shown.document
    controller, base = w.whatif.controller, doc.analysis
    seg = biggest_segment(base)
    doc.select_segment(seg.label)
    w.show_panel(w.segmentation)
    chart = w.segmentation.chart
    assert chart.switchable and chart.bars()
    top = chart.bars()[0][0]
    qtbot.mouseClick(chart, Qt.MouseButton.LeftButton, pos=chart.box_rect(0).center())
    assert controller.state.off == {top}
    settle(qtbot, controller)
    assert doc.analysis is not base
    assert top not in [j for j, _ in chart.bars()]   # switched off: it contributes nothing now
    second = chart.bars()[0][0]
    qtbot.mouseClick(chart, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     pos=chart.box_rect(0).center())   # Shift: its whole subtree
    assert controller.state.off == {top} | set(subtree(doc.catalog, second))
    settle(qtbot, controller)
    for j in positive_contributors(seg):   # the rest of the segment's support, one box each
        controller.set_off([j], True)
    settle(qtbot, controller)
    view = controller.view
    assert view.changed_pixels > 0
    image = w.whatif.layer.image()
    assert image is not None and visible_pixels(image) > 0
    assert "switched off" in w.whatif.changes.summary.text()
    rows = w.whatif.changes.shares.rowCount()
    assert rows >= 2 and w.whatif.changes.shares.item(0, 1).text().endswith("%")
    qtbot.mouseClick(w.whatif.changes.restore, Qt.MouseButton.LeftButton)
    assert doc.analysis is base and w.whatif.layer.image() is None


def test_switch_off_all_rejected(qtbot, shown):
    w, doc = shown, shown.document
    controller, base = w.whatif.controller, doc.analysis
    rejected = [c.concept for c in base.concepts[:3]]
    w.review.controller.set_status(rejected, "rejected")
    w.actions.switch_off_rejected.trigger()
    assert controller.state.off == set(rejected)
    settle(qtbot, controller)
    assert not np.isin(doc.analysis.codes.indices, rejected).any()
    w.actions.undo.trigger()
    settle(qtbot, controller)
    assert doc.analysis is base
    assert w.review.controller.curation.rejected() >= set(rejected)   # the verdicts are a step further back


def test_concepts_plus_residual_changes_the_opaque_path_and_says_so(qtbot, switches):
    from insight_desktop.core.tasks.whatif import switch_off

    controller, stack, doc = switches
    base = doc.analysis
    assert base.faithfulness.residual_vectors is not None
    assert controller.set_keep_residual(True)
    settle(qtbot, controller)
    view = controller.view
    assert view.state.mode == "concepts + residual" and view.changed_pixels == 0   # x itself: nothing changed
    off = positive_contributors(biggest_segment(base))
    controller.set_off(off, True)
    settle(qtbot, controller)
    view, shown = controller.view, doc.analysis
    expected = switch_off(base, off, keep_residual=True)
    np.testing.assert_array_equal(shown.segmentation.opaque_labels, expected.segmentation.labels_after)
    np.testing.assert_array_equal(view.changed, expected.segmentation.changed)
    np.testing.assert_allclose(shown.classification.opaque_logits, expected.classification.logits_after)
    concept_path = derive(base, SwitchState(off=frozenset(off)))   # the concept path is "concepts only"'s
    np.testing.assert_array_equal(shown.segmentation.labels, concept_path.analysis.segmentation.labels)
    stack.undo()
    stack.undo()
    assert doc.analysis is base and controller.state == SwitchState()


def test_in_the_window_the_mode_toggle_is_undoable_and_shows_the_opaque_path(qtbot, shown):
    w, doc = shown, shown.document
    controller, panel = w.whatif.controller, w.whatif.changes
    assert panel.residual.isEnabled() and panel.only.isChecked() and not doc.overlay.show_opaque
    panel.residual.click()
    assert controller.state.keep_residual and doc.overlay.show_opaque
    settle(qtbot, controller)
    assert panel.summary.text().startswith("Shown: concepts + residual.")
    w.actions.undo.trigger()
    assert not controller.state.keep_residual and not doc.overlay.show_opaque and panel.only.isChecked()


def test_a_result_asked_for_before_the_last_change_is_dropped(qtbot, switches):
    controller, _stack, doc = switches
    first, second = (c.concept for c in doc.analysis.concepts[:2])
    seen = []
    controller.viewChanged.connect(lambda view: seen.append(view.state))
    controller.set_off([first], True)            # both asked before either result is delivered
    controller.set_off([second], True)
    controller.wait()
    settle(qtbot, controller)
    assert seen == [SwitchState(off=frozenset({first, second}))]
    assert not np.isin(doc.analysis.codes.indices, [first, second]).any()


def test_an_analysis_without_classes_switches_its_codes_only(qtbot, tiny_analyzer, sample_rgb):
    plain = tiny_analyzer.analyze(sample_rgb)   # no classes: no segmentation, no zero-shot
    j = plain.concepts[0].concept
    view = derive(plain, SwitchState(off=frozenset({j})))
    assert view.changed is None and view.analysis.segmentation is None
    assert not view.analysis.concept_map(j).any() and plain.concept_map(j).any()
