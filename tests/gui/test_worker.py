"""The inference worker: loads once, analyses off the GUI thread, drops superseded work, cancels, survives errors."""

from __future__ import annotations

import numpy as np
import pytest

from insight_desktop.gui.worker import (
    ANALYSIS,
    MODEL,
    AnalysisRequest,
    InferenceWorker,
    ModelRequest,
    WorkControl,
    WorkerClient,
)

from .conftest import CLASSES


@pytest.fixture
def client(qtbot):
    c = WorkerClient()
    yield c
    c.shutdown()


def load(qtbot, client, path, device="cpu"):
    with qtbot.waitSignal(client.modelReady, timeout=60_000) as got:
        client.load_model(path, device)
    return got.args[0]


def test_loads_a_model_and_analyses_on_another_thread(qtbot, client, tiny_bundle, sample_rgb):
    catalog = load(qtbot, client, tiny_bundle)
    assert catalog.n_concepts == 64 and catalog.name(0) == "c0"
    assert 1 in [p for p, _ in catalog.parents(0)]
    progress = []
    client.busy.connect(lambda text, f: progress.append(f))
    with qtbot.waitSignal(client.analysisReady, timeout=60_000) as got:
        asked = client.analyze(sample_rgb, CLASSES, label="chelsea.png")
    generation, analysis = got.args
    assert generation == asked
    assert analysis.image_size == sample_rgb.shape[:2]
    assert analysis.segmentation.class_names == CLASSES
    assert progress and max(progress) == pytest.approx(1.0)
    qtbot.waitUntil(lambda: not client.is_busy, timeout=30_000)


def test_a_newer_request_supersedes_an_older_one(qtbot, client, tiny_bundle, sample_rgb):
    load(qtbot, client, tiny_bundle)
    results = []
    client.analysisReady.connect(lambda generation, analysis: results.append(analysis))
    small = np.ascontiguousarray(sample_rgb[:100, :120])
    with qtbot.waitSignal(client.idle, timeout=60_000):
        client.analyze(sample_rgb, CLASSES)   # superseded at once: skipped or stopped, never shown
        client.analyze(small, CLASSES)
    assert [r.image_size for r in results] == [(100, 120)]


def test_cancel_drops_everything_asked_so_far(qtbot, client, tiny_bundle, sample_rgb):
    load(qtbot, client, tiny_bundle)
    results = []
    client.analysisReady.connect(lambda generation, analysis: results.append(analysis))
    with qtbot.waitSignal(client.idle, timeout=60_000):
        client.analyze(sample_rgb, CLASSES)
        client.analyze(sample_rgb, ())
        client.cancel()
    assert results == []
    with qtbot.waitSignal(client.analysisReady, timeout=60_000):  # and it still works afterwards
        client.analyze(sample_rgb, ())


def test_superseding_without_a_newer_request_drops_the_running_analysis(qtbot, client, tiny_bundle, sample_rgb):
    """What a cache hit does: the analysis asked before it is no longer wanted, and nothing new is asked."""
    load(qtbot, client, tiny_bundle)
    results = []
    client.analysisReady.connect(lambda generation, analysis: results.append(analysis))
    with qtbot.waitSignal(client.idle, timeout=60_000):
        client.analyze(sample_rgb, CLASSES)
        client.supersede_analyses()
    assert results == []
    small = np.ascontiguousarray(sample_rgb[:100, :120])
    with qtbot.waitSignal(client.analysisReady, timeout=60_000) as got:  # and later requests are answered
        asked = client.analyze(small, CLASSES)
    assert got.args[0] == asked and got.args[1].image_size == (100, 120)


def test_cancel_stops_a_running_analysis_between_windows(tiny_bundle, sample_rgb):
    """Same thread, so the cancel lands deterministically after the first window batch."""
    control = WorkControl()
    worker = InferenceWorker(control)
    worker.load_model(control.issue(MODEL), ModelRequest(str(tiny_bundle), "cpu"))
    stages, results = [], []
    worker.analysisReady.connect(lambda g, a: results.append(a))

    def on_progress(gen, text, fraction):
        stages.append(fraction)
        if 0 < fraction < 0.8:
            control.cancel_all()

    worker.progress.connect(on_progress)
    wide = np.ascontiguousarray(np.tile(sample_rgb, (1, 4, 1)))  # 7 windows: two backbone batches
    worker.analyze(control.issue(ANALYSIS), AnalysisRequest(wide, CLASSES))
    assert results == []
    assert max(stages) < 0.8  # it never reached the concepts stage


def test_errors_come_back_as_messages_and_the_worker_carries_on(qtbot, client, tiny_bundle, sample_rgb, tmp_path):
    load(qtbot, client, tiny_bundle)
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a concept model")
    with qtbot.waitSignal(client.failed, timeout=60_000) as got:
        client.load_model(bad, "cpu")
    failure = got.args[0]
    assert failure.kind == MODEL and "broken.zip" in failure.title and failure.message
    assert "Traceback" in failure.details
    with qtbot.waitSignal(client.analysisReady, timeout=60_000):  # the previous model is still loaded
        client.analyze(sample_rgb, ())
    with qtbot.waitSignal(client.failed, timeout=60_000) as got:
        client.analyze(sample_rgb, ("cat", "Cat"))
    assert got.args[0].kind == ANALYSIS and "listed twice" in got.args[0].message


def test_analysis_without_a_model_is_a_clear_error(qtbot, client, sample_rgb):
    with qtbot.waitSignal(client.failed, timeout=10_000) as got:
        client.analyze(sample_rgb, ())
    assert "No concept model is loaded" in got.args[0].message


def test_out_of_memory_is_reported_in_words_and_the_model_stays_loaded(qtbot, client, tiny_bundle, sample_rgb):
    load(qtbot, client, tiny_bundle)
    analyzer = client._worker._analyzer
    real = analyzer.analyze

    def exhausted(*args, **kwargs):
        raise MemoryError()

    analyzer.analyze = exhausted
    with qtbot.waitSignal(client.failed, timeout=30_000) as got:
        client.analyze(sample_rgb, ())
    assert got.args[0].title == "Out of memory" and "smaller image" in got.args[0].message
    analyzer.analyze = real
    with qtbot.waitSignal(client.analysisReady, timeout=60_000):
        client.analyze(sample_rgb, ())


def test_progress_moves_during_the_analysis(qtbot, client, tiny_bundle, sample_rgb):
    """Several increasing fractions arrive while the backbone windows run, not just 0 then 1."""
    load(qtbot, client, tiny_bundle)
    seen = []
    client.busy.connect(lambda text, f: seen.append((text, f)))
    wide = np.ascontiguousarray(np.tile(sample_rgb, (1, 4, 1)))  # 7 windows
    with qtbot.waitSignal(client.analysisReady, timeout=120_000):
        client.analyze(wide, CLASSES, label="wide.png")
    fractions = [f for _, f in seen]
    during = [f for f in fractions if 0 < f < 1]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert len(set(during)) >= 7  # one step per window at least
    assert any("features" in text for text, _ in seen)


def test_shutdown_stops_a_running_analysis_and_ends_the_thread(qtbot, tiny_bundle, sample_rgb):
    client = WorkerClient()
    load(qtbot, client, tiny_bundle)
    results, started = [], []
    client.analysisReady.connect(lambda g, a: results.append(a))
    client.busy.connect(lambda text, f: started.append(f) if "features" in text else None)
    wide = np.ascontiguousarray(np.tile(sample_rgb, (1, 4, 1)))
    client.analyze(wide, CLASSES)
    qtbot.waitUntil(lambda: bool(started), timeout=60_000)  # the backbone windows are running
    assert client.shutdown(timeout_ms=60_000)  # it stops at the next window, frees the model, ends the thread
    assert not client._thread.isRunning() and client._worker._analyzer is None
    qtbot.wait(50)
    assert results == []
    assert client.shutdown()  # a second call is harmless


def test_shutdown_leaves_an_uninterruptible_job_running_safely(qtbot, tiny_bundle, sample_rgb):
    """A model load inside an import cannot stop: shutdown returns False and keeps the thread referenced
    (never destroyed while it runs); when the job ends, the thread ends by itself."""
    import threading

    from insight_desktop.gui import worker as worker_module

    client = WorkerClient()
    load(qtbot, client, tiny_bundle)
    release, entered = threading.Event(), threading.Event()

    def stuck(*args, **kwargs):  # ignores should_stop, as an import does
        entered.set()
        release.wait(60)
        raise RuntimeError("never mind")

    client._worker._analyzer.analyze = stuck
    client.analyze(sample_rgb, CLASSES)
    assert entered.wait(60)
    assert client.shutdown(timeout_ms=10) is False
    assert worker_module.worker_still_running()
    thread = client._thread
    del client  # the window goes; the thread must survive it
    release.set()
    qtbot.waitUntil(lambda: not thread.isRunning(), timeout=60_000)
    assert not worker_module.worker_still_running()
