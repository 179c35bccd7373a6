"""The main window's dialogs: shortcuts, models, building a model, notes, about, and the file pickers.

Functions of the window (the :mod:`.window_files` pattern), so the window module stays a
layout and its wiring; each dialog is window-modal (``open``) and deletes itself on close.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..core.images import IMAGE_SUFFIXES
from .dialogs import AboutDialog, ShortcutsDialog

IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ");;All files (*)"


class DialogsWindow(Protocol):
    """What these functions use of :class:`~.main_window.MainWindow`."""

    actions: Any             # Actions
    inspector: Any           # ConceptInspector
    document: Any            # Document
    settings: Any            # AppSettings
    folder: Path | None

    def load_model(self, path: str | Path) -> None: ...

    def open_images(self, paths: Any, index: int = 0, folder: Path | None = None) -> None: ...

    def open_folder(self, folder: str | Path) -> None: ...


def show_shortcuts(window: DialogsWindow) -> None:
    ShortcutsDialog([*window.actions.all, window.inspector.rename_action], window).open()  # F2 lives on the inspector


def show_model_manager(window: DialogsWindow) -> None:
    from .model_manager import ModelManagerDialog

    dialog = ModelManagerDialog(parent=window)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.modelChosen.connect(window.load_model)
    dialog.open()


def show_build_dialog(window: DialogsWindow) -> None:
    from .build_dialog import BuildModelDialog

    dialog = BuildModelDialog(window, folder=window.folder)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.modelBuilt.connect(window.load_model)
    dialog.open()


def show_notes(window: DialogsWindow) -> None:
    a = window.document.analysis
    if a is not None and a.notices:
        box = QMessageBox(QMessageBox.Icon.Information, "Notes on this analysis", "\n\n".join(a.notices),
                          QMessageBox.StandardButton.Ok, window)  # type: ignore[arg-type]
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()


def show_about(window: DialogsWindow) -> None:
    AboutDialog(window.document.catalog, window).open()


def ask_open_images(window: DialogsWindow) -> None:
    paths, _ = QFileDialog.getOpenFileNames(window, "Open images",  # type: ignore[arg-type]
                                            str(window.settings.last_folder() or ""), IMAGE_FILTER)
    if paths:
        window.settings.set_last_folder(Path(paths[0]).parent)
        window.open_images(paths)


def ask_open_folder(window: DialogsWindow) -> None:
    start = str(window.settings.last_folder() or "")
    folder = QFileDialog.getExistingDirectory(window, "Open a folder of images", start)  # type: ignore[arg-type]
    if folder:
        window.open_folder(folder)
