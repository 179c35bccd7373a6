"""BackgroundJob: a callable on its own thread; success, failure, cancel and progress come back in order."""

from __future__ import annotations

import threading
import time

import pytest

from insight_desktop.core.errors import StoppedByUser, describe_error
from insight_desktop.gui.jobs import BackgroundJob


class Recorder:
    """Everything a job said, in order, with the thread each signal arrived on."""

    def __init__(self, job: BackgroundJob):
        self.events: list[tuple] = []
        self.threads: set[int] = set()
        job.progressed.connect(self.on_progress)
        job.succeeded.connect(lambda r: self.add("succeeded", r))
        job.failed.connect(lambda t, m, d: self.add("failed", t, m, d))
        job.cancelled.connect(lambda: self.add("cancelled"))
        job.finished.connect(lambda: self.add("finished"))

    def add(self, *event):
        self.threads.add(threading.get_ident())
        self.events.append(event)

    def on_progress(self, stage, fraction, detail):
        self.add("progress", stage, fraction, detail)

    def kinds(self):
        return [e[0] for e in self.events]


def run_to_end(qtbot, job: BackgroundJob) -> Recorder:
    rec = Recorder(job)
    with qtbot.waitSignal(job.finished, timeout=60_000):
        job.start()
    # Not "is_running() right after start()": a quick fn may already be done by then.
    assert not job.is_running() and job.wait(0)
    return rec


def test_success_returns_the_result_after_the_progress_in_order(qtbot):
    worker_threads = []

    def fn(progress, should_stop):
        worker_threads.append(threading.get_ident())
        for i, stage in enumerate(("load", "train", "write")):
            progress(stage, 0.0, f"step {i}")
            progress(stage, 1.0)
        return {"answer": 42}

    rec = run_to_end(qtbot, BackgroundJob(fn, min_interval=0))
    assert rec.events == [
        ("progress", "load", 0.0, "step 0"), ("progress", "load", 1.0, ""),
        ("progress", "train", 0.0, "step 1"), ("progress", "train", 1.0, ""),
        ("progress", "write", 0.0, "step 2"), ("progress", "write", 1.0, ""),
        ("succeeded", {"answer": 42}), ("finished",),
    ]
    assert worker_threads[0] != threading.get_ident()          # fn ran off the GUI thread…
    assert rec.threads == {threading.get_ident()}               # …and every signal came back on it


def test_progress_is_throttled_within_a_stage_but_keeps_stage_changes_and_the_end(qtbot):
    def fn(progress, should_stop):
        for i in range(1, 2001):
            progress("train", i / 2000)
        progress("write", -1.0)

    rec = run_to_end(qtbot, BackgroundJob(fn, min_interval=10.0))
    assert [e[1:3] for e in rec.events if e[0] == "progress"] == [("train", 0.0005), ("train", 1.0), ("write", -1.0)]
    assert rec.kinds()[-2:] == ["succeeded", "finished"]


def test_an_exception_becomes_a_readable_failure_with_the_traceback_as_details(qtbot):
    def fn(progress, should_stop):
        progress("features", 0.5)
        raise ValueError("no readable images under '/photos'")

    rec = run_to_end(qtbot, BackgroundJob(fn, what="build the model"))
    assert rec.kinds() == ["progress", "failed", "finished"]
    _, title, message, details = rec.events[1]
    assert title == "Could not build the model"
    assert message == "no readable images under '/photos'"
    assert "Traceback" not in message
    assert "Traceback (most recent call last)" in details and "ValueError" in details


def test_memory_and_os_errors_read_like_advice():
    assert describe_error(MemoryError(), "build the model")[0] == "Out of memory"
    title, message = describe_error(OSError(28, "No space left on device", "/out/m.zip"), "build the model")
    assert message == "No space left on device: /out/m.zip" and "Errno" not in message


def test_cancel_mid_way_stops_the_loop_and_reports_cancelled(qtbot):
    from insight_desktop.core.build import BuildStopped

    laps, cancel_sent = [], threading.Event()

    def fn(progress, should_stop):
        for i in range(10_000):
            if should_stop():
                raise BuildStopped("stopped during sae: run the same command again to resume")
            laps.append(i)
            progress("sae", i / 10_000)
            if i == 2:  # the third lap waits for the GUI thread's Cancel, however busy the machine is
                assert cancel_sent.wait(60)
        return "ran to the end"

    def cancel_after_three_laps(*progress):
        if len(laps) >= 3 and not cancel_sent.is_set():
            job.cancel()
            cancel_sent.set()

    job = BackgroundJob(fn, min_interval=0)
    rec = Recorder(job)
    job.progressed.connect(cancel_after_three_laps)
    with qtbot.waitSignal(job.finished, timeout=60_000):
        job.start()
    assert job.cancel_requested()
    assert rec.kinds()[-2:] == ["cancelled", "finished"]
    assert "succeeded" not in rec.kinds() and "failed" not in rec.kinds()
    assert laps == [0, 1, 2]                                      # stopped at the first check after the request
    assert not job.is_running()


def test_every_stop_of_the_core_ends_a_job_as_cancelled(qtbot):
    from insight_desktop.core.build import BuildStopped
    from insight_desktop.core.concepts.vocab import NamingCancelled
    from insight_desktop.core.engine import AnalysisStopped
    from insight_desktop.core.store.download import DownloadCancelled

    for stopped in (BuildStopped, DownloadCancelled, NamingCancelled, AnalysisStopped, StoppedByUser):
        assert issubclass(stopped, StoppedByUser)

        def fn(progress, should_stop, stopped=stopped):
            raise stopped("stopped")

        assert run_to_end(qtbot, BackgroundJob(fn)).kinds() == ["cancelled", "finished"], stopped


def test_an_exception_that_is_only_named_like_a_stop_is_a_failure(qtbot):
    class DownloadCancelled(Exception):  # a core stop's name, but not one: types decide, never names
        pass

    DownloadCancelled.__module__ = "insight_desktop.core.store.download"

    def fn(progress, should_stop):
        raise DownloadCancelled("not really cancelled")

    rec = run_to_end(qtbot, BackgroundJob(fn, what="download"))
    assert rec.kinds() == ["failed", "finished"] and rec.events[0][2] == "not really cancelled"


def test_wait_returns_while_the_gui_thread_is_blocked_and_a_job_runs_once(qtbot):
    job = BackgroundJob(lambda progress, should_stop: time.sleep(0.05) or "done")
    rec = Recorder(job)
    job.start()
    assert job.wait(10_000)          # no event loop running here: the thread must still end
    qtbot.waitUntil(lambda: rec.kinds() == ["succeeded", "finished"], timeout=30_000)
    with pytest.raises(RuntimeError, match="runs once"):
        job.start()


def test_many_jobs_in_a_row_leave_no_thread_running(qtbot):
    from PySide6.QtCore import QThread

    jobs = []
    for n in range(5):
        job = BackgroundJob(lambda progress, should_stop, n=n: n * n)
        rec = run_to_end(qtbot, job)
        assert rec.events[0] == ("succeeded", n * n)
        jobs.append(job)
    assert not any(j.is_running() for j in jobs)
    assert all(isinstance(j._thread, QThread) and j._thread.isFinished() for j in jobs)
