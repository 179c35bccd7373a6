"""Indexing a folder in the background (:func:`insight_desktop.core.index.build_index`), beside
interactive analysis, with progress, cancel and resume.

**How it shares the machine with interactive analysis.** The job runs on a thread of its own
(a :class:`~..jobs.BackgroundJob`, like a model build) with an Analyzer of its own made on the
model the inference worker already loaded (:meth:`~..worker.WorkerClient.loaded_analyzer`: the
same backbone and SAE in memory, nothing loaded twice; it only runs their forward passes).
Interactive work goes first: before each image the job waits while the worker is busy (an
analysis, a model load), so an analysis the user asks for shares the machine with at most the
one image already being indexed, never with the rest of the folder; and the thread runs at low
priority (its OS niceness raised where the platform allows, its QThread priority lowered), so on
a CPU the worker's threads win. The alternative — the worker interleaving one image at a time
between interactive requests — would queue every analysis behind an image being indexed and tie
the index to the worker's generations, which drop everything on a model change or Esc; here Esc
stops the user's analysis, not the index, and the index has its own Stop.

**Cancel and resume.** The index commits every image on its own, so Cancel, quitting or a crash
keeps every finished image; running "Index This Folder" again continues with the rest (and takes
in new, changed and deleted files).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget

from ..jobs import BackgroundJob
from ..widgets.plain_text import escaped_tooltip

#: how often (s) a waiting job looks whether it was cancelled
_POLL_S = 0.05
#: niceness added to the indexing thread (Linux, macOS): the scheduler prefers the worker's threads
NICENESS = 10


def folder_of(window: Any) -> Path | None:
    """The folder the window is in: the open folder, else the current image's folder."""
    if getattr(window, "folder", None) is not None:
        return Path(window.folder)
    image = window.document.image_path
    return Path(image).parent if image is not None else None


def locate_index(folder: Path | None, model_identity: str) -> tuple[Path, Path] | None:
    """(index file, indexed folder) of ``folder`` by this model, or of the nearest folder above it
    that has one (a folder indexed with its sub-folders answers for each of them); None when none."""
    from ...core.index import index_path

    if folder is None or not model_identity:
        return None
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        path = index_path(candidate, model_identity)
        if path.is_file():
            return path, candidate
    return None


def find_index(folder: Path | None, model_identity: str) -> Path | None:
    """The index file :func:`locate_index` finds for ``folder``, or None."""
    found = locate_index(folder, model_identity)
    return found[0] if found is not None else None


class YieldingAnalyzer:
    """An Analyzer that lets interactive work go first: ``analyze`` waits while ``idle`` is clear
    (the worker is busy), and gives up (:class:`~...core.index.IndexStopped`) when asked to stop
    meanwhile. ``model`` is the wrapped one's, which :func:`~...core.index.build_index` reads."""

    def __init__(self, analyzer: Any, idle: threading.Event):
        self.analyzer, self.model, self.idle = analyzer, analyzer.model, idle

    def analyze(self, rgb, **kwargs):
        from ...core.index import IndexStopped

        stop = kwargs.get("should_stop") or (lambda: False)
        while not self.idle.wait(_POLL_S):
            if stop():
                raise IndexStopped("indexing stopped while waiting for interactive analysis")
        return self.analyzer.analyze(rgb, **kwargs)


def lower_priority() -> None:
    """Make the calling thread yield to the others: niceness (per thread on Linux) and QThread priority."""
    thread = QThread.currentThread()
    if thread is not None:
        thread.setPriority(QThread.Priority.LowestPriority)  # Windows, macOS; Linux ignores it
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            # On Linux PRIO_PROCESS with a thread id sets that thread's niceness only; the threads
            # torch starts from here for its operations inherit it.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + NICENESS))
        except OSError:
            pass


def run_index(folder: Path, shared: Any, idle: threading.Event, progress, should_stop,
              wrap: Callable[[Any], Any] | None = None):
    """The job: an Analyzer of its own on ``shared``'s model, yielding to interactive work, then
    :func:`build_index`; returns its :class:`~...core.index.IndexSummary`. ``wrap`` (tests)
    wraps the analyzer the build uses."""
    lower_priority()
    from ...core.engine import Analyzer
    from ...core.index import build_index

    progress("Preparing to index…", -1.0, "")
    own = Analyzer(shared.model, backbone=shared.backbone, device=str(shared.device), prompt_cache=False)
    analyzer: Any = YieldingAnalyzer(own, idle)
    if wrap is not None:
        analyzer = wrap(analyzer)

    def report(p) -> None:
        fraction = p.done / p.total if p.total else 1.0
        failed = f", {p.failed:,} could not be read" if p.failed else ""
        progress(f"Indexing {folder.name}: {p.done:,} / {p.total:,}{failed}", fraction, p.path)

    return build_index(folder, analyzer, on_progress=report, should_stop=should_stop)


class IndexJob(QObject):
    """At most one folder being indexed; says how it goes. ``ended(kind, message)``: kind is
    ``"done"``, ``"stopped"`` or ``"failed"``; then :attr:`summary` holds the last build's summary
    (``"done"`` only)."""

    started = Signal(str)                  # the folder
    progressed = Signal(str, float, str)   # text, fraction 0..1 (−1 unknown), the image just done
    ended = Signal(str, str)

    def __init__(self, worker, parent: QObject | None = None):
        super().__init__(parent)
        self.worker = worker
        self.idle = threading.Event()      # set while the worker is not busy: the job may analyse
        if not worker.is_busy:
            self.idle.set()
        worker.busy.connect(self._on_busy)
        worker.idle.connect(self._on_idle)
        self.job: BackgroundJob | None = None
        self.folder: Path | None = None
        self.model_identity = ""
        self.summary: Any = None
        #: wraps the analyzer of the next job (tests: pause it half-way)
        self.wrap: Callable[[Any], Any] | None = None
        self._end = ("failed", "")

    def is_running(self) -> bool:
        return self.job is not None

    def start(self, folder: Path) -> str:
        """Index ``folder`` with the worker's model; "" when started, else why not (in words)."""
        if self.job is not None:
            return f"'{self.folder}' is being indexed: wait for it or stop it first."
        shared = self.worker.loaded_analyzer()
        if shared is None:
            return "No concept model is loaded: open one with File → Open Model… first."
        if not Path(folder).is_dir():
            return f"'{folder}' is not a folder."
        self.folder, self.model_identity, self.summary = Path(folder), shared.model.model_identity, None
        self._end = ("failed", "Indexing ended without a result.")
        idle, wrap, folder_path = self.idle, self.wrap, Path(folder)
        job = BackgroundJob(lambda progress, should_stop: run_index(folder_path, shared, idle, progress, should_stop,
                                                                    wrap),
                            f"index the folder '{folder_path.name}'", self)
        job.progressed.connect(self.progressed)
        job.succeeded.connect(self._on_succeeded)
        job.cancelled.connect(self._on_cancelled)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self.job = job
        job.start()
        self.started.emit(str(folder_path))
        return ""

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def wait(self, ms: int) -> bool:
        """Block until the job's thread ended (quitting); True when it did within ``ms``."""
        return self.job is None or self.job.wait(ms)

    # ------------------------------------------------------------------ from the job and the worker
    @Slot(str, float)
    def _on_busy(self, _text: str, _fraction: float) -> None:
        self.idle.clear()

    @Slot()
    def _on_idle(self) -> None:
        self.idle.set()

    @Slot(object)
    def _on_succeeded(self, summary) -> None:
        self.summary = summary
        self._end = ("done", f"Indexed {self.folder.name if self.folder else 'the folder'}: {summary.describe()}.")

    @Slot()
    def _on_cancelled(self) -> None:
        self._end = ("stopped", "Indexing stopped; the images indexed so far are kept. Index This Folder again "
                                "(Ctrl+I) continues where it stopped.")

    @Slot(str, str, str)
    def _on_failed(self, title: str, message: str, _details: str) -> None:
        self._end = ("failed", f"{title}: {message}")

    @Slot()
    def _on_finished(self) -> None:
        kind, message = self._end
        self.job = None
        self.ended.emit(kind, message)


class IndexStatus(QWidget):
    """The status bar's indexing part: what is being indexed, how far, and Cancel."""

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.text = QLabel(self)
        self.text.setTextFormat(Qt.TextFormat.PlainText)   # it quotes folder names
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setFixedWidth(120)
        self.bar.setTextVisible(False)
        self.cancel = QToolButton(self)
        self.cancel.setText("Stop")
        self.cancel.setToolTip("Stop indexing (what was indexed is kept; Index This Folder continues)")
        self.cancel.clicked.connect(self.cancelRequested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.text, self.bar, self.cancel):
            layout.addWidget(w)
        self.hide()

    @Slot(str, float, str)
    def show_progress(self, text: str, fraction: float, detail: str = "") -> None:
        self.text.setText(text)
        self.setToolTip(escaped_tooltip(f"{text} new or changed images" + (f"\nlast: {detail}" if detail else "")))
        if fraction < 0:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(round(1000 * min(max(fraction, 0.0), 1.0)))
        self.show()
