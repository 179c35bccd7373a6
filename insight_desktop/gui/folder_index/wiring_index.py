"""The folder index installed into the main window: one call from the window, everything else here.

:func:`install_folder_index` adds Analysis → Index This Folder (Ctrl+I) and Stop Indexing, the
indexing progress in the status bar, the Concept Gallery dock (View → Concept Gallery, Ctrl+G)
and the folder's best patches under the review panel's strip. The gallery follows the folder
the window is in and the loaded model: it looks for that folder's index, or the index of a
folder above it, and says what to do when there is none. Quitting stops indexing (the image
being analysed is lost, every finished one is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget

from ..dialogs import show_error
from ..docks import add_hidden_dock
from .gallery import COMPACT_SIZE, ConceptGallery, GalleryModel
from .index_job import IndexJob, IndexStatus, folder_of, locate_index

#: while indexing, the gallery asks the growing index again this often (ms)
REFRESH_MS = 5_000
#: how long quitting waits for the indexing thread to stop (ms)
QUIT_WAIT_MS = 2_000
NOTICE_MS = 15_000


@dataclass
class FolderIndexUI:
    job: IndexJob
    status: IndexStatus
    model: GalleryModel
    gallery: ConceptGallery
    dock: QDockWidget
    review_model: GalleryModel
    review_gallery: ConceptGallery | None


def install_folder_index(window) -> FolderIndexUI:
    a, doc = window.actions, window.document
    job = IndexJob(window.worker, window)
    status = IndexStatus()
    window.statusBar().addPermanentWidget(status)
    model = GalleryModel(doc, window)
    gallery = ConceptGallery(model)
    gallery.set_index_action(a.index_folder)
    dock = add_hidden_dock(window, "gallery", "Concept Gallery", gallery, "dock-gallery")
    for action in a.menus["View"].actions():  # its toggle beside the other panels'
        if action.menu() is not None and action.menu().title().replace("&", "") == "Panels":
            action.menu().addAction(dock.toggleViewAction())

    review_model = GalleryModel(doc, window, n=COMPACT_SIZE)
    review_gallery = None
    slot = getattr(getattr(window, "review", None), "panel", None)
    if slot is not None and hasattr(slot, "below_strip"):
        review_gallery = ConceptGallery(review_model, slot, compact=True)
        slot.below_strip.addWidget(review_gallery)
        review_gallery.fill()
    ui = FolderIndexUI(job, status, model, gallery, dock, review_model, review_gallery)
    model.set_active(False)          # each asks the index only while it is on screen
    review_model.set_active(False)
    dock.visibilityChanged.connect(model.set_active)
    review_dock = window.docks.get("review")
    if review_dock is not None:
        review_dock.visibilityChanged.connect(review_model.set_active)

    a.index_folder.triggered.connect(partial(start_indexing, window, ui))
    a.stop_indexing.triggered.connect(job.cancel)
    a.stop_indexing.setEnabled(False)
    a.concept_gallery.triggered.connect(partial(show_gallery, window, ui))
    status.cancelRequested.connect(job.cancel)
    job.started.connect(lambda _folder: _running(window, ui, True))
    job.progressed.connect(status.show_progress)
    job.ended.connect(partial(_on_ended, window, ui))
    for m in (model, review_model):
        m.openRequested.connect(partial(open_hit, window))
    doc.imageChanged.connect(partial(locate, window, ui))
    doc.modelChanged.connect(partial(locate, window, ui))
    window.worker.modelReady.connect(partial(_on_model_ready, window, ui))
    timer = QTimer(window)
    timer.setInterval(REFRESH_MS)
    timer.timeout.connect(partial(_refresh_while_indexing, window, ui))
    ui.timer = timer  # type: ignore[attr-defined]
    _QuitGuard(window, ui)
    locate(window, ui)
    return ui


def locate(window, ui: FolderIndexUI, *_args) -> None:
    """Point both galleries at the index of the window's folder (or say why there is none)."""
    catalog, folder = window.document.catalog, folder_of(window)
    found = locate_index(folder, catalog.model_identity if catalog is not None else "")
    if found is not None:
        why = ""
    elif catalog is None:
        why = "Open a concept model to see where its concepts fire in a folder."
    elif folder is None:
        why = "Open an image or a folder to see where concepts fire across it."
    elif ui.job.is_running() and ui.job.folder is not None and _within(folder, ui.job.folder):
        why = f"“{ui.job.folder.name}” is being indexed; the gallery fills in as it goes."
    else:
        why = (f"“{folder.name}” has no index for this model yet. Index this folder first: Analysis → "
               "Index This Folder (Ctrl+I); it runs in the background.")
    path = found[0] if found is not None else None
    for m in (ui.model, ui.review_model):
        m.set_index(path, why)


def start_indexing(window, ui: FolderIndexUI) -> None:
    """Index the window's folder (or the indexed folder above it, whose index covers it)."""
    catalog, folder = window.document.catalog, folder_of(window)
    if folder is None:
        show_error(window, "Nothing to index", "Open an image or a folder first (File → Open Folder…).")
        return
    found = locate_index(folder, catalog.model_identity) if catalog is not None else None
    target = found[1] if found is not None else folder
    why = ui.job.start(target)
    if why:
        show_error(window, "Cannot index this folder", why)


def show_gallery(window, ui: FolderIndexUI) -> None:
    """Show the gallery with room for its tiles: most of its column, two tiles wide where the window allows."""
    dock = ui.dock
    dock.show()
    dock.raise_()
    if dock.isFloating():
        return
    area = window.dockWidgetArea(dock)
    beside = [d for d in window.docks.values() if d is not dock and d.isVisible() and not d.isFloating()
              and window.dockWidgetArea(d) == area]
    if beside and area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea):
        window.resizeDocks([*beside, dock], [1] * len(beside) + [3 * len(beside)], Qt.Orientation.Vertical)
    wide = min(2 * ui.gallery.list.gridSize().width() + 40, window.width() // 3)
    if dock.width() < wide:
        window.resizeDocks([dock], [wide], Qt.Orientation.Horizontal)


def open_hit(window, path: Path, concept: int) -> None:
    """Open ``path`` (within its folder's list, for the filmstrip) with ``concept``'s heatmap."""
    from ..widgets.filmstrip import images_in_folder

    doc = window.document
    doc.select_concept(concept)
    doc.set_overlay(show_heatmap=True)
    path = Path(path)
    if not path.is_file():
        show_error(window, "Could not open the image", f"'{path}' is no longer there (the index is older than the "
                   "folder: index it again to bring it up to date).")
        return
    if window.folder is not None and path.parent.resolve() == Path(window.folder).resolve():
        window.open_images([path])  # within the folder being browsed
        return
    paths = images_in_folder(path.parent)
    names = [p.name for p in paths]
    if path.name in names:
        window.open_images(paths, names.index(path.name), path.parent)
    else:
        window.open_images([path])


# ------------------------------------------------------------------ the job's life
def _running(window, ui: FolderIndexUI, on: bool) -> None:
    a = window.actions
    a.index_folder.setEnabled(not on)
    a.stop_indexing.setEnabled(on)
    if on:
        ui.status.show_progress(f"Indexing {ui.job.folder.name if ui.job.folder else 'the folder'}…", -1.0)
        ui.timer.start()  # type: ignore[attr-defined]
        locate(window, ui)
    else:
        ui.status.hide()
        ui.timer.stop()  # type: ignore[attr-defined]


def _on_ended(window, ui: FolderIndexUI, kind: str, message: str) -> None:
    _running(window, ui, False)
    window.statusBar().showMessage(message, NOTICE_MS)
    locate(window, ui)
    for m in (ui.model, ui.review_model):
        m.refresh(keep=True)  # the index has grown
    if kind == "failed":
        show_error(window, "Indexing stopped with an error", message)


def _refresh_while_indexing(window, ui: FolderIndexUI) -> None:
    locate(window, ui)
    for m in (ui.model, ui.review_model):
        if m.active:
            m.refresh(keep=True)


def _on_model_ready(window, ui: FolderIndexUI, catalog) -> None:
    if ui.job.is_running() and catalog.model_identity != ui.job.model_identity:
        ui.job.cancel()
        window.statusBar().showMessage("Indexing stopped: another model was loaded. Index This Folder again indexes "
                                       "the folder with it.", NOTICE_MS)


def _within(folder: Path, root: Path) -> bool:
    folder, root = Path(folder).resolve(), Path(root).resolve()
    return folder == root or root in folder.parents


class _QuitGuard(QObject):
    """Stops indexing as the window closes, before its own closeEvent (bounded wait: the store
    commits per image, so at most the image being analysed is lost)."""

    def __init__(self, window, ui: FolderIndexUI):
        super().__init__(window)
        self.ui = ui
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 — Qt override
        if event.type() == QEvent.Type.Close:
            self.ui.job.cancel()
            self.ui.job.wait(QUIT_WAIT_MS)
            for m in (self.ui.model, self.ui.review_model):
                m.shutdown()
        return False
