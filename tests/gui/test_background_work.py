"""One way to run background work (gui/jobs.py): a job's ending, long jobs beside interactive
analysis and thumbnails, and the pool that skips stale short jobs."""

from __future__ import annotations

import threading

from PIL import Image
from PySide6.QtWidgets import QApplication

from insight_desktop.core.errors import StoppedByUser
from insight_desktop.gui.jobs import BackgroundJob, JobPool, run_job
from insight_desktop.gui.widgets.filmstrip import Filmstrip
from insight_desktop.gui.worker import WorkerClient

from .conftest import CLASSES


class HeldJob:
    """A long job that runs until the test releases it (or it is cancelled)."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, progress, should_stop):
        self.started.set()
        while not self.release.wait(0.02):
            if should_stop():
                raise StoppedByUser("stopped while held")
        return "released"


def start_held_job(qtbot) -> tuple[HeldJob, BackgroundJob, list]:
    held = HeldJob()
    job = BackgroundJob(held, "hold the line")
    results: list = []
    job.succeeded.connect(results.append)
    job.start()
    qtbot.waitUntil(held.started.is_set, timeout=30_000)  # it is running, not merely asked for
    return held, job, results


def test_run_job_says_how_a_job_ended():
    assert run_job(lambda progress, should_stop: 7, "count").value == 7

    def stopped(progress, should_stop):
        raise StoppedByUser("enough")

    assert run_job(stopped, "count").cancelled

    def broken(progress, should_stop):
        raise OSError(28, "No space left on device", "/tmp/x")

    failure = run_job(broken, "write the file").failure
    assert failure is not None and failure.title == "Could not write the file"
    assert failure.message == "No space left on device: /tmp/x" and "Traceback" in failure.details
    assert isinstance(failure.error, OSError)


def test_a_long_job_does_not_hold_up_interactive_analysis(qtbot, tiny_bundle, sample_rgb):
    client = WorkerClient()
    try:
        with qtbot.waitSignal(client.modelReady, timeout=60_000):
            client.load_model(tiny_bundle, "cpu")
        held, job, results = start_held_job(qtbot)

        with qtbot.waitSignal(client.analysisReady, timeout=60_000) as got:
            asked = client.analyze(sample_rgb, CLASSES, label="chelsea.png")
        assert got.args[0] == asked and got.args[1].segmentation.class_names == CLASSES
        assert results == [] and not held.release.is_set()  # the long job is still held, unfinished

        with qtbot.waitSignal(job.finished, timeout=30_000):
            held.release.set()
        assert results == ["released"]
    finally:
        client.shutdown()


def test_thumbnails_load_while_a_long_job_runs(qtbot, tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (30, 20), (80 * i, 0, 0)).save(paths[-1])
    strip = Filmstrip()
    qtbot.addWidget(strip)
    strip.resize(600, 140)
    strip.show()
    held, job, results = start_held_job(qtbot)
    try:
        strip.set_images(paths)
        qtbot.waitUntil(lambda: all(strip.thumbnail_state(i) == "ready" for i in range(3)), timeout=30_000)
        assert results == []
    finally:
        job.cancel()
        qtbot.waitUntil(lambda: not job.is_running(), timeout=30_000)
        strip.shutdown()


def test_a_pool_skips_jobs_of_an_older_generation_and_drops_their_results(qtbot):
    pool = JobPool(max_threads=1)
    ran, done = [], []
    pool.done.connect(lambda key, outcome: done.append((key, outcome.value)))
    first = HeldJob()

    def job(name):
        def fn(progress, should_stop):
            ran.append(name)
            return name
        return fn

    pool.submit("first", first)  # stale once running: it sees should_stop() and stops
    pool.submit("queued", job("queued"))
    qtbot.waitUntil(first.started.is_set, timeout=30_000)  # the one pool thread is busy with "first"
    pool.new_generation()       # a new list: "first" is stale, "queued" must not run
    pool.submit("new", job("new"))
    with qtbot.waitSignal(pool.done, timeout=30_000) as got:
        first.release.set()
    assert got.args[0] == "new" and got.args[1].value == "new"
    assert pool.wait(30_000)
    QApplication.processEvents()  # deliver anything else the finished jobs sent
    assert ran == ["new"] and done == [("new", "new")]
    pool.shutdown()
