"""Single-key shortcuts (R, S, H…) never fire while the user types class names."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit


def _layer_states(window):
    a = window.actions
    return a.show_residual.isChecked(), a.show_segmentation.isChecked(), a.show_heatmap.isChecked()


def test_typing_r_and_s_in_the_class_editor_types_them_and_fires_no_shortcut(qtbot, window):
    editor = window.segmentation.classes
    before = _layer_states(window)
    window.activateWindow()
    editor.add_button.click()
    qtbot.waitUntil(lambda: isinstance(QApplication.focusWidget(), QLineEdit), timeout=10_000)
    field = QApplication.focusWidget()
    for key in (Qt.Key.Key_R, Qt.Key.Key_S, Qt.Key.Key_H):
        qtbot.keyClick(field, key)
    assert field.text() == "rsh"
    assert _layer_states(window) == before
    qtbot.keyClick(field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "rsh" in editor.names(), timeout=10_000)
    # focus is back on the list: typing there still must not toggle layers
    qtbot.waitUntil(lambda: QApplication.focusWidget() is editor.list, timeout=10_000)
    qtbot.keyClick(editor.list, Qt.Key.Key_R)
    qtbot.keyClick(editor.list, Qt.Key.Key_S)
    assert _layer_states(window) == before
