"""Side by Side installed into the main window with one call (:func:`install_side_by_side`), and
the analysis of the second image of "two images, one concept".

The view sits in a dock below the image, not in a split of the central area: the main canvas
(clicks select regions and segments, the what-if highlight is drawn on it) stays as it is and
stays the window's ``canvas``; the dock can be floated to a second screen or closed, and Qt
saves where it was with the other docks.

The second image is the user's pick from the window's image list (the filmstrip's). Its analysis
comes from the window's memory of recent analyses (:class:`~..analysis_requests.AnalysisRequests`)
when it is there, else from the worker — which looks in the disk cache before it computes. The
worker runs one analysis at a time and a newer request supersedes an older one, so the side view
asks only while the worker is idle and never takes the place of the window's own request; if the
window asks for something meanwhile, the side view's request is superseded and asked again once
the worker is idle (once: after a Cancel the user picks the image again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Slot
from PySide6.QtWidgets import QDockWidget

from ...core.images import load_image
from ..docks import add_hidden_dock
from ..jobs import JobPool, Outcome
from ..layers import photo_preview
from .side_by_side import SideBySideView
from .side_content import BeforeAfter

#: how often a superseded request for the second image is asked again, unasked
RETRIES = 1


@dataclass
class SideBySide:
    view: SideBySideView
    dock: QDockWidget
    second: "SecondImage"


def install_side_by_side(window) -> SideBySide:
    doc = window.document
    view = SideBySideView(doc)
    dock = add_hidden_dock(window, "side_by_side", "Side by Side", view, "dock-side-by-side",
                           Qt.DockWidgetArea.BottomDockWidgetArea)
    second = SecondImage(window, view)
    view.secondImageWanted.connect(second.want)

    controller = getattr(getattr(window, "whatif", None), "controller", None)   # the switches (gui.whatif)
    if controller is not None:
        view.base = lambda: controller.base if controller.base is not None else doc.analysis
        view.before_after = lambda: before_after_of(controller.view)
        controller.viewChanged.connect(lambda _view: view.current_mode() == "switch" and view.refresh())

    def show_images() -> None:
        view.set_images(list(window.images))

    doc.imageChanged.connect(show_images)
    doc.modelChanged.connect(second.forget)
    action = getattr(window.actions, "side_by_side", None)
    placed = [False]   # given its room once; after that it stays where the user puts it
    if action is not None:
        def toggle(on: bool) -> None:
            if on and not dock.isVisible():
                show_images()
                first = not placed[0] and not dock.isFloating()
                dock.show()
                dock.raise_()
                if first:  # two images side by side need room: the width of the window, half its height
                    placed[0] = True
                    images = window.docks.get("images")
                    if images is not None and images.isVisible() and not images.isFloating() \
                            and window.dockWidgetArea(images) == window.dockWidgetArea(dock):
                        window.splitDockWidget(dock, images, Qt.Orientation.Vertical)   # the filmstrip below it
                    window.resizeDocks([dock], [int(window.height() * 0.45)], Qt.Orientation.Vertical)
            elif not on:
                dock.hide()

        action.toggled.connect(toggle)
        dock.visibilityChanged.connect(lambda _on: action.setChecked(dock.isVisible()))
    window.installEventFilter(_ShutdownOnClose(window, view, second))
    return SideBySide(view, dock, second)


def before_after_of(view) -> BeforeAfter | None:
    """The what-if switches' current view (:class:`~.switches.WhatIfView`) as before/after labels."""
    if view is None or view.before_labels is None or view.analysis.segmentation is None:
        return None
    return BeforeAfter(tuple(view.class_names), view.before_labels, view.analysis.segmentation.labels,
                       tuple(int(j) for j in view.removed), view.state.mode)


class SecondImage(QObject):
    """Reads the picked image off the GUI thread and finds or asks for its analysis."""

    def __init__(self, window, view: SideBySideView):
        super().__init__(view)
        self.window, self.view = window, view
        self.path: Path | None = None              # the image wanted
        self.image: np.ndarray | None = None       # its pixels, once read
        self.preview: np.ndarray | None = None
        self.generation: int | None = None         # the worker request on its way
        self.tries = 0
        self._pool = JobPool(1, self)
        self._pool.done.connect(self._on_read)
        window.worker.analysisReady.connect(self._on_ready)
        window.worker.idle.connect(self._on_idle)

    def want(self, path: str | Path) -> None:
        doc, path = self.window.document, Path(path)
        self.path, self.image, self.preview, self.generation, self.tries = path, None, None, None, 0
        self._pool.new_generation()
        if doc.image_path == path and doc.image is not None and doc.analysis is not None:
            self.view.waiting_text = ""
            self.view.set_second(path, doc.image, doc.analysis, doc.preview)   # the image shown on the left
            return
        self.view.second, self.view.waiting_text = None, f"Reading {path.name}…"
        self.view.refresh()

        def read(_progress, _should_stop) -> tuple[np.ndarray, np.ndarray]:
            rgb = load_image(path)
            return rgb, photo_preview(rgb)

        self._pool.submit(str(path), read, f"read {path.name}")

    def shutdown(self) -> None:
        self._pool.shutdown()

    def forget(self) -> None:
        """A new model: the second image's analysis (if any) was the old model's."""
        self._pool.new_generation()
        self.path = self.image = self.preview = self.generation = None
        self.view.second = None
        self.view.refresh()

    @Slot(object, object)
    def _on_read(self, key: Any, outcome: Outcome) -> None:
        if self.path is None or key != str(self.path):
            return
        if not outcome.succeeded or outcome.value is None:
            message = outcome.failure.message if outcome.failure is not None else "reading it was stopped"
            self.window.statusBar().showMessage(f"Could not show {self.path.name}: {message}", 15_000)
            self.path = None
            return
        self.image, self.preview = outcome.value
        self.view.waiting_text = ""
        found = self.cached()
        self.view.set_second(self.path, self.image, found, self.preview)
        if found is None:
            self._ask()

    def cached(self) -> Any:
        """The window's own recent analysis of the image, if it has one (same file version, classes, model)."""
        doc, path = self.window.document, self.path
        if path is None:
            return None
        try:
            version = path.stat().st_mtime_ns
        except OSError:
            return None
        # AnalysisRequests.key() for this path; its memory holds the last few analyses the window showed
        key = (str(path), version, doc.classes, doc.background, id(doc.catalog))
        return getattr(self.window.requests, "_cache", {}).get(key)

    def _ask(self) -> None:
        doc, worker = self.window.document, self.window.worker
        if self.image is None or self.path is None or doc.catalog is None:
            return
        if worker.is_busy:   # the window's own work first; asked once the worker is idle
            self.view.waiting_text = f"{self.path.name} is analysed as soon as the running job ends…"
            self.view.refresh()
            return
        self.view.waiting_text = ""
        self.generation = worker.analyze(self.image, doc.classes, doc.background, label=self.path.name)

    @Slot(int, object)
    def _on_ready(self, generation: int, analysis: Any) -> None:
        if generation != self.generation or self.path is None or self.image is None:
            return
        self.generation = None
        self.view.set_second(self.path, self.image, analysis, self.preview)

    @Slot()
    def _on_idle(self) -> None:
        if self.path is None or self.image is None or self.view.second is None or self.view.second[3] is not None:
            return   # nothing wanted, or answered
        if self.generation is not None:   # it ended unanswered: superseded by the window's work, or cancelled
            self.generation = None
            self.tries += 1
            if self.tries > RETRIES:
                self.view.waiting_text = f"{self.path.name} was not analysed (stopped): choose it again."
                self.view.refresh()
                return
        self._ask()


class _ShutdownOnClose(QObject):
    """Drops queued recomputations and image reads, and waits for running ones, when the window closes."""

    def __init__(self, window, view: SideBySideView, second: SecondImage):
        super().__init__(window)
        self.view, self.second = view, second

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 — Qt override
        if event.type() == QEvent.Type.Close:
            self.view.shutdown()
            self.second.shutdown()
        return False
