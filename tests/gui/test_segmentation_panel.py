"""SegmentationPanel and ContributionChart, driven by clicks and keys on a real analysis of chelsea."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QLineEdit

from insight_desktop.core.tasks.render import class_colours
from insight_desktop.gui.document import CLASS_PRESETS
from insight_desktop.gui.widgets.segmentation_panel import SegmentationPanel
from tests.gui.conftest import CLASSES, show_widget


@pytest.fixture
def panel(qtbot, document):
    return show_widget(qtbot, SegmentationPanel(document), 420, 900)


def _legend_items(panel):
    return [panel.legend.topLevelItem(i) for i in range(panel.legend.topLevelItemCount())]


def _click_legend_row(qtbot, panel, row: int) -> None:
    item = panel.legend.topLevelItem(row)
    rect = panel.legend.visualItemRect(item)
    x = panel.legend.header().sectionViewportPosition(1) + 4  # the share column: away from the checkbox
    qtbot.mouseClick(panel.legend.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, rect.center().y()))


def _editor(panel) -> QLineEdit:
    open_editors = [e for e in panel.classes.list.viewport().findChildren(QLineEdit) if e.isVisible()]
    assert len(open_editors) == 1  # (closed editors linger until deleteLater runs)
    return open_editors[0]


def _finish_editing(qtbot, panel, key=Qt.Key.Key_Return) -> None:
    """Press ``key`` in the open class editor; the delegate commits and closes it on the next event loop turn."""
    qtbot.keyClick(_editor(panel), key)
    qtbot.waitUntil(lambda: panel.classes.list.state() != QAbstractItemView.State.EditingState, timeout=30_000)


def test_legend_lists_the_analysed_classes_with_their_colours_and_pixel_shares(panel, document):
    seg = document.analysis.segmentation
    counts = np.bincount(seg.labels.ravel(), minlength=len(seg.class_names))
    colours = class_colours(len(seg.class_names), background=False)
    items = _legend_items(panel)
    assert [it.text(0) for it in items] == list(CLASSES)
    assert [it.text(1) for it in items] == [f"{100 * n / seg.labels.size:.1f} %" for n in counts]
    assert len({it.text(1) for it in items}) == 3  # the three classes really differ here
    for item, colour in zip(items, colours):
        swatch = item.icon(0).pixmap(14, 14).toImage()
        assert swatch.pixelColor(7, 7).getRgb()[:3] == colour
        assert item.checkState(0) == Qt.CheckState.Checked
    assert f"{100 * seg.agreement:.1f} %" in panel.agreement.text()
    assert panel.notice.text() == ""  # the classes are the analysed ones


def test_unticking_a_class_hides_it_and_the_document_drives_the_ticks(qtbot, panel, document):
    legend = panel.legend
    legend.setFocus()
    legend.setCurrentItem(legend.topLevelItem(1))
    qtbot.keyClick(legend, Qt.Key.Key_Space)
    assert document.overlay.hidden_labels == frozenset({1})
    qtbot.keyClick(legend, Qt.Key.Key_Space)
    assert document.overlay.hidden_labels == frozenset()
    document.set_overlay(hidden_labels=frozenset({2}))
    assert [it.checkState(0) == Qt.CheckState.Checked for it in _legend_items(panel)] == [True, True, False]


def test_clicking_a_legend_row_explains_that_segment_and_a_bar_click_selects_its_concept(qtbot, panel, document):
    assert panel.chart.bars() == [] and panel.chart.message()
    _click_legend_row(qtbot, panel, 0)
    assert document.segment == 0
    s = document.analysis.segmentation.segment(0)
    per_pixel = {c.concept: c.value / s.pixels for c in s.contributions}
    top = sorted(s.contributions, key=lambda c: -abs(c.value))[:panel.chart.top]
    shown = panel.chart.bars()
    assert len(shown) == panel.chart.top < len(s.contributions)
    assert {c for c, _ in shown} == {c.concept for c in top}
    assert all(v == per_pixel[c] for c, v in shown)                 # the data itself, per pixel
    assert [v for _, v in shown] == sorted((v for _, v in shown), reverse=True)
    assert panel.chart.bias() == s.bias / s.pixels
    # The bars add up to the mean logit: exactly the data's own sum, and the logit within float32 rounding.
    exact = (sum(c.value for c in s.contributions) + s.bias) / s.pixels
    assert panel.chart.total() == pytest.approx(exact, rel=1e-12)
    assert panel.chart.total() == pytest.approx(s.mean_logit, rel=1e-6)
    assert "'cat'" in panel.chart.title() and f"{s.mean_logit:.2f}" in panel.chart.title()

    i = next(i for i, (c, _) in enumerate(shown) if c != document.concept)
    with qtbot.waitSignal(panel.chart.conceptClicked):
        qtbot.mouseClick(panel.chart, Qt.MouseButton.LeftButton, pos=panel.chart.bar_center(i))
    assert document.concept == shown[i][0]
    qtbot.mouseClick(panel.chart, Qt.MouseButton.LeftButton, pos=panel.chart.bar_center(len(shown) + 1))  # bias
    assert document.concept == shown[i][0]

    _click_legend_row(qtbot, panel, 2)   # another segment: other reasons
    sky = document.analysis.segmentation.segment(2)
    assert document.segment == 2 and panel.chart.bias() == sky.bias / sky.pixels
    document.select_segment(0)           # a selection from elsewhere (the image) follows too
    assert panel.legend.currentItem().text(0) == "cat" and panel.chart.bias() == s.bias / s.pixels


def test_editing_the_class_list_updates_the_document(qtbot, panel, document):
    qtbot.mouseClick(panel.classes.add_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(_editor(panel), "rocket")
    _finish_editing(qtbot, panel)
    assert document.classes == CLASSES + ("rocket",)
    assert panel.notice.isVisible() and panel.notice.text() == "Classes changed — press Segment"

    qtbot.mouseClick(panel.classes.add_button, Qt.MouseButton.LeftButton)
    _finish_editing(qtbot, panel, Qt.Key.Key_Escape)  # an empty new row is dropped
    assert panel.classes.names() == CLASSES + ("rocket",) and document.classes == CLASSES + ("rocket",)

    lst = panel.classes.list
    rect = lst.visualItemRect(lst.item(1))
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # a double click starts
    qtbot.mouseDClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # with a press
    _editor(panel).selectAll()
    qtbot.keyClicks(_editor(panel), "dog")
    _finish_editing(qtbot, panel)
    assert document.classes == ("cat", "dog", "sky", "rocket")

    lst.setCurrentRow(2)
    qtbot.keyClick(lst, Qt.Key.Key_Delete)
    assert document.classes == ("cat", "dog", "rocket")
    lst.setCurrentRow(0)
    qtbot.mouseClick(panel.classes.remove_button, Qt.MouseButton.LeftButton)
    assert document.classes == ("dog", "rocket")

    qtbot.mouseClick(panel.classes.add_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(_editor(panel), "Dog")
    _finish_editing(qtbot, panel)
    assert "twice" in panel.notice.text() and not panel.segment_button.isEnabled()


def test_a_preset_replaces_the_list(qtbot, panel, document):
    first = next(iter(CLASS_PRESETS))
    qtbot.keyClick(panel.classes.presets, Qt.Key.Key_Down)
    assert document.classes == CLASS_PRESETS[first]
    assert panel.classes.names() == CLASS_PRESETS[first]
    assert panel.classes.presets.currentIndex() == -1  # back to "Presets…"


def test_class_files_round_trip(qtbot, panel, document, tmp_path, monkeypatch):
    saved = tmp_path / "mine.txt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(saved), ""))
    qtbot.mouseClick(panel.classes.save_button, Qt.MouseButton.LeftButton)
    assert saved.read_text(encoding="utf-8") == "cat\ncoffee cup\nsky\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]  # no temporary file left behind

    document.set_classes(("a", "b"))
    assert panel.classes.names() == ("a", "b")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(saved), ""))
    qtbot.mouseClick(panel.classes.load_button, Qt.MouseButton.LeftButton)
    assert document.classes == CLASSES and panel.classes.names() == CLASSES

    other = tmp_path / "other.txt"
    other.write_text("# mine\nchat noir\n\n  Kaffeetasse  \n", encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(other), ""))
    qtbot.mouseClick(panel.classes.load_button, Qt.MouseButton.LeftButton)
    assert document.classes == ("chat noir", "Kaffeetasse")

    other.write_text("sky\nSky\n", encoding="utf-8")
    qtbot.mouseClick(panel.classes.load_button, Qt.MouseButton.LeftButton)
    assert document.classes == ("chat noir", "Kaffeetasse")  # a bad file changes nothing…
    assert "other.txt" in panel.notice.text() and "twice" in panel.notice.text()  # …and says why


def test_segment_button_requests_and_the_result_is_then_shown(qtbot, panel, document):
    with qtbot.waitSignal(panel.segmentRequested):   # the classes shown are the analysed ones:
        qtbot.mouseClick(panel.segment_button, Qt.MouseButton.LeftButton)
    assert document.overlay.show_segmentation         # the mask is switched on at once
    document.set_overlay(show_segmentation=False)
    document.set_classes(CLASSES[:2])
    with qtbot.waitSignal(panel.segmentRequested):
        qtbot.mouseClick(panel.segment_button, Qt.MouseButton.LeftButton)
    assert not document.overlay.show_segmentation     # …waits for the worker's answer
    document.set_analysis(document.analysis)
    assert document.overlay.show_segmentation and panel.show_segmentation.isChecked()
    document.set_overlay(show_segmentation=False)
    document.set_analysis(document.analysis)          # a later analysis alone does not switch it on
    assert not document.overlay.show_segmentation


def test_background_and_view_toggles_edit_the_document(qtbot, panel, document):
    qtbot.mouseClick(panel.background, Qt.MouseButton.LeftButton)
    assert document.background and document.classes == CLASSES
    assert panel.notice.text() == "Classes changed — press Segment"
    qtbot.mouseClick(panel.show_opaque, Qt.MouseButton.LeftButton)
    assert document.overlay.show_opaque
    document.set_overlay(show_opaque=False)
    assert not panel.show_opaque.isChecked()


def test_without_an_analysis_the_panel_asks_for_one(qtbot, panel, document):
    document.set_analysis(None)
    assert panel.legend.topLevelItemCount() == 0 and panel.chart.bars() == []
    assert panel.notice.text().startswith("Press Segment") and panel.segment_button.isEnabled()


def test_the_add_remove_row_stays_put_whatever_the_notice_says(qtbot, panel, document):
    def row_geometry():
        qtbot.wait(10)  # let the layout settle
        return [b.geometry().translated(b.parentWidget().mapTo(panel, QPoint(0, 0)))
                for b in (panel.classes.add_button, panel.classes.remove_button)]

    assert panel.notice.text() == ""          # the analysis matches the classes: nothing to say
    settled = row_geometry()
    document.set_classes(CLASSES + ("rocket",))
    assert panel.notice.text() == "Classes changed — press Segment"
    assert row_geometry() == settled
    document.set_classes(("cat", "cat"))      # a problem, in red
    assert "twice" in panel.notice.text()
    assert row_geometry() == settled


def test_a_preset_can_be_undone(qtbot, panel, document):
    first = next(iter(CLASS_PRESETS))
    assert not panel.classes.undo_button.isEnabled()
    qtbot.keyClick(panel.classes.presets, Qt.Key.Key_Down)
    assert document.classes == CLASS_PRESETS[first] != CLASSES
    qtbot.keyClick(panel.classes.presets, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert document.classes == CLASSES and panel.classes.names() == CLASSES
    assert not panel.classes.undo_button.isEnabled()  # nothing older to go back to

    panel.classes.list.setCurrentRow(0)
    qtbot.mouseClick(panel.classes.remove_button, Qt.MouseButton.LeftButton)
    qtbot.keyClick(panel.classes.presets, Qt.Key.Key_Down)
    qtbot.mouseClick(panel.classes.undo_button, Qt.MouseButton.LeftButton)
    assert document.classes == CLASSES[1:]
    qtbot.mouseClick(panel.classes.undo_button, Qt.MouseButton.LeftButton)
    assert document.classes == CLASSES


def test_the_legend_keeps_its_rows_when_a_segment_is_explained(qtbot, document):
    """The chart of a clicked segment grows under the legend; the legend must still show every class
    (it shrank to three rows of a longer list before)."""
    from insight_desktop.gui.widgets.segmentation_panel import LEGEND_ROWS

    panel = show_widget(qtbot, SegmentationPanel(document), 300, 420)  # short: a laptop's panel
    n = panel.legend.topLevelItemCount()
    assert n == len(CLASSES) <= LEGEND_ROWS

    def fully_visible_rows():
        qtbot.wait(10)  # let the layout settle
        view = panel.legend.viewport().rect()
        return sum(view.contains(panel.legend.visualItemRect(it)) for it in _legend_items(panel))

    assert fully_visible_rows() == n
    _click_legend_row(qtbot, panel, 0)
    assert len(panel.chart.labels()) > panel.chart.top  # the chart grew: 12 concepts, the rest, the bias
    assert fully_visible_rows() == n


def test_chart_labels_are_cut_at_word_ends_and_the_summary_row_stays_readable(qtbot):
    from insight_desktop.core.tasks.codes import ConceptContribution
    from insight_desktop.gui.widgets.contribution_chart import ContributionChart

    names = {0: "ornithology enthusiasts of the northern hemisphere", 1: "supercalifragilisticexpialidocious"}
    chart = ContributionChart(name_of=lambda c: names.get(c, f"c{c}"), top=2)
    show_widget(qtbot, chart, 300, 200)
    chart.set_contributions([ConceptContribution(c, 1.0 / (c + 1)) for c in range(138)], 0.1, "why")
    assert chart.rest()[0] == 136
    full = chart.labels()
    drawn = chart.drawn_labels()
    assert full[2] == "136 other concepts" and drawn[2] == "136 other concepts"  # readable, whole
    assert drawn[3] == "bias"
    long_name, one_word = drawn[0], drawn[1]
    assert long_name != full[0] and long_name.endswith("…")
    assert full[0].startswith(long_name[:-1]) and full[0][len(long_name) - 1] == " "  # cut where a word ends
    assert one_word.endswith("…") and full[1].startswith(one_word[:-1])                # or at the right

    chart.resize(170, 200)  # very narrow: the summary row says it in short, still whole words
    qtbot.wait(10)
    rest = chart.drawn_labels()[2]
    assert rest in ("136 other concepts", "136 others"), rest


def test_in_a_narrow_scrolled_dock_nothing_is_drawn_over_anything_else(qtbot, document):
    """As in the Explanations dock (a scroll area around a tab widget) on a laptop at 150–200 %:
    the rows wrap and the wrapped lines get their room (the agreement line was drawn over the legend)."""
    from PySide6.QtWidgets import QScrollArea, QTabWidget

    panel = SegmentationPanel(document)
    tabs = QTabWidget()
    tabs.addTab(panel, "Segmentation")
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(tabs)
    show_widget(qtbot, scroll, 226, 430)
    _click_legend_row(qtbot, panel, 0)  # the chart grows too
    document.set_classes(CLASSES + ("rocket",))  # and the notice speaks
    assert panel.notice.text()
    line = panel.agreement.fontMetrics().height()
    qtbot.waitUntil(lambda: panel.agreement.height() >= 2 * line)  # wrapped, and given its lines
    qtbot.wait(20)

    def top_bottom(w):
        top = w.mapTo(tabs, QPoint(0, 0)).y()
        return top, top + w.height()

    stacked = [panel.classes, panel.background, panel.notice, panel.legend, panel.agreement,
               panel.show_segmentation, panel.chart]
    spans = [top_bottom(w) for w in stacked]
    for (name_a, (_, bottom)), (name_b, (top, _)) in zip(zip(stacked, spans), zip(stacked[1:], spans[1:])):
        assert bottom <= top, (type(name_a).__name__, type(name_b).__name__, spans)
    assert scroll.horizontalScrollBar().maximum() == 0  # and nothing scrolls sideways
