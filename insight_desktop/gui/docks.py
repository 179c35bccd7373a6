"""Panels that plug into the main window (review, gallery, statistics, what-if, side by side)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QWidget


def add_hidden_dock(window: Any, key: str, title: str, widget: QWidget, object_name: str,
                    area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea) -> QDockWidget:
    """A dock holding ``widget``, hidden until its action shows it, registered as
    ``window.docks[key]``. ``object_name`` keys its place in the saved window state: never change it."""
    dock = QDockWidget(title, window)
    dock.setObjectName(object_name)
    dock.setWidget(widget)
    window.addDockWidget(area, dock)
    dock.hide()
    window.docks[key] = dock
    return dock
