"""One long-lived inference worker on its own thread (ARCHITECTURE rule 3).

:class:`InferenceWorker` lives on a ``QThread`` and owns the :class:`~insight_desktop.core.engine.Analyzer`
(the model loads once; torch is first imported there, never on the GUI thread).
:class:`WorkerClient` is its GUI-thread face: every request gets a *generation* number; a newer
request of the same kind supersedes older ones, which the worker skips if they have not started
and stops between backbone windows if they have; their results, if any still arrive, are dropped.
``supersede_analyses()`` does the same without a newer request (the answer was found elsewhere);
``cancel()`` stops everything asked so far. Results come back with the generation that
``analyze()`` returned, so a caller knows what each one was computed for. Errors come back as a
signal; the worker never dies.

Each request runs as a job of :mod:`insight_desktop.gui.jobs` (:func:`~insight_desktop.gui.jobs.run_job`:
one rule for stops and error messages); this thread is where interactive jobs run, apart from
long jobs (each on a thread of its own) and thumbnails (a pool), so neither can hold it up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from .jobs import JobFn, ProgressFn, run_job

if TYPE_CHECKING:  # torch loads on the worker thread only (ARCHITECTURE rule 5)
    from ..core.analysis_cache import AnalysisCache
    from ..core.engine import Analyzer

MODEL, ANALYSIS = "model", "analysis"
#: a text query compared with the concepts (the concept tree's search; :meth:`WorkerClient.search_text`)
SEARCH = "search"
#: how long quitting waits for the worker to stop (:meth:`WorkerClient.shutdown`). An analysis
#: stops between backbone windows and a model load between its stages, usually within this; a
#: load in the middle of importing torch cannot be interrupted, and the app then ends the process
#: without waiting for it (gui/app.py ``_end``), the window's state already saved.
QUIT_WAIT_MS = 500
#: the same while a model load is under way: mostly imports and file reads, which stop only at the
#: next stage, so waiting longer rarely ends it cleanly and only delays the quit
QUIT_WAIT_LOADING_MS = 150

# Workers whose thread did not stop in time at shutdown, kept referenced: Python must never collect
# a QThread that runs (Qt aborts: "QThread: Destroyed while thread … is still running").
_UNSTOPPED: list[tuple[QThread, QObject]] = []


def worker_still_running() -> bool:
    """True while a worker told to shut down is still busy (a model load in an import)."""
    return any(thread.isRunning() for thread, _ in _UNSTOPPED)


@dataclass(frozen=True)
class ModelRequest:
    path: str
    device: str = "auto"


@dataclass(frozen=True)
class AnalysisRequest:
    image: np.ndarray            # RGB uint8, read-only
    classes: tuple[str, ...]
    background: bool = False
    label: str = ""              # what the status bar calls it (the file name)


@dataclass(frozen=True)
class TextSearchRequest:
    query: str


@dataclass(frozen=True)
class Failure:
    kind: str                    # MODEL or ANALYSIS
    title: str
    message: str
    details: str = ""            # traceback, for bug reports


class WorkControl:
    """Generations shared by the two threads: which requests are still wanted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._latest = {MODEL: -1, ANALYSIS: -1, SEARCH: -1}
        self._cancelled_below = 0

    def issue(self, kind: str) -> int:
        with self._lock:
            self._next += 1
            self._latest[kind] = self._next
            if kind == MODEL:  # analyses and searches of the previous model are no longer wanted
                self._latest[ANALYSIS] = self._latest[SEARCH] = self._next
            return self._next

    def supersede(self, kind: str) -> None:
        """Requests of ``kind`` issued so far are no longer wanted (nothing newer was asked)."""
        self.issue(kind)

    def wanted(self, kind: str, generation: int) -> bool:
        with self._lock:
            return generation >= self._latest[kind] and generation >= self._cancelled_below

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled_below = self._next + 1


class InferenceWorker(QObject):
    """Owns the Analyzer; runs on the worker thread. Talk to it only through signals."""

    modelLoaded = Signal(int, object)     # generation, ConceptCatalog
    analysisReady = Signal(int, object)   # generation, Analysis
    failed = Signal(int, object)          # generation, Failure
    progress = Signal(int, str, float)    # generation, stage, fraction 0..1 (−1: unknown)
    finished = Signal(int)                # generation: done, failed, stopped or skipped
    textMatches = Signal(int, object)     # generation, TextMatches (no finished/failed: never fails)

    def __init__(self, control: WorkControl):
        super().__init__()
        self._control = control
        self._analyzer: Analyzer | None = None
        self._searcher: Any = None        # core.concepts.search.ConceptSearcher of the analyzer's model
        #: analyses computed before, looked up and stored here (set from the GUI thread: one atomic
        #: attribute write, read once per analysis)
        self.analysis_cache: AnalysisCache | None = None

    @Slot(int, object)
    def load_model(self, generation: int, request: ModelRequest) -> None:
        self._run(MODEL, generation, partial(self._load, request),
                  f"load the model '{Path(request.path).name}'")

    @Slot(int, object)
    def analyze(self, generation: int, request: AnalysisRequest) -> None:
        self._run(ANALYSIS, generation, partial(self._analyze, request),
                  f"analyse {request.label or 'the image'}")

    @Slot(int, object)
    def search_text(self, generation: int, request: TextSearchRequest) -> None:
        """Compare a query with the concepts through the text tower (here, with the backbone).
        Never fails: a :class:`~..core.concepts.search.TextMatches` reason says what went wrong."""
        if not self._control.wanted(SEARCH, generation):
            return  # typed over before it started
        from ..core.concepts.search import ConceptSearcher, TextMatches

        try:
            analyzer = self._analyzer
            if analyzer is None:
                matches = TextMatches(request.query, reason="no concept model is loaded")
            else:
                if self._searcher is None or self._searcher.model is not analyzer.model:
                    self._searcher = ConceptSearcher(analyzer.model, analyzer.backbone)
                matches = self._searcher.text(request.query)
        except Exception as exc:  # noqa: BLE001 — the worker never dies; the search box says why
            matches = TextMatches(request.query, reason=f"text search failed ({type(exc).__name__}: {exc})")
        self.textMatches.emit(generation, matches)

    def _run(self, kind: str, generation: int, job: JobFn, what: str) -> None:
        """One request as a job (the house's stop and error rules); the worker never dies."""
        try:
            if not self._control.wanted(kind, generation):
                return  # superseded before it started: skip (coalescing)
            outcome = run_job(job, what,
                              progress=lambda stage, fraction=-1.0, detail="": self.progress.emit(
                                  generation, stage, fraction),
                              should_stop=lambda: not self._control.wanted(kind, generation))
            if outcome.failure is not None:
                f = outcome.failure
                self.failed.emit(generation, Failure(kind, f.title, f.message, f.details))
            elif outcome.succeeded and outcome.value is not None and self._control.wanted(kind, generation):
                (self.modelLoaded if kind == MODEL else self.analysisReady).emit(generation, outcome.value)
        finally:
            self.finished.emit(generation)

    def _load(self, request: ModelRequest, progress: ProgressFn, should_stop: Callable[[], bool]):
        """The model's catalog once it is this worker's model, or None when no longer wanted."""
        progress(f"Loading model {Path(request.path).name}…", -1.0)
        from ..core.engine import Analyzer

        analyzer = Analyzer(request.path, device=request.device, should_stop=should_stop)
        catalog = analyzer.catalog()
        if should_stop():  # a newer model was asked meanwhile: keep the old one, drop this one
            analyzer.close()
            return None
        old, self._analyzer = self._analyzer, analyzer
        if old is not None:
            old.close()
        return catalog

    def _analyze(self, request: AnalysisRequest, progress: ProgressFn, should_stop: Callable[[], bool]):
        if self._analyzer is None:
            raise RuntimeError("No concept model is loaded: open one with File → Open model…")
        progress(f"Analysing {request.label}…", 0.0)
        import dataclasses
        import time
        from types import MappingProxyType

        from ..core import analysis_cache

        # Computed before, in this session or an earlier one? Reading it back takes a fraction of a
        # second, here on the worker thread (8000×6000: ≈ 0.15 s to hash the pixels, ≈ 0.4 s to read).
        # The window hands the worker its disk cache (WorkerClient.set_analysis_cache); a bare worker has none.
        cache = self.analysis_cache
        key, started, classes = None, time.perf_counter(), list(request.classes) or None
        if cache is not None:
            model = analysis_cache.model_identity(self._analyzer.model.manifest)
            key = analysis_cache.analysis_key(request.image, model, classes, background=request.background)
            found = cache.get(key)
            if found is not None:  # its timings would be the first computation's: say what this took
                took = MappingProxyType({"disk cache": time.perf_counter() - started})
                return dataclasses.replace(found, timings=took)
        analysis = self._analyzer.analyze(
            request.image, classes, background=request.background, should_stop=should_stop,
            progress=lambda stage, f: progress(f"Analysing {request.label}: {stage}", f))
        if cache is not None and key is not None:
            cache.put_later(key, analysis)  # written on the cache's own thread: the result is not held up
        return analysis

    @Slot()
    def shutdown(self) -> None:
        """Free the model and end this thread's event loop (queued after any running job)."""
        try:
            if self._analyzer is not None:
                self._analyzer.close()
                self._analyzer = None
        finally:
            thread = self.thread()
            app = QCoreApplication.instance()
            if thread is not None and (app is None or thread is not app.thread()):  # never the GUI's loop
                thread.quit()


class WorkerClient(QObject):
    """The GUI thread's handle on the worker: issue requests, get only the results still wanted."""

    modelReady = Signal(object)          # ConceptCatalog
    analysisReady = Signal(int, object)  # generation (as analyze() returned it), Analysis
    textMatchesReady = Signal(object)    # TextMatches of the latest search_text() (older ones dropped)
    failed = Signal(object)              # Failure
    busy = Signal(str, float)            # status text, fraction (−1: unknown)
    idle = Signal()

    _requestModel = Signal(int, object)
    _requestAnalysis = Signal(int, object)
    _requestText = Signal(int, object)
    _requestShutdown = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.control = WorkControl()
        self._pending: dict[int, str] = {}   # generation → MODEL or ANALYSIS, until the worker is done with it
        self._thread = QThread()
        self._thread.setObjectName("insight-inference")
        self._worker = InferenceWorker(self.control)
        self._worker.moveToThread(self._thread)
        self._requestModel.connect(self._worker.load_model)
        self._requestAnalysis.connect(self._worker.analyze)
        self._requestText.connect(self._worker.search_text)
        self._requestShutdown.connect(self._worker.shutdown)
        self._worker.modelLoaded.connect(self._on_model_loaded)
        self._worker.analysisReady.connect(self._on_analysis_ready)
        self._worker.textMatches.connect(self._on_text_matches)
        self._worker.failed.connect(self._on_failed)
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(self._on_finished)
        self._thread.start()

    # ------------------------------------------------------------------ requests
    def load_model(self, path: str | Path, device: str = "auto") -> int:
        gen = self.control.issue(MODEL)
        self._pending[gen] = MODEL
        self._requestModel.emit(gen, ModelRequest(str(path), device))
        self.busy.emit(f"Loading model {Path(path).name}…", -1.0)  # at once, not when the worker gets to it
        return gen

    def analyze(self, image: np.ndarray, classes: tuple[str, ...] = (), background: bool = False,
                label: str = "") -> int:
        gen = self.control.issue(ANALYSIS)
        self._pending[gen] = ANALYSIS
        self._requestAnalysis.emit(gen, AnalysisRequest(image, tuple(classes), bool(background), label))
        self.busy.emit(f"Analysing {label or 'the image'}…", 0.0)
        return gen

    def search_text(self, query: str) -> int:
        """Compare ``query`` with the loaded model's concepts as text, on the worker (queued behind
        a running analysis); the answer comes as :attr:`textMatchesReady` unless a newer query
        came first. Not counted as busy: a search box shows its own state."""
        gen = self.control.issue(SEARCH)
        self._requestText.emit(gen, TextSearchRequest(str(query)))
        return gen

    def loaded_analyzer(self) -> Analyzer | None:
        """The worker's Analyzer once a model is loaded, for a job on a thread of its own that
        reuses the loaded model (the folder index): it reads its model and backbone, never closes them."""
        return self._worker._analyzer

    def set_analysis_cache(self, cache: AnalysisCache | None) -> None:
        """Where the worker looks up analyses before computing them and stores new ones (None: nowhere)."""
        self._worker.analysis_cache = cache

    def supersede_analyses(self) -> None:
        """Analyses asked so far are no longer wanted: skip or stop them and drop their results."""
        self.control.supersede(ANALYSIS)

    def cancel(self) -> None:
        """Stop the running job and drop everything queued."""
        self.control.cancel_all()

    @property
    def is_busy(self) -> bool:
        return bool(self._pending)

    def shutdown(self, timeout_ms: int | None = None) -> bool:
        """Stop work, free the model and end the thread (call once, when the window closes).

        Returns whether the thread ended within ``timeout_ms`` (default: :data:`QUIT_WAIT_MS`, or
        :data:`QUIT_WAIT_LOADING_MS` while a model loads). If not (a model load inside an
        import cannot be interrupted), the thread and its worker are kept referenced so Qt never
        destroys them while they run; the load then finds itself unwanted, frees the model and
        ends the thread by itself, unless the process ends first (:func:`worker_still_running`)."""
        if not self._thread.isRunning():
            return True
        if timeout_ms is None:
            timeout_ms = QUIT_WAIT_LOADING_MS if MODEL in self._pending.values() else QUIT_WAIT_MS
        self.control.cancel_all()
        self._requestShutdown.emit()  # after the running job, which the cancel stops at its next check
        if self._thread.wait(max(0, int(timeout_ms))):
            return True
        _UNSTOPPED.append((self._thread, self._worker))
        return False

    # ------------------------------------------------------------------ results (GUI thread)
    @Slot(int, object)
    def _on_model_loaded(self, generation: int, catalog: Any) -> None:
        if self.control.wanted(MODEL, generation):
            self.modelReady.emit(catalog)

    @Slot(int, object)
    def _on_analysis_ready(self, generation: int, analysis: Any) -> None:
        if self.control.wanted(ANALYSIS, generation):
            self.analysisReady.emit(generation, analysis)

    @Slot(int, object)
    def _on_text_matches(self, generation: int, matches: Any) -> None:
        if self.control.wanted(SEARCH, generation):
            self.textMatchesReady.emit(matches)

    @Slot(int, object)
    def _on_failed(self, generation: int, failure: Failure) -> None:
        if self.control.wanted(failure.kind, generation):
            self.failed.emit(failure)

    @Slot(int, str, float)
    def _on_progress(self, generation: int, text: str, fraction: float) -> None:
        if generation == max(self._pending, default=-1) and self.control.wanted(self._pending[generation], generation):
            self.busy.emit(text, fraction)

    @Slot(int)
    def _on_finished(self, generation: int) -> None:
        self._pending.pop(generation, None)
        if not self._pending:
            self.idle.emit()
