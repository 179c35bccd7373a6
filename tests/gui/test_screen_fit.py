"""The window and the welcome dialog fit the screen they open on (here the offscreen platform's
800×800 screen, smaller than the window's preferred 1500×940), also from a saved geometry."""

from __future__ import annotations

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


def test_the_window_can_shrink_to_a_1366x768_laptop_at_150_percent(qtbot, tmp_path, monkeypatch):
    from insight_desktop.gui import main_window, screen_fit

    laptop = QRect(0, 0, 911, 512)  # 1366×768 device pixels at 150 %, in logical pixels
    monkeypatch.setattr(main_window, "available_geometry", lambda widget: laptop)
    monkeypatch.setattr(screen_fit, "available_geometry", lambda widget: laptop)
    window = new_window(qtbot, tmp_path / "s.ini")
    window.docks["images"].show()  # the filmstrip of an open folder: the tallest layout
    hint, room = window.minimumSizeHint(), laptop.marginsRemoved(FRAME)
    assert hint.width() <= room.width() and hint.height() <= room.height(), (hint, room)
    assert window.width() <= room.width() and window.height() <= room.height()


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
