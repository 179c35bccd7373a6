"""The window and the welcome dialog fit the screen they open on (here the offscreen platform's
800×800 screen, smaller than the window's preferred 1500×940), also from a saved geometry."""

from __future__ import annotations

from itertools import combinations

import pytest
from PySide6.QtCore import QRect, QSettings
from PySide6.QtGui import QGuiApplication

from insight_desktop.gui.main_window import MainWindow
from insight_desktop.gui.screen_fit import FRAME
from insight_desktop.gui.settings import AppSettings


def available():
    return QGuiApplication.primaryScreen().availableGeometry()


def new_window(qtbot, ini) -> MainWindow:
    window = MainWindow(AppSettings(QSettings(str(ini), QSettings.Format.IniFormat)))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def test_the_window_opens_inside_the_available_screen(qtbot, tmp_path):
    screen = available()
    assert screen.width() < 1500 or screen.height() < 940  # else this test proves nothing
    window = new_window(qtbot, tmp_path / "s.ini")
    assert screen.contains(window.frameGeometry())
    assert screen.contains(window.geometry().marginsAdded(FRAME))


LAPTOPS = [(1366, 768, 1.25), (1366, 768, 1.5), (1366, 768, 2.0), (1920, 1080, 1.5), (1920, 1080, 2.0)]


@pytest.mark.parametrize("width, height, scale", LAPTOPS, ids=lambda v: str(v))
def test_the_window_fits_a_laptop_screen_at_every_scaling(qtbot, tmp_path, monkeypatch, width, height, scale):
    """QT_SCALE_FACTOR divides the screen into logical pixels; the widgets' minimum sizes are in logical
    pixels whatever the factor, so a fake available geometry of the logical size is the real test."""
    from insight_desktop.gui import main_window, screen_fit

    laptop = QRect(0, 0, round(width / scale), round(height / scale))  # e.g. 1366×768 at 200 %: 683×384
    monkeypatch.setattr(main_window, "available_geometry", lambda widget: laptop)
    monkeypatch.setattr(screen_fit, "available_geometry", lambda widget: laptop)
    window = new_window(qtbot, tmp_path / "s.ini")
    window.docks["images"].show()  # the filmstrip of an open folder: the tallest layout
    hint, room = window.minimumSizeHint(), laptop.marginsRemoved(FRAME)
    assert hint.width() <= room.width() and hint.height() <= room.height(), (hint, room)
    assert window.width() <= room.width() and window.height() <= room.height()

    # The Explanations panel wraps its button rows instead of scrolling sideways.
    qtbot.wait(20)
    scroll = window.task_scroll
    assert scroll.horizontalScrollBar().maximum() == 0, (scroll.viewport().width(), window.task_tabs.minimumSizeHint())
    editor = window.segmentation.classes
    buttons = [editor.add_button, editor.remove_button, editor.undo_button, editor.presets, editor.load_button,
               editor.save_button]
    for a, b in combinations(buttons, 2):
        assert not a.geometry().intersects(b.geometry()), (a, b)
    # the wrapped rows get their room once the layouts settle
    qtbot.waitUntil(lambda: all(editor.buttons.rect().contains(b.geometry()) for b in buttons))
    below = window.segmentation.background  # the next widget under the class editor
    assert editor.mapTo(window, editor.rect().bottomLeft()).y() < below.mapTo(window, below.rect().topLeft()).y()


def test_a_saved_geometry_larger_than_the_screen_and_off_it_is_brought_back(qtbot, tmp_path):
    ini = tmp_path / "s.ini"
    first = new_window(qtbot, ini)
    first.setMinimumSize(0, 0)
    first.setGeometry(QRect(600, 500, 2400, 1500))  # as saved on a big screen
    first.close()
    screen = available()
    second = new_window(qtbot, ini)
    assert screen.contains(second.frameGeometry()), (second.frameGeometry(), screen)
    assert screen.contains(second.geometry().marginsAdded(FRAME))


def test_the_welcome_dialog_is_centred_on_the_screen_not_the_window(qtbot, tmp_path, monkeypatch):
    from insight_desktop.gui.first_run import FirstRunDialog

    window = new_window(qtbot, tmp_path / "s.ini")
    window.setGeometry(QRect(20, 40, 300, 700))  # a window off to one side
    monkeypatch.setattr(window.worker, "load_model", lambda path, device: None)
    window.show_first_run()
    dialog = window.findChild(FirstRunDialog)
    qtbot.waitExposed(dialog)
    centre, screen = dialog.frameGeometry().center(), available().center()
    assert abs(centre.x() - screen.x()) <= 24 and abs(centre.y() - screen.y()) <= 40, (centre, screen)
    assert available().contains(dialog.frameGeometry())
    dialog.close()
