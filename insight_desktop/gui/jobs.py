"""Run one long core job (a model build, a download) off the GUI thread, with progress and Cancel.

:class:`BackgroundJob` is the GUI thread's handle: it calls ``fn(progress, should_stop)`` on a
fresh ``QThread`` and reports back through signals, in order: any number of ``progressed``, then
exactly one of ``succeeded`` / ``failed`` / ``cancelled``, then ``finished`` once the thread has
ended (so a job can be dropped, or the application quit, right after ``finished``).

``fn`` calls ``progress(stage, fraction, detail="")`` (fraction 0..1, or −1 when unknown) and
polls ``should_stop()``; when it sees a stop request it raises a
:class:`~insight_desktop.core.errors.StoppedByUser` (the core's ``BuildStopped``,
``DownloadCancelled``, … are ones), which becomes ``cancelled``. Any other exception becomes
``failed`` with a message a user can read (:func:`~insight_desktop.core.errors.describe_error`)
and the traceback as details.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..core.errors import StoppedByUser, describe_error

ProgressFn = Callable[..., None]
JobFn = Callable[[ProgressFn, Callable[[], bool]], Any]

# Jobs whose thread is still running, so Python never collects a QThread that runs (Qt aborts on that).
_RUNNING: set["BackgroundJob"] = set()


class _JobRunner(QObject):
    """Lives on the job's thread; runs ``fn`` once and reports through signals."""

    progressed = Signal(str, float, str)
    succeeded = Signal(object)
    failed = Signal(str, str, str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, fn: JobFn, stop: threading.Event, what: str, min_interval: float):
        super().__init__()
        self._fn, self._stop, self._what, self._min_interval = fn, stop, what, min_interval
        self._last = (None, 0.0)  # (stage, time) of the last progress sent

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
            result = self._fn(self._progress, self._stop.is_set)
        except StoppedByUser:
            self.cancelled.emit()
        except Exception as exc:
            title, message = describe_error(exc, self._what)
            self.failed.emit(title, message, traceback.format_exc())
        else:
            # A job that ends normally after a late Cancel still succeeded: its result is real.
            self.succeeded.emit(result)
        finally:
            self.done.emit()


class BackgroundJob(QObject):
    """One run of ``fn(progress, should_stop)`` on its own thread; ``what`` completes "Could not …"."""

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
        self._runner.succeeded.connect(self._on_succeeded)
        self._runner.failed.connect(self._on_failed)
        self._runner.cancelled.connect(self._on_cancelled)
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
    def _on_succeeded(self, result: Any) -> None:
        self.succeeded.emit(result)

    @Slot(str, str, str)
    def _on_failed(self, title: str, message: str, details: str) -> None:
        self.failed.emit(title, message, details)

    @Slot()
    def _on_cancelled(self) -> None:
        self.cancelled.emit()

    @Slot()
    def _on_thread_finished(self) -> None:
        self._thread.wait()  # finished is sent just before the thread really ends
        self._runner = None
        _RUNNING.discard(self)
        self.finished.emit()
