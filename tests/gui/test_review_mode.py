"""Review mode driven by keys only: verdicts with auto-advance, rename with type-ahead, notes,
undo/redo across bulk actions, filters, hiding rejected concepts, and a rename that shows
everywhere and outlives the window (the curation file)."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QLabel

from insight_desktop.core.curation import load_curation
from insight_desktop.core.paths import resource_path
from insight_desktop.gui.review.navigation import tree_order
from tests.gui.conftest import wait_for_analysis

CHELSEA = resource_path("samples", "chelsea.png")
SHIFT = Qt.KeyboardModifier.ShiftModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def key(window, k, modifier=Qt.KeyboardModifier.NoModifier):
    """A key press where the keyboard is: an open completion list, else the focus widget (the
    review panel unless a field took it)."""
    from PySide6.QtTest import QTest

    target = QApplication.activePopupWidget() or QApplication.focusWidget() or window
    QTest.keyClick(target, k, modifier)


@pytest.fixture
def reviewing(qtbot, window, tiny_bundle):
    """The window on the tiny model and chelsea, review mode switched on by its key."""
    window.start([CHELSEA], tiny_bundle)
    wait_for_analysis(qtbot, window)
    qtbot.waitUntil(lambda: window.review.controller.curation is not None, timeout=5_000)
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_R, CTRL | SHIFT)
    assert window.actions.review_mode.isChecked() and window.review.dock.isVisible()
    window.review.panel.setFocus()
    window.document.select_concept(window.review.mode.navigator.first())
    return window


def order_of(window):
    return [int(j) for j in tree_order(window.document.catalog.relations.display_parent)]


def test_verdicts_by_keys_advance_in_tree_order_and_count(qtbot, reviewing):
    w, doc = reviewing, reviewing.document
    cur, order = w.review.controller.curation, order_of(reviewing)
    w.canvas.viewbox.setRange(xRange=(40, 140), yRange=(30, 90), padding=0)   # the user's zoom and pan
    view = w.canvas.viewbox.viewRange()
    assert doc.concept == order[0] and w.review.panel.progress.text() == "0 of 64 reviewed, 0 renamed, 0 rejected"
    key(w, Qt.Key.Key_A)
    assert cur.status(order[0]) == "accepted" and doc.concept == order[1]
    key(w, Qt.Key.Key_X)
    assert cur.status(order[1]) == "rejected" and doc.concept == order[2]
    name = w.tree.model.index_of(order[1])              # the tree shows the verdicts
    assert name.data(Qt.ItemDataRole.FontRole).strikeOut()
    assert w.tree.model.index_of(order[0]).data(Qt.ItemDataRole.ForegroundRole).name() == "#2b8a3e"
    key(w, Qt.Key.Key_F, SHIFT)
    assert cur.status(order[2]) == "flagged" and doc.concept == order[3]
    assert w.review.panel.progress.text() == "3 of 64 reviewed, 0 renamed, 1 rejected, 1 flagged"
    assert w.canvas.viewbox.viewRange() == view        # each concept's heatmap where the user looks
    key(w, Qt.Key.Key_Z, CTRL)                         # undo shows the concept whose verdict it took back
    assert cur.status(order[2]) == "unreviewed" and doc.concept == order[2]
    key(w, Qt.Key.Key_Z, CTRL | SHIFT)
    assert cur.status(order[2]) == "flagged" and doc.concept == order[2]
    key(w, Qt.Key.Key_J)
    key(w, Qt.Key.Key_K)
    assert doc.concept == order[2] and w.review.panel.status.text().startswith("flagged")
    key(w, Qt.Key.Key_Backspace)                       # back to unreviewed; stays put
    assert cur.status(order[2]) == "unreviewed" and doc.concept == order[2]
    key(w, Qt.Key.Key_J)
    key(w, Qt.Key.Key_U)                               # the next nobody judged (order[2] is behind)
    assert doc.concept == order[4]
    w.review.panel.auto_advance.setChecked(False)
    key(w, Qt.Key.Key_A)
    assert cur.status(order[4]) == "accepted" and doc.concept == order[4]
    # by frequency: the next concept is the next less frequent one
    w.review.panel.order.setCurrentIndex(1)
    by_frequency = [int(j) for j in sorted(range(64), key=lambda j: (-doc.catalog.frequency(j), j))]
    doc.select_concept(by_frequency[10])
    w.review.panel.setFocus()
    key(w, Qt.Key.Key_J)
    assert doc.concept == by_frequency[11]
    w.review.panel.auto_advance.setChecked(True)
    key(w, Qt.Key.Key_X)                               # a verdict advances in this order too
    assert cur.status(by_frequency[11]) == "rejected" and doc.concept == by_frequency[12]
    # the keys do nothing outside review mode (F stays Fit Image)
    qtbot.keyClick(w, Qt.Key.Key_R, CTRL | SHIFT)
    assert not w.review.dock.isVisible()
    before = dict(cur.records)
    w.tree.view.setFocus()
    key(w, Qt.Key.Key_X)
    assert dict(cur.records) == before


def test_rename_with_type_ahead_shows_everywhere_and_outlives_the_window(qtbot, reviewing, tiny_bundle, tmp_path,
                                                                          monkeypatch):
    from insight_desktop.gui import window_files
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    w, doc = reviewing, reviewing.document
    chart = w.segmentation.chart
    qtbot.waitUntil(lambda: bool(chart.bars()) or bool(w.classification.chart.bars()), timeout=10_000)
    chart = chart if chart.bars() else w.classification.chart
    j = chart.bars()[0][0]
    doc.select_concept(j)
    w.review.panel.setFocus()
    key(w, Qt.Key.Key_Return)                         # Rename: the name field, with type-ahead
    edit = w.review.panel.name_edit
    assert edit.hasFocus()
    qtbot.keyClicks(edit, "tabby")
    completer = edit.completer()
    qtbot.waitUntil(lambda: completer.popup().isVisible(), timeout=5_000)
    assert "tabby cat" in [completer.popup().model().index(r, 0).data()
                           for r in range(completer.popup().model().rowCount())]
    popup = completer.popup()
    for _ in range(popup.model().rowCount()):         # down the list to "tabby cat"
        key(w, Qt.Key.Key_Down)
        if popup.currentIndex().data() == "tabby cat":
            break
    key(w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: doc.concept_name(j) == "tabby cat", timeout=5_000)
    cur = w.review.controller.curation
    assert cur.status(j) == "renamed" and cur.review(j).name == "tabby cat"
    assert not edit.hasFocus()                        # the keys are the panel's again
    assert w.tree.model.index_of(j).data() == "tabby cat" and w.inspector.name.text() == "tabby cat"
    assert "tabby cat" in chart.labels()
    target = tmp_path / "contributions.csv"
    monkeypatch.setattr(window_files.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    w.actions.export_contributions.trigger()
    rows = [r for r in csv.DictReader(target.read_text(encoding="utf-8").splitlines()) if r["concept"] == str(j)]
    assert rows and all(r["name"] == "tabby cat" for r in rows)
    key(w, Qt.Key.Key_N)                              # a note
    qtbot.keyClicks(w.review.panel.note_edit, "fur, not the cat")
    key(w, Qt.Key.Key_Return)
    assert cur.review(j).note == "fur, not the cat"
    path = w.review.controller.path
    w.close()                                         # saved on closing, whatever the autosave timer says
    saved = load_curation(path)
    assert saved.review(j).name == "tabby cat" and saved.review(j).note == "fur, not the cat"

    again = MainWindow(AppSettings(QSettings(str(tmp_path / "settings2.ini"), QSettings.Format.IniFormat)))
    qtbot.addWidget(again)
    again.status.set_device_choice("cpu")
    again.start([CHELSEA], tiny_bundle)
    qtbot.waitUntil(lambda: again.review.controller.curation is not None, timeout=60_000)
    assert again.document.concept_name(j) == "tabby cat"
    assert again.tree.model.index_of(j).data() == "tabby cat"
    again.close()


def test_f2_renames_through_the_curation_and_undo_covers_it(qtbot, reviewing):
    from PySide6.QtWidgets import QInputDialog

    w, doc = reviewing, reviewing.document
    j = doc.concept
    qtbot.keyClick(w, Qt.Key.Key_F2)
    dialog = w.inspector.findChild(QInputDialog)
    assert dialog is not None and dialog.findChild(type(w.review.panel.name_edit)).completer() is not None
    dialog.setTextValue("my name")
    dialog.accept()
    assert doc.concept_name(j) == "my name" and w.review.controller.curation.status(j) == "renamed"
    w.review.panel.setFocus()
    key(w, Qt.Key.Key_Z, CTRL)
    assert doc.concept_name(j) == f"c{j}" and w.review.controller.curation.status(j) == "unreviewed"
    key(w, Qt.Key.Key_Z, CTRL | SHIFT)
    assert doc.concept_name(j) == "my name"


def test_undo_and_redo_across_bulk_actions(qtbot, reviewing):
    w, doc = reviewing, reviewing.document
    cur, ctl = w.review.controller.curation, w.review.controller
    doc.select_concept(1)                             # 1 is the display parent of 0, 13, 27, 41
    w.review.panel.setFocus()
    key(w, Qt.Key.Key_A, SHIFT)                       # Accept Subtree: one step
    subtree = {1, 0, 13, 27, 41}
    assert set(cur.with_status("accepted")) >= subtree
    n_accepted = len(cur.with_status("accepted"))
    ctl.rare_below = 0.2                              # the tiny model has no concept under 0.01 %
    w.actions.reject_rare.trigger()
    freq = doc.catalog.relations.frequency
    rare = {j for j in range(64) if freq[j] < 0.2}
    assert rare and set(cur.with_status("rejected")) == rare
    assert w.actions.undo.text().startswith("&Undo Reject")
    key(w, Qt.Key.Key_Z, CTRL)                        # the rejections go, all at once
    assert cur.with_status("rejected") == () and len(cur.with_status("accepted")) == n_accepted
    key(w, Qt.Key.Key_Z, CTRL)                        # and the subtree's acceptance
    assert cur.records == {}
    key(w, Qt.Key.Key_Z, CTRL | SHIFT)
    key(w, Qt.Key.Key_Z, CTRL | SHIFT)
    assert set(cur.with_status("rejected")) == rare and set(cur.with_status("accepted")) == subtree - rare
    assert ctl.flush() or not ctl._dirty             # saved (now, or by the autosave already)
    assert load_curation(ctl.path).records == cur.records


def test_filters_by_status_and_level(qtbot, reviewing):
    w, doc = reviewing, reviewing.document
    cur, panel, order = w.review.controller.curation, w.review.panel, order_of(reviewing)
    for _ in range(4):                                # reject, accept, reject, accept
        key(w, Qt.Key.Key_X)
        key(w, Qt.Key.Key_A)
    rejected = [j for j in order if cur.status(j) == "rejected"]
    assert len(rejected) == 4
    panel.status_filter.setCurrentIndex(panel.status_filter.findData("rejected"))
    seen = []
    for _ in range(5):
        key(w, Qt.Key.Key_J)
        seen.append(doc.concept)
    assert set(seen) == set(rejected) and seen[:4] != seen[1:5]
    panel.status_filter.setCurrentIndex(0)
    panel.level_filter.setCurrentIndex(panel.level_filter.findData(1))
    for _ in range(20):
        key(w, Qt.Key.Key_J)
        assert doc.catalog.level(doc.concept) == 1


def test_hidden_rejected_concepts_leave_the_tree_and_fold_into_one_bar(qtbot, reviewing):
    w = reviewing
    chart = w.classification.chart
    qtbot.waitUntil(lambda: bool(chart.bars()), timeout=10_000)
    total, shown = chart.total(), [c for c, _ in chart.bars()]
    victims = shown[:2]
    w.review.controller.set_status(victims, "rejected")
    w.actions.hide_rejected.trigger()
    assert all(not w.tree.index_of(j).isValid() or w.tree.model.hasChildren(w.tree.model.index_of(j))
               for j in victims)
    assert not set(victims) & {c for c, _ in chart.bars()}
    n, _value = chart.rejected()
    assert n == 2 and "2 rejected concepts" in chart.labels()
    assert chart.total() == pytest.approx(total, abs=1e-9)
    w.actions.hide_rejected.trigger()
    assert chart.rejected() is None and set(victims) <= {c for c, _ in chart.bars()}


def test_the_class_editor_keeps_its_own_ctrl_z(qtbot, reviewing):
    w = reviewing
    cur, editor = w.review.controller.curation, w.segmentation.classes
    key(w, Qt.Key.Key_A)                              # a curation step the window's Undo could take back
    accepted = cur.with_status("accepted")
    w.show_panel(w.segmentation)
    names = editor.names()
    editor.list.setFocus()
    qtbot.waitUntil(editor.list.hasFocus, timeout=5_000)
    editor.list.setCurrentRow(0)
    editor.remove_selected()                          # a user edit of the class list
    assert editor.names() == names[1:] and editor.undo_button.isEnabled()
    key(w, Qt.Key.Key_Z, CTRL)                        # the editor's undo, not the window's
    assert editor.names() == names and cur.with_status("accepted") == accepted
    w.review.panel.setFocus()
    qtbot.waitUntil(w.review.panel.hasFocus, timeout=5_000)
    key(w, Qt.Key.Key_Z, CTRL)                        # elsewhere Ctrl+Z is the curation's again
    assert cur.with_status("accepted") == ()


def test_review_keys_are_listed_in_f1_and_configurable(qtbot, tmp_path, tiny_bundle):
    from insight_desktop.gui.dialogs import ShortcutsDialog
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    qs = QSettings(str(tmp_path / "keys.ini"), QSettings.Format.IniFormat)
    qs.setValue("shortcuts/review_accept", "Y")
    qs.sync()
    w = MainWindow(AppSettings(qs))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5_000)
    qtbot.keyClick(w, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: w.findChild(ShortcutsDialog) is not None, timeout=5_000)
    table = w.findChild(ShortcutsDialog).table
    rows = {(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount())}
    assert {("Accept Concept", "Y"), ("Reject Concept", "X"), ("Flag Concept", "Shift+F"), ("Next Concept", "J"),
            ("Next Unreviewed", "U"), ("Undo", "Ctrl+Z"), ("Redo", "Ctrl+Shift+Z"),
            ("Review Concepts", "Ctrl+Shift+R")} <= rows
    w.close()


def test_an_unreadable_curation_file_is_kept_aside_not_overwritten(qtbot, window, tiny_bundle):
    from insight_desktop.core.analysis_cache import model_identity
    from insight_desktop.core.concepts.bundle import ConceptModel
    from insight_desktop.core.curation import default_path
    from insight_desktop.core.curation.records import current_user

    model = ConceptModel.load(tiny_bundle, eager=False)
    path = default_path(model_identity(model.manifest), current_user())
    model.close()
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"format": "insight-curation", "version": 1, "concepts": [')   # cut short
    window.start([CHELSEA], tiny_bundle)
    qtbot.waitUntil(lambda: window.review.controller.curation is not None, timeout=60_000)
    kept = list(path.parent.glob("*.damaged"))
    assert len(kept) == 1 and kept[0].read_bytes().endswith(b"[")
    assert "could not be read" in window.statusBar().currentMessage()
    window.review.controller.set_status([3], "flagged")
    assert window.review.controller.flush()
    assert load_curation(path).status(3) == "flagged"


def test_switching_the_model_saves_and_starts_afresh(qtbot, reviewing):
    w, doc = reviewing, reviewing.document
    ctl = w.review.controller
    key(w, Qt.Key.Key_X)
    path, records = ctl.path, dict(ctl.curation.records)
    doc.set_catalog(None)                              # the model goes (another one is being opened)
    assert ctl.curation is None and doc.renamer is None and not ctl.undo_stack.canUndo()
    assert load_curation(path).records == records      # saved at once, not lost with the timer
    assert not w.actions.review_accept.isEnabled()


def test_export_verdicts_and_merge_another_annotators_curation(qtbot, reviewing, tmp_path, monkeypatch):
    from insight_desktop.core.curation import Curation
    from insight_desktop.gui.review import curation_files

    w, ctl = reviewing, reviewing.review.controller
    mine = ctl.curation
    ctl.set_status([0], "accepted")
    ctl.set_status([1], "rejected")
    ctl.rename(2, "whiskers")
    theirs = Curation(mine.model_identity, 64, user="ana", model_label="tiny.zip")
    theirs.accept([0])                   # agrees
    theirs.accept([1])                   # conflict: I rejected it
    theirs.rename(2, "fur")              # conflict: another name
    theirs.flag([5])                     # new to me
    theirs.note(6, "looks like grass")   # new to me
    their_file = theirs.save(tmp_path / "ana.insight-curation.json")
    monkeypatch.setattr(curation_files.QFileDialog, "getOpenFileName", lambda *a, **k: (str(their_file), ""))
    w.actions.merge_curation.trigger()
    dialog = w.findChild(curation_files.MergeDialog)
    assert dialog is not None and dialog.table.rowCount() == 2
    assert [c.concept for c in dialog.conflicts] == [1, 2]
    assert "Cohen's κ" in dialog.findChild(QLabel).text() and "66.7 %" in dialog.findChild(QLabel).text()
    assert mine.status(5) == "flagged" and mine.review(6).note == "looks like grass"   # merged already
    dialog.choose(2, "theirs")
    dialog.accept()
    assert mine.review(2).name == "fur" and mine.status(1) == "rejected"   # mine kept for 1
    assert w.document.concept_name(2) == "fur"
    w.review.panel.setFocus()
    key(w, Qt.Key.Key_Z, CTRL)                         # the choices, then the merge: one step each
    assert mine.review(2).name == "whiskers" and mine.status(5) == "flagged"
    key(w, Qt.Key.Key_Z, CTRL)
    assert mine.status(5) == "unreviewed" and mine.review(6).note == ""

    target = tmp_path / "verdicts.csv"
    monkeypatch.setattr(curation_files.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    w.actions.export_verdicts.trigger()
    rows = list(csv.DictReader(target.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 64 and rows[2]["name"] == "whiskers" and rows[2]["status"] == "renamed"
    assert rows[1]["status"] == "rejected" and rows[3]["status"] == "unreviewed"


def test_a_failing_save_is_told_once_and_tried_again(qtbot, reviewing, monkeypatch):
    from insight_desktop.core.curation import CurationError

    ctl, told = reviewing.review.controller, []
    ctl.saveFailed.connect(told.append)
    real_save = type(ctl.curation).save

    def full_disk(self, path=None):
        raise CurationError("cannot save the curation: No space left on device")

    monkeypatch.setattr(type(ctl.curation), "save", full_disk)
    for status in ("accepted", "rejected", "flagged"):
        ctl.set_status([7], status)
        assert not ctl.flush()
    assert len(told) == 1 and "No space left" in told[0]
    monkeypatch.setattr(type(ctl.curation), "save", real_save)
    assert ctl.flush() and load_curation(ctl.path).status(7) == "flagged"
