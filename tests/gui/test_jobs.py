"""BackgroundJob: a callable on its own thread; success, failure, cancel and progress come back in order."""

from __future__ import annotations

import threading
import time

import pytest

from insight_desktop.gui.jobs import BackgroundJob, describe_error, is_stop_exception


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
    with qtbot.waitSignal(job.finished, timeout=10_000):
        job.start()
        assert job.is_running()
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

    laps = []

    def fn(progress, should_stop):
        for i in range(10_000):
            if should_stop():
                raise BuildStopped("stopped during sae: run the same command again to resume")
            laps.append(i)
            progress("sae", i / 10_000)
            time.sleep(0.002)
        return "ran to the end"

    job = BackgroundJob(fn, min_interval=0)
    rec = Recorder(job)
    job.progressed.connect(lambda *a: job.cancel() if len(laps) >= 3 else None)
    with qtbot.waitSignal(job.finished, timeout=10_000):
        job.start()
    assert job.cancel_requested()
    assert rec.kinds()[-2:] == ["cancelled", "finished"]
    assert "succeeded" not in rec.kinds() and "failed" not in rec.kinds()
    assert 3 <= len(laps) < 500                                  # it stopped soon after the request
    assert not job.is_running()


def test_stop_exceptions_are_known_by_name_without_importing_their_modules():
    from insight_desktop.core.build import BuildStopped

    class DownloadCancelled(Exception):
        pass

    DownloadCancelled.__module__, DownloadCancelled.__qualname__ = "insight_desktop.core.download", "DownloadCancelled"
    assert is_stop_exception(BuildStopped("x")) and is_stop_exception(DownloadCancelled())
    assert not is_stop_exception(RuntimeError("x"))


def test_wait_returns_while_the_gui_thread_is_blocked_and_a_job_runs_once(qtbot):
    job = BackgroundJob(lambda progress, should_stop: time.sleep(0.05) or "done")
    rec = Recorder(job)
    job.start()
    assert job.wait(10_000)          # no event loop running here: the thread must still end
    qtbot.waitUntil(lambda: rec.kinds() == ["succeeded", "finished"], timeout=5000)
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
