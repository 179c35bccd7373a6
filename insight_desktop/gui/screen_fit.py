"""Keeping windows on the screen they open on.

A default size in pixels, or a geometry saved on a bigger screen or at another scaling, can put
the status bar, a dock or a dialog's buttons out of reach (at 150 % on a 1920×1080 screen a
1500×940 window needs 2250×1410 device pixels).  Everything here measures against the screen's
*available* geometry (without task bars and docks), in Qt's logical pixels.

The smallest the main window gets (its minimumSizeHint, with the filmstrip shown and DejaVu fonts)
is about 629×315 logical pixels on a 1366×768 screen at 200 % (683×384 logical): the panels scroll,
button rows wrap, the filmstrip's thumbnails shrink on a short screen and there the inspector
moves beside the explanations.  tests/gui/test_screen_fit.py checks 1366×768 at 125, 150 and
200 % and 1920×1080 at 150 and 200 %.
"""

from __future__ import annotations

from PySide6.QtCore import QMargins, QRect, QSize
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QWidget

#: room left around a window's geometry for the frame and title bar a window manager adds
FRAME = QMargins(8, 32, 8, 8)


def available_geometry(widget: QWidget) -> QRect:
    """The available geometry of the screen ``widget`` is on (its parent's, else the primary one)."""
    screen: QScreen | None = widget.screen() if widget.isVisible() else None
    parent = widget.parentWidget()
    if screen is None and parent is not None:
        screen = parent.screen()
    screen = screen or QGuiApplication.primaryScreen()
    return screen.availableGeometry()


def fitted(rect: QRect, available: QRect) -> QRect:
    """``rect`` (a geometry, without frame) shrunk and moved so that, framed, it lies in ``available``."""
    inner = available.marginsRemoved(FRAME)
    width, height = min(rect.width(), inner.width()), min(rect.height(), inner.height())
    left = min(max(rect.left(), inner.left()), inner.left() + inner.width() - width)
    top = min(max(rect.top(), inner.top()), inner.top() + inner.height() - height)
    return QRect(left, top, max(width, 1), max(height, 1))


def fit_to_screen(window: QWidget) -> None:
    """Shrink and move a top-level window so that it, with its frame, lies on its screen."""
    rect = fitted(window.geometry(), available_geometry(window))
    if rect != window.geometry():
        window.setGeometry(rect)


def default_size(window: QWidget, preferred: QSize) -> None:
    """Give ``window`` the ``preferred`` size or less, centred on its screen."""
    _centre(window, preferred, available_geometry(window))


def centre_on_screen(widget: QWidget) -> None:
    """Centre a top-level widget on its screen's available geometry (not on its parent window)."""
    if not widget.isVisible():
        widget.adjustSize()
    _centre(widget, widget.size(), available_geometry(widget))


def _centre(widget: QWidget, size: QSize, available: QRect) -> None:
    rect = QRect(0, 0, size.width(), size.height())
    rect.moveCenter(available.marginsRemoved(FRAME).center())
    widget.setGeometry(fitted(rect, available))
