"""One way to run background work: a *job* is ``fn(progress, should_stop) -> result``.

``fn`` calls ``progress(stage, fraction, detail="")`` (fraction 0..1, or −1 when unknown) and
polls ``should_stop()``; when it sees a stop request it raises a
:class:`~insight_desktop.core.errors.StoppedByUser` (the core's ``BuildStopped``,
``DownloadCancelled``, … are ones). :func:`run_job` is the one place that decides how a job
ended, an :class:`Outcome`: its value, *cancelled* (a ``StoppedByUser``), or a
:class:`JobFailure` — a message a user can read (:func:`~insight_desktop.core.errors.describe_error`)
and the traceback as details. Three places run jobs, all through :func:`run_job`, and they differ
only in *where* a job runs:

- :class:`BackgroundJob`: one long job (a build, a download, an import) on a thread of its own,
  so it never waits for, nor holds up, interactive analysis or thumbnails.
- :class:`~insight_desktop.gui.worker.InferenceWorker`: the one long-lived thread that owns the
  Analyzer (models load once, ARCHITECTURE rule 3); its requests are jobs with generations.
- :class:`JobPool`: short jobs (thumbnails) on a bounded pool; jobs of an older generation are
  skipped before they start and their results dropped.

Why not superqt's ``thread_worker``/``create_worker`` (read ``superqt/utils/_qthreading.py``):
their workers are QRunnables on ``QThreadPool.globalInstance()`` (as many threads as cores, two
on a small laptop), so a long-lived Analyzer worker would hold a pool thread for good and a build
could hold the other, starving thumbnails and analysis; a ``GeneratorWorker`` cannot wait for
its next request, only poll; ``WorkerBase.run`` drops a real return value once ``quit()`` was
asked (a build that finished after a late Cancel), and a ``GeneratorWorker`` turns a
``RuntimeError`` raised by the job into a warning instead of an error; errors arrive as bare
exceptions, not in words for the user. The few lines below keep what superqt gets right
(results as signals on the GUI thread, running workers kept referenced until they end) and add
the house's rules for stops, errors and stale work.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from PySide6.QtCore import QObject, QRunnable, Qt, QThread, QThreadPool, Signal, Slot

from ..core.errors import StoppedByUser, describe_error

ProgressFn = Callable[..., None]
JobFn = Callable[[ProgressFn, Callable[[], bool]], Any]


@dataclass(frozen=True)
class JobFailure:
    title: str                   # "Could not …" (or "Out of memory")
    message: str                 # in words a user can act on
    details: str = ""            # traceback, for bug reports
    error: BaseException | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Outcome:
    """How one job ended: ``value`` when it succeeded, else ``cancelled`` or a ``failure``."""

    value: Any = None
    cancelled: bool = False
    failure: JobFailure | None = None

    @property
    def succeeded(self) -> bool:
        return not self.cancelled and self.failure is None


def _no_progress(stage: str, fraction: float = -1.0, detail: str = "") -> None:
    pass


def run_job(fn: JobFn, what: str, progress: ProgressFn = _no_progress,
            should_stop: Callable[[], bool] = lambda: False) -> Outcome:
    """Run ``fn(progress, should_stop)`` here and now; ``what`` completes "Could not …"."""
    try:
        value = fn(progress, should_stop)
    except StoppedByUser:
        return Outcome(cancelled=True)
    except Exception as exc:
        title, message = describe_error(exc, what)
        return Outcome(failure=JobFailure(title, message, traceback.format_exc(), exc))
    # A job that ends normally after a late Cancel still succeeded: its result is real.
    return Outcome(value=value)


# ---------------------------------------------------------------------------- long jobs

# Jobs whose thread is still running, so Python never collects a QThread that runs (Qt aborts on that).
_RUNNING: set["BackgroundJob"] = set()


class _JobRunner(QObject):
    """Lives on the job's thread; runs ``fn`` once and reports through signals."""

    progressed = Signal(str, float, str)
    ended = Signal(object)  # Outcome
    done = Signal()

    def __init__(self, fn: JobFn, stop: threading.Event, what: str, min_interval: float):
        super().__init__()
        self._fn, self._stop, self._what, self._min_interval = fn, stop, what, min_interval
        self._last: tuple[str | None, float] = (None, 0.0)  # (stage, time) of the last progress sent

    def _progress(self, stage: str, fraction: float = -1.0, detail: str = "") -> None:
        # Throttled: a training loop may report thousands of times a second; the GUI needs ~20.
        now = time.monotonic()
        last_stage, last_time = self._last
        if stage == last_stage and fraction < 1.0 and now - last_time < self._min_interval:
            return
        self._last = (stage, now)
        self.progressed.emit(str(stage), float(fraction), str(detail))

    @Slot()
    def run(self) -> None:
        try:
            self.ended.emit(run_job(self._fn, self._what, self._progress, self._stop.is_set))
        finally:
            self.done.emit()


class BackgroundJob(QObject):
    """One long job on a thread of its own; ``what`` completes "Could not …".

    Reports through signals, in order: any number of ``progressed``, then exactly one of
    ``succeeded`` / ``failed`` / ``cancelled``, then ``finished`` once the thread has ended (so a
    job can be dropped, or the application quit, right after ``finished``).
    """

    progressed = Signal(str, float, str)   # stage, fraction 0..1 (−1: unknown), detail
    succeeded = Signal(object)             # fn's return value
    failed = Signal(str, str, str)         # title, message, details (traceback)
    cancelled = Signal()
    finished = Signal()                    # after one of the three above, once the thread has ended

    _startRequested = Signal()

    def __init__(self, fn: JobFn, what: str = "finish the job", parent: QObject | None = None, *,
                 min_interval: float = 0.05):
        super().__init__(parent)
        self._fn, self._what, self._min_interval = fn, what, min_interval
        self._stop = threading.Event()
        self._thread: QThread | None = None
        self._runner: _JobRunner | None = None
        self._started = False

    def start(self) -> None:
        """Run ``fn`` once; a job cannot be restarted (make a new one)."""
        if self._started:
            raise RuntimeError("a BackgroundJob runs once; create a new one")
        self._started = True
        self._thread = QThread()
        self._thread.setObjectName("insight-job")
        self._runner = _JobRunner(self._fn, self._stop, self._what, self._min_interval)
        self._runner.moveToThread(self._thread)
        # Queued connections (the runner lives on the job thread): run() starts there, and the
        # results arrive here on the GUI thread, in the order they were sent.
        self._startRequested.connect(self._runner.run)
        self._runner.progressed.connect(self._on_progressed)
        self._runner.ended.connect(self._on_ended)
        # Quit from the job thread itself (QThread.quit is thread-safe), so wait() returns even
        # while the GUI thread is blocked in it and cannot deliver queued calls.
        self._runner.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        # Runs on the job thread as it ends: Qt deletes the runner there, where it lives.
        self._thread.finished.connect(self._runner.deleteLater)
        self._thread.finished.connect(self._on_thread_finished)
        _RUNNING.add(self)
        self._thread.start()
        self._startRequested.emit()

    def cancel(self) -> None:
        """Ask ``fn`` to stop at its next check of ``should_stop``; ``cancelled`` follows."""
        self._stop.set()

    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def wait(self, ms: int = 30_000) -> bool:
        """Block until the thread has ended (True) or ``ms`` passed (False); signals still queue."""
        return self._thread is None or self._thread.wait(int(ms))

    # ------------------------------------------------------------------ from the job thread
    @Slot(str, float, str)
    def _on_progressed(self, stage: str, fraction: float, detail: str) -> None:
        self.progressed.emit(stage, fraction, detail)

    @Slot(object)
    def _on_ended(self, outcome: Outcome) -> None:
        if outcome.failure is not None:
            self.failed.emit(outcome.failure.title, outcome.failure.message, outcome.failure.details)
        elif outcome.cancelled:
            self.cancelled.emit()
        else:
            self.succeeded.emit(outcome.value)

    @Slot()
    def _on_thread_finished(self) -> None:
        assert self._thread is not None
        self._thread.wait()  # finished is sent just before the thread really ends
        self._runner = None
        _RUNNING.discard(self)
        self.finished.emit()


# ---------------------------------------------------------------------------- short jobs

class _PoolSignals(QObject):
    done = Signal(int, object, object)  # generation, key, Outcome


class _Generation:
    """A counter both threads read; tasks hold this, never the pool (a pool must not be
    collected on one of its own threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def get(self) -> int:
        with self._lock:
            return self._value

    def is_current(self, generation: int) -> bool:
        return generation == self.get()

    def advance(self) -> None:
        with self._lock:
            self._value += 1


class _PoolTask(QRunnable):
    def __init__(self, signals: _PoolSignals, current: Callable[[int], bool], generation: int, key: Hashable,
                 fn: JobFn, what: str):
        super().__init__()
        self.signals, self.current, self.generation, self.key, self.fn, self.what = (
            signals, current, generation, key, fn, what)

    def run(self) -> None:  # on a pool thread
        if not self.current(self.generation):
            return  # stale before it started: skip
        outcome = run_job(self.fn, self.what, should_stop=lambda: not self.current(self.generation))
        self.signals.done.emit(self.generation, self.key, outcome)


class JobPool(QObject):
    """Short jobs on at most ``max_threads`` threads; results come back as ``done(key, Outcome)``
    on the GUI thread, for the current generation only. :meth:`new_generation` makes every job
    asked so far stale: not yet started ones are skipped, running ones see ``should_stop()``."""

    done = Signal(object, object)  # key, Outcome

    def __init__(self, max_threads: int, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(max(1, int(max_threads)))
        self._generation = _Generation()
        # Parentless on purpose: tasks still running when the pool is deleted keep it alive (they
        # hold a reference), and Qt drops the connection to the deleted pool.
        self.signals = _PoolSignals()
        self.signals.done.connect(self._on_done)

    def submit(self, key: Hashable, fn: JobFn, what: str = "finish the job") -> None:
        current = self._generation
        self._pool.start(_PoolTask(self.signals, current.is_current, current.get(), key, fn, what))

    def new_generation(self) -> None:
        self._generation.advance()
        self._pool.clear()  # queued jobs of the old generation need not run

    def wait(self, ms: int = -1) -> bool:
        """Block until every job asked so far is done (tests, shutdown); True when all finished."""
        return self._pool.waitForDone(ms)

    def shutdown(self) -> None:
        """Drop queued jobs and wait for running ones (call before the application quits)."""
        self.new_generation()
        self._pool.waitForDone()

    @Slot(int, object, object)
    def _on_done(self, generation: int, key: Hashable, outcome: Outcome) -> None:
        if self._generation.is_current(generation):
            self.done.emit(key, outcome)
