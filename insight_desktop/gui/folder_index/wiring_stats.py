"""The filmstrip's sort and filter and the Folder Statistics dock, installed into the main window
with one call (:func:`install_folder_stats`).

Which index applies is looked up again whenever the model, the image or the concept changes (a
few ``stat`` calls): the index of the window's folder by the loaded model, or of the nearest
folder above it (:func:`find_index`). Its file's modification time is part of that
answer, so images indexed meanwhile (the Index This Folder job writes as it goes) show up at the
next change, or at once with the panel's Refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QScrollArea

from ..docks import add_hidden_dock
from .filmstrip_sort import NO_INDEX, FilmstripSorter, SortControls
from .folder_stats import FolderStatsPanel
from .index_job import find_index, folder_of


@dataclass
class FolderStats:
    window: Any
    sorter: FilmstripSorter
    controls: SortControls
    panel: FolderStatsPanel
    dock: QDockWidget

    def refresh(self) -> None:
        """Read the index again (e.g. once an indexing job ended: it has grown)."""
        if self.dock.isVisible():
            self.panel.set_index(*_index_of_window(self.window))
            self.panel.refresh(force=True)
        self.sorter.update(force=True)


def _shortcut(window: Any, name: str) -> str:
    action = getattr(window.actions, name, None)
    key = action.shortcut().toString() if action is not None else ""
    return f" ({key})" if key else ""


def _index_of_window(window: Any) -> tuple[Path | None, str]:
    """The index that applies to the window now, or None and why (in words a user can act on)."""
    catalog = window.document.catalog
    if catalog is None:
        return None, "Load a concept model first."
    folder = folder_of(window)
    if folder is None:
        return None, "Open a folder of images first."
    found = find_index(folder, catalog.model_identity)
    if found is None:
        return None, f"{NO_INDEX}{_shortcut(window, 'index_folder')}: there is no index of '{folder.name}' " \
                     "by this model yet."
    return found, ""


def install_folder_stats(window: Any) -> FolderStats:
    doc = window.document
    controls = SortControls()
    # left of the thumbnails, within the strip's height (the strip lays its parts out in a row)
    window.filmstrip.layout().insertWidget(0, controls)
    sorter = FilmstripSorter(window, controls, lambda: _index_of_window(window))

    panel = FolderStatsPanel(doc)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the panel narrows to the dock
    scroll.setWidget(panel)
    dock = add_hidden_dock(window, "folder_stats", "Folder Statistics", scroll, "dock-folder-statistics")
    stats = FolderStats(window, sorter, controls, panel, dock)

    def update_panel() -> None:
        if dock.isVisible():
            panel.set_index(*_index_of_window(window))

    def on_concept(_concept: int = -1) -> None:
        update_panel()
        sorter.update()

    def on_image() -> None:
        sorter.after_image_load()
        update_panel()

    doc.conceptSelected.connect(on_concept)
    doc.modelChanged.connect(on_concept)
    doc.imageChanged.connect(on_image)
    dock.visibilityChanged.connect(lambda on: on and update_panel())
    index_action = getattr(window.actions, "index_folder", None)
    if index_action is not None:
        panel.indexRequested.connect(index_action.trigger)

    def show_stats() -> None:
        first = not dock.isVisible()
        dock.show()
        dock.raise_()
        if first and not dock.isFloating():  # it shares the right column: give it most of the height
            window.resizeDocks([dock], [int(window.height() * 0.6)], Qt.Orientation.Vertical)
        update_panel()

    window.actions.folder_stats.triggered.connect(show_stats)
    job = getattr(getattr(window, "folder_index", None), "job", None)   # Index This Folder (wiring_index)
    if job is not None and hasattr(job, "ended"):
        job.ended.connect(lambda *_args: stats.refresh())
    return stats
