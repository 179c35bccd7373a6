"""Shortcuts, About and error dialogs; and the GUI modules of this group never import torch."""

from __future__ import annotations

import subprocess
import sys

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox, QWidget

import insight_desktop
from insight_desktop.core.paths import resource_path
from insight_desktop.gui.dialogs import AboutDialog, ShortcutsDialog, licence_files, show_error


def _actions(parent):
    def action(text, *keys):
        a = QAction(text, parent)
        if keys:
            a.setShortcuts([QKeySequence(k) for k in keys])
        return a

    return [action("&Open Image…", "Ctrl+O"), action("Save &Session", "Ctrl+S"), action("No shortcut"),
            action("&Next Image", "Right", "PgDown"), action("Zoom && Pan", "Ctrl+0")]


def test_shortcuts_dialog_lists_actions_with_shortcuts_and_searches(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    actions = _actions(parent)
    dialog = ShortcutsDialog(actions + [actions[0]], parent)  # an action given twice is listed once
    native = QKeySequence.SequenceFormat.NativeText
    assert dialog.visible_rows() == [
        ("Open Image…", QKeySequence("Ctrl+O").toString(native)),
        ("Save Session", QKeySequence("Ctrl+S").toString(native)),
        ("Next Image", f"{QKeySequence('Right').toString(native)}, {QKeySequence('PgDown').toString(native)}"),
        ("Zoom & Pan", QKeySequence("Ctrl+0").toString(native)),
    ]
    dialog.show()
    qtbot.keyClicks(dialog.search, "image")
    assert [r[0] for r in dialog.visible_rows()] == ["Open Image…", "Next Image"]
    dialog.search.clear()
    qtbot.keyClicks(dialog.search, QKeySequence("Ctrl+S").toString(native))  # search by key too
    assert [r[0] for r in dialog.visible_rows()] == ["Save Session"]
    dialog.search.clear()
    assert len(dialog.visible_rows()) == 4


def test_about_without_a_model_shows_version_and_licences(qtbot):
    dialog = AboutDialog(None)
    qtbot.addWidget(dialog)
    text = dialog.text_view.toPlainText()
    assert f"Insight Desktop {insight_desktop.__version__}" in text
    assert "No concept model is loaded" in text
    import pyqtgraph
    import PySide6

    assert f"PySide6 {PySide6.__version__}" in text and f"pyqtgraph {pyqtgraph.__version__}" in text
    assert "Chelsea the cat" in text                   # resources/samples/LICENSES.md
    assert "wordfreq" in text and "CC BY-SA 4.0" in text  # resources/vocab/SOURCES.md
    assert dialog.text_view.isReadOnly()
    assert resource_path("samples", "LICENSES.md") in licence_files()


def test_about_shows_the_loaded_model(qtbot, tiny_catalog):
    dialog = AboutDialog(tiny_catalog)
    qtbot.addWidget(dialog)
    text = dialog.text_view.toPlainText()
    assert tiny_catalog.backbone_id in text
    first_line = tiny_catalog.summary.splitlines()[0]
    assert first_line in text
    assert "date" in tiny_catalog.provenance and str(tiny_catalog.provenance["date"]) in text


def test_show_error_does_not_block_and_keeps_the_traceback(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    parent.show()
    try:
        raise ValueError("the model file is damaged")
    except ValueError as exc:
        box = show_error(parent, "Cannot load model", "The concept model could not be loaded.", exc)
    assert isinstance(box, QMessageBox) and box.isVisible()  # returned straight away: not blocking
    assert box.text() == "The concept model could not be loaded."
    assert box.windowTitle() == "Cannot load model"
    assert "Traceback" in box.detailedText() and "ValueError: the model file is damaged" in box.detailedText()
    assert parent.findChild(QMessageBox) is box  # findable by tests and by the window that owns it

    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=30_000)

    plain = show_error(None, "Oops", "Something failed.")
    assert plain.detailedText() == "" and plain.text() == "Something failed."
    plain.close()


def test_dialog_modules_do_not_import_torch():
    code = ("import sys\n"
            "import insight_desktop.gui.dialogs, insight_desktop.gui.session, insight_desktop.gui.settings\n"
            "import insight_desktop.gui.widgets.filmstrip\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_close_button_closes_the_about_dialog(qtbot):
    dialog = AboutDialog(None)
    qtbot.addWidget(dialog)
    dialog.show()
    close = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Close)
    qtbot.mouseClick(close, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
