"""The main window: the image with its layers in the middle, panels in docks, the worker behind.

The window owns one :class:`Document` (what is shown), one :class:`WorkerClient` (what is
computed) and the image list. Only three things go to the worker: a model to load, an image to
analyse, and classes to segment with; every other user action changes the Document and the
views redraw from the Analysis they already have.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QSize, Qt, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMenu,
    QScrollArea,
    QTabWidget,
    QToolBar,
    QToolButton,
    QWidget,
)

from . import preferences_dialog, window_dialogs, window_files, window_images, window_navigation
from .actions import Actions
from .analysis_requests import AnalysisRequests
from .analysis_summary import FVU_TIP, analysis_summary
from .dialogs import show_error
from .document import Document
from .folder_index.wiring_index import install_folder_index
from .folder_index.wiring_stats import install_folder_stats
from .review.wiring import install_review
from .screen_fit import available_geometry, default_size, fit_to_screen
from .settings import AppSettings
from .whatif.wiring_side import install_side_by_side
from .whatif.wiring_switches import install_whatif
from .widgets.classification_panel import ClassificationPanel
from .widgets.concept_inspector import ConceptInspector
from .widgets.concept_tree import ConceptTreePanel
from .widgets.filmstrip import Filmstrip
from .widgets.image_view import ImageCanvas
from .widgets.job_status import JobStatus
from .widgets.overlay_bar import OverlayBar
from .widgets.region_panel import RegionPanel
from .widgets.segmentation_panel import SegmentationPanel
from .window_images import ImageLoader
from .worker import Failure, WorkerClient

#: bump when the docks change, so a saved layout of other docks is not restored
LAYOUT_VERSION = 2


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Insight Desktop")
        self.setAcceptDrops(True)
        self.settings = settings or AppSettings()
        self.document = Document()
        self.worker = WorkerClient(self)
        self.images: list[Path] = []
        self.index = -1
        self.folder: Path | None = None
        self.model_path: Path | None = None
        self.requests = AnalysisRequests(self.document, self.worker, self, settings=self.settings)
        self.loader = ImageLoader(self)   # decodes images off the GUI thread (window_images)
        self._pending_session = None          # selections to apply once its analysis arrives
        self._build()
        self._connect()
        self.review = install_review(self)  # curation, review dock, undo, hiding rejected (gui.review)
        self.folder_index = install_folder_index(self)  # index job, concept gallery (gui.folder_index)
        self.folder_stats = install_folder_stats(self)  # filmstrip sort, Folder Statistics (gui.folder_index)
        self.whatif = install_whatif(self)  # switching concepts off, the level slider (gui.whatif)
        self.side_by_side = install_side_by_side(self)  # two linked views (gui.whatif.side_by_side)
        self._restore_settings()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        doc = self.document
        self.actions = Actions(self, self.menuBar())
        self.canvas = ImageCanvas(doc)
        self.setCentralWidget(self.canvas)
        self.tree = ConceptTreePanel(doc)
        self.tree.searcher.connect_worker(self.worker)  # free-text search runs the text tower there
        self.inspector = ConceptInspector(doc)
        self.region = RegionPanel(doc)
        self.segmentation = SegmentationPanel(doc)
        self.classification = ClassificationPanel(doc)
        self.filmstrip = Filmstrip()
        # The inspector sits under the tree it details; the explanations share one tabbed panel
        # (a QTabWidget, not tabified docks: Qt leaves stray tab bars behind when tabified docks
        # are restored from a saved state).
        self.task_tabs = QTabWidget()
        self.task_tabs.setDocumentMode(True)
        for title, widget in (("Segmentation", self.segmentation), ("Classification", self.classification),
                              ("Here", self.region)):
            self.task_tabs.addTab(widget, title)
        # Scrolled, so that the class editor's width does not set the window's minimum size.
        self.task_scroll = QScrollArea()
        self.task_scroll.setWidgetResizable(True)
        self.task_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.task_scroll.setWidget(self.task_tabs)
        self.docks = {
            "concepts": self._dock("Concepts", self.tree, Qt.DockWidgetArea.LeftDockWidgetArea),
            # On a short screen (a laptop at 200 %) the inspector sits on the right: under the tree the
            # left column alone was taller than the screen.
            "concept": self._dock("Concept", self.inspector, Qt.DockWidgetArea.LeftDockWidgetArea
                                  if available_geometry(self).height() >= 480
                                  else Qt.DockWidgetArea.RightDockWidgetArea),
            "tasks": self._dock("Explanations", self.task_scroll, Qt.DockWidgetArea.RightDockWidgetArea),
            "images": self._dock("Images", self.filmstrip, Qt.DockWidgetArea.BottomDockWidgetArea),
        }
        self.docks["images"].hide()
        panels = self.actions.menus["View"].addMenu("&Panels")
        for dock in self.docks.values():
            panels.addAction(dock.toggleViewAction())
        self.recent_menu = QMenu("Open &Recent", self)
        self.actions.menus["File"].insertMenu(self.actions.open_folder, self.recent_menu)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)

        a = self.actions
        tools = QToolBar("Main")
        tools.setObjectName("toolbar-main")
        for action in (a.open_image, a.open_folder, a.open_model, None, a.previous_image, a.next_image, None,
                       a.fit, a.actual_size, a.rectangle_mode, None, a.show_heatmap, a.show_segmentation,
                       a.show_residual, None, a.segment):
            tools.addSeparator() if action is None else tools.addAction(action)
        self.addToolBar(tools)
        if available_geometry(self).height() >= 450:  # on a short screen (200 %) the two bars share one row
            self.addToolBarBreak()
        overlay = QToolBar("Overlay")
        overlay.setObjectName("toolbar-overlay")
        self.overlay_bar = OverlayBar(doc)
        overlay.addWidget(self.overlay_bar)
        self.addToolBar(overlay)

        self.status = JobStatus()
        self.hover = QLabel()
        self.notes = QToolButton()
        self.notes.setAutoRaise(True)
        self.notes.hide()
        self.window_mode_label = QLabel()  # which sliding-window mode produced the analysis (its tooltip says how)
        self.window_mode_label.hide()
        self.position = QLabel()  # "n / N": where the shown image is in the folder
        self.position.hide()
        self.statusBar().addWidget(self.hover, 1)
        self.statusBar().addPermanentWidget(self.position)
        self.statusBar().addPermanentWidget(self.window_mode_label)
        self.statusBar().addPermanentWidget(self.notes)
        self.statusBar().addPermanentWidget(self.status)
        default_size(self, QSize(1500, 940))  # or less: it must fit a laptop screen at 150 %
        wide, tall = self.width() / 1500, self.height() / 940  # the docks keep their share on a smaller screen
        self.resizeDocks([self.docks["concepts"], self.docks["tasks"]], [int(380 * wide), int(460 * wide)],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["concepts"], self.docks["concept"]], [int(520 * tall), int(330 * tall)],
                         Qt.Orientation.Vertical)

    def show_panel(self, widget: QWidget) -> None:
        """Make a panel visible: its dock shown, its tab current."""
        if self.task_tabs.indexOf(widget) >= 0:
            self.task_tabs.setCurrentWidget(widget)
            widget = self.task_scroll
        for dock in self.docks.values():
            if dock.widget() is widget:
                dock.show()
                dock.raise_()

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _connect(self) -> None:
        a, doc = self.actions, self.document
        a.open_image.triggered.connect(partial(window_dialogs.ask_open_images, self))
        a.open_folder.triggered.connect(partial(window_dialogs.ask_open_folder, self))
        a.open_model.triggered.connect(partial(window_files.ask_open_model, self))
        a.build_model.triggered.connect(partial(window_dialogs.show_build_dialog, self))
        a.manage_models.triggered.connect(partial(window_dialogs.show_model_manager, self))
        a.open_session.triggered.connect(partial(window_files.ask_open_session, self))
        a.save_session.triggered.connect(partial(window_files.ask_save_session, self))
        a.export_view.triggered.connect(partial(window_files.ask_export_view, self))
        a.export_mask.triggered.connect(partial(window_files.ask_export_mask, self))
        a.export_contributions.triggered.connect(partial(window_files.ask_export_contributions, self))
        a.preferences.triggered.connect(partial(preferences_dialog.show_preferences, self))
        a.quit.triggered.connect(self.close)
        a.fit.triggered.connect(self.canvas.fit)
        a.actual_size.triggered.connect(self.canvas.actual_size)
        a.zoom_in.triggered.connect(self.canvas.zoom_in)
        a.zoom_out.triggered.connect(self.canvas.zoom_out)
        for name in ("show_heatmap", "show_segmentation", "show_residual", "show_opaque"):
            getattr(a, name).toggled.connect(self._on_layer_toggled)
        a.more_opaque.triggered.connect(partial(self._change_opacity, +0.1))
        a.less_opaque.triggered.connect(partial(self._change_opacity, -0.1))
        a.find_concept.triggered.connect(self._find_concept)
        a.rectangle_mode.toggled.connect(self.canvas.set_rectangle_mode)
        self.notes.clicked.connect(partial(window_dialogs.show_notes, self))
        a.next_image.triggered.connect(self.next_image)
        a.previous_image.triggered.connect(self.previous_image)
        a.next_concept.triggered.connect(self.next_concept)
        a.previous_concept.triggered.connect(self.previous_concept)
        a.segment.triggered.connect(self.request_analysis)
        a.cancel.triggered.connect(self.cancel)
        a.shortcuts.triggered.connect(partial(window_dialogs.show_shortcuts, self))
        a.about.triggered.connect(partial(window_dialogs.show_about, self))
        self.segmentation.segmentRequested.connect(self.request_analysis)
        self.filmstrip.imageActivated.connect(partial(window_navigation.on_filmstrip_activated, self))
        self.loader.loaded.connect(partial(window_navigation.finish_load, self))
        self.loader.failed.connect(partial(show_error, self))
        self.canvas.hovered.connect(self.hover.setText)
        self.status.cancelRequested.connect(self.cancel)
        self.status.deviceChosen.connect(self.set_device)
        self.worker.modelReady.connect(self._on_model_ready)
        self.requests.shown.connect(self._on_analysis_shown)
        self.requests.computing.connect(self.segmentation.set_busy)
        self.worker.failed.connect(self._on_failed)
        self.worker.busy.connect(self.status.set_busy)
        self.worker.idle.connect(self.status.set_idle)
        doc.overlayChanged.connect(self._sync_layer_actions)
        self._sync_layer_actions()

    # ------------------------------------------------------------------ start-up and settings
    def _restore_settings(self) -> None:
        s = self.settings
        if geometry := s.window_geometry():
            self.restoreGeometry(geometry)
            fit_to_screen(self)  # saved on a bigger screen or at another scaling
        if state := s.window_state():
            self.restoreState(state, LAYOUT_VERSION)
        self.document.set_overlay(**s.overlay().__dict__)
        self.document.set_classes(s.classes() or self.document.classes, s.background())
        self.status.set_device_choice(s.device())

    def start(self, images: Sequence[str | Path] = (), model: str | Path | None = None,
              session: str | Path | None = None) -> None:
        """Open what the command line named, else the last model (or the demo model) and a sample photo."""
        window_files.start(self, images, model, session)

    def closeEvent(self, event: QCloseEvent) -> None:
        # Quitting stops the work at once (it winds down while the state is saved), then waits for
        # the worker at most worker.QUIT_WAIT_MS; app.py then ends the process, busy worker or not.
        self.worker.cancel()
        s = self.settings
        s.set_window_geometry(self.saveGeometry())
        s.set_window_state(self.saveState(LAYOUT_VERSION))
        s.set_overlay(self.document.overlay)
        s.set_classes(self.document.classes)
        s.set_background(self.document.background)
        s.sync()
        window_files.save_last_session(self)
        self.worker.shutdown()
        cache = getattr(self.requests, "disk_cache", None)
        if cache is not None:  # the last analysis on disk (bounded wait), so the next start shows it at once
            cache.wait_for_writes(0.3)
        self.filmstrip.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------------ model and device
    @Slot(str)
    def load_model(self, path: str | Path) -> None:
        self.model_path = Path(path)
        self.worker.load_model(self.model_path, self.status.device_choice())

    @Slot(str)
    def set_device(self, device: str) -> None:
        self.settings.set_device(device)
        if self.model_path is not None:
            self.load_model(self.model_path)

    @Slot(object)
    def _on_model_ready(self, catalog) -> None:
        self.requests.forget()
        self.document.set_catalog(catalog)
        self.status.set_device_in_use(catalog.device)
        self.settings.set_last_model_path(self.model_path)
        window_navigation.update_title_and_position(self)
        self.request_analysis()

    # ------------------------------------------------------------------ images
    def open_images(self, paths: Sequence[str | Path], index: int = 0, folder: Path | None = None) -> None:
        window_images.open_images(self, paths, index, folder)

    def open_folder(self, folder: str | Path) -> None:
        window_images.open_folder(self, folder)

    @Slot()
    def next_image(self) -> None:
        window_images.step(self, +1)

    @Slot()
    def previous_image(self) -> None:
        window_images.step(self, -1)

    # ------------------------------------------------------------------ analysis
    @Slot()
    def request_analysis(self) -> None:
        self.requests.request()

    @Slot(object)
    def _on_analysis_shown(self, analysis) -> None:
        if self._pending_session is not None:
            window_files.finish_session(self, self._pending_session)
            self._pending_session = None
        self.hover.setText(analysis_summary(analysis))
        self.hover.setToolTip(FVU_TIP)
        self.notes.setText(f"{len(analysis.notices)} note{'s' * (len(analysis.notices) != 1)}…")
        self.notes.setToolTip("\n\n".join(analysis.notices))
        self.notes.setVisible(bool(analysis.notices))
        self.window_mode_label.setText(f"windows: {analysis.window_mode}")
        self.window_mode_label.setToolTip(f"Sliding windows: {analysis.window_description}")
        self.window_mode_label.show()

    @Slot(object)
    def _on_failed(self, failure: Failure) -> None:
        if failure.kind == "analysis":
            self.requests.retry_allowed()
        show_error(self, failure.title, failure.message, failure.details)

    @Slot()
    def cancel(self) -> None:
        if self.worker.is_busy:
            self.worker.cancel()
            self.requests.retry_allowed()
            self.hover.setText("Cancelled.")

    # ------------------------------------------------------------------ concepts and layers
    def _step_concept(self, step: int) -> None:
        a = self.document.analysis
        if a is None or not a.concepts:
            return
        ids = [c.concept for c in a.concepts]
        i = ids.index(self.document.concept) + step if self.document.concept in ids else 0
        self.document.select_concept(ids[i % len(ids)])

    @Slot()
    def next_concept(self) -> None:
        self._step_concept(1)

    @Slot()
    def previous_concept(self) -> None:
        self._step_concept(-1)

    def _change_opacity(self, step: float) -> None:
        opacity = self.document.overlay.heatmap_opacity + step
        self.document.set_overlay(heatmap_opacity=round(min(1.0, max(0.0, opacity)), 3))

    @Slot(bool)
    def _on_layer_toggled(self, _checked: bool) -> None:
        a = self.actions
        self.document.set_overlay(show_heatmap=a.show_heatmap.isChecked(),
                                  show_segmentation=a.show_segmentation.isChecked(),
                                  show_residual=a.show_residual.isChecked(), show_opaque=a.show_opaque.isChecked())

    @Slot()
    def _sync_layer_actions(self) -> None:
        o = self.document.overlay
        for name in ("show_heatmap", "show_segmentation", "show_residual", "show_opaque"):
            action = getattr(self.actions, name)
            if action.isChecked() != getattr(o, name):
                action.blockSignals(True)
                action.setChecked(getattr(o, name))
                action.blockSignals(False)

    @Slot()
    def _find_concept(self) -> None:
        self.docks["concepts"].show()
        self.tree.focus_search()

    # ------------------------------------------------------------------ dialogs and files
    def show_first_run(self) -> None:
        """Once per user: the three ways to start (the demo model is already loading behind it)."""
        from .first_run import FirstRunDialog

        self.settings.set_first_run_done()
        dialog = FirstRunDialog(parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.modelChosen.connect(self._on_first_run_choice)
        dialog.open()

    @Slot(str)
    def _on_first_run_choice(self, path: str) -> None:
        if self.model_path is None or Path(path) != self.model_path:
            self.load_model(path)

    def _fill_recent_menu(self) -> None:
        window_files.fill_recent_menu(self, self.recent_menu)

    @Slot()
    def open_recent(self) -> None:
        action = self.sender()
        if action is not None and action.data():
            window_files.open_paths(self, [Path(action.data())])

    @Slot()
    def clear_recent(self) -> None:
        self.settings.clear_recent_files()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            window_files.open_paths(self, paths)
