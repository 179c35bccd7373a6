"""Index This Folder in the window: runs to completion in the background with progress, stops on
Cancel keeping what was indexed, resumes with the rest, and never holds up interactive analysis."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from insight_desktop.core.errors import StoppedByUser
from insight_desktop.core.index import FolderIndex, IndexStopped, index_path
from insight_desktop.gui.folder_index.index_job import YieldingAnalyzer, locate_index
from tests.gui.conftest import wait_for_analysis

N_IMAGES = 4


@pytest.fixture
def photos(tmp_path):
    """Four small photos, each a different coloured block on grey."""
    root = tmp_path / "photos"
    root.mkdir()
    for i, colour in enumerate(((220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 210, 40))):
        rgb = np.full((96, 128, 3), 128, np.uint8)
        rgb[20 + 8 * i:60 + 8 * i, 30:90] = colour
        Image.fromarray(rgb).save(root / f"p{i}.png")
    return root


@pytest.fixture
def browsing(qtbot, window, tiny_bundle, photos):
    """The window on the tiny model, browsing ``photos``, its first analysis done."""
    window.start([photos], tiny_bundle)
    wait_for_analysis(qtbot, window)
    return window


class Recorder:
    def __init__(self, job):
        self.progress: list[tuple[str, float]] = []
        self.ended: list[tuple[str, str]] = []
        job.progressed.connect(lambda text, fraction, _detail: self.progress.append((text, fraction)))
        job.ended.connect(lambda kind, message: self.ended.append((kind, message)))


class PauseAfter:
    """Analyses ``n`` images, then waits inside the next analysis until the build is stopped."""

    def __init__(self, analyzer, n: int):
        self.analyzer, self.model, self.n = analyzer, analyzer.model, n
        self.done = 0
        self.waiting = threading.Event()

    def analyze(self, rgb, **kwargs):
        if self.done >= self.n:
            self.waiting.set()
            while not kwargs["should_stop"]():
                threading.Event().wait(0.01)
            raise StoppedByUser("stopped while paused")
        self.done += 1
        return self.analyzer.analyze(rgb, **kwargs)


def indexed(window, photos) -> int:
    path = index_path(photos, window.document.catalog.model_identity)
    with FolderIndex(path) as index:
        return index.info().images


def test_index_this_folder_runs_to_completion_with_progress(qtbot, browsing, photos):
    w = browsing
    ui = w.folder_index
    rec = Recorder(ui.job)
    assert w.actions.index_folder.shortcut().toString() == "Ctrl+I"
    w.actions.index_folder.trigger()
    assert ui.job.is_running() and w.actions.stop_indexing.isEnabled() and not w.actions.index_folder.isEnabled()
    qtbot.waitUntil(lambda: bool(rec.ended), timeout=120_000)
    assert rec.ended[0][0] == "done" and "4 images: 4 analysed" in rec.ended[0][1]
    assert ui.job.summary.analysed == N_IMAGES and ui.job.summary.failed == 0
    assert indexed(w, photos) == N_IMAGES
    texts = [t for t, _ in rec.progress]
    assert f"Indexing photos: {N_IMAGES} / {N_IMAGES}" in texts
    assert [f for _, f in rec.progress if f >= 0][-1] == 1.0
    assert not ui.status.isVisible() and w.actions.index_folder.isEnabled()
    assert rec.ended[0][1] in w.statusBar().currentMessage()
    assert locate_index(photos, w.document.catalog.model_identity)[1] == photos.resolve()


def test_cancel_keeps_the_images_done_and_running_again_resumes(qtbot, browsing, photos):
    w = browsing
    ui = w.folder_index
    rec = Recorder(ui.job)
    pauses: list[PauseAfter] = []
    ui.job.wrap = lambda analyzer: pauses.append(PauseAfter(analyzer, 2)) or pauses[-1]
    w.actions.index_folder.trigger()
    qtbot.waitUntil(lambda: bool(pauses) and pauses[0].waiting.is_set(), timeout=120_000)
    # the index thread is busy inside an analysis: interactive analysis of another image still runs
    w.next_image()
    qtbot.waitUntil(lambda: w.document.image_path is not None and w.document.image_path.name == "p1.png",
                    timeout=30_000)
    wait_for_analysis(qtbot, w)
    assert ui.status.isVisible() and "2 / 4" in ui.status.text.text()
    ui.status.cancel.click()
    qtbot.waitUntil(lambda: bool(rec.ended), timeout=60_000)
    assert rec.ended[0][0] == "stopped" and "continues where it stopped" in rec.ended[0][1]
    assert indexed(w, photos) == 2

    ui.job.wrap = None
    w.actions.index_folder.trigger()
    qtbot.waitUntil(lambda: len(rec.ended) == 2, timeout=120_000)
    assert rec.ended[1][0] == "done"
    summary = ui.job.summary
    assert (summary.images, summary.analysed, summary.unchanged) == (N_IMAGES, 2, 2)
    assert indexed(w, photos) == N_IMAGES


def test_indexing_waits_while_interactive_work_runs_and_stops_when_asked():
    calls = []

    class Inner:
        model = object()

        def analyze(self, rgb, **kwargs):
            calls.append(rgb)
            return "analysis"

    idle = threading.Event()
    gated = YieldingAnalyzer(Inner(), idle)
    with pytest.raises(IndexStopped):  # the worker is busy and the user stops indexing: nothing analysed
        gated.analyze(1, should_stop=lambda: True)
    assert calls == []
    idle.set()
    assert gated.analyze(2, should_stop=lambda: False) == "analysis" and calls == [2]


def test_without_a_folder_or_model_it_says_why(qtbot, window, monkeypatch):
    messages = []
    monkeypatch.setattr("insight_desktop.gui.folder_index.wiring_index.show_error",
                        lambda _w, title, message, *a: messages.append((title, message)))
    window.actions.index_folder.trigger()
    assert messages and messages[0][0] == "Nothing to index"
    assert not window.folder_index.job.is_running()


def test_quitting_mid_index_keeps_every_finished_image(qtbot, browsing, photos):
    w = browsing
    ui = w.folder_index
    pauses: list[PauseAfter] = []
    ui.job.wrap = lambda analyzer: pauses.append(PauseAfter(analyzer, 3)) or pauses[-1]
    w.actions.index_folder.trigger()
    qtbot.waitUntil(lambda: bool(pauses) and pauses[0].waiting.is_set(), timeout=120_000)
    w.close()   # stops indexing in the middle of the fourth image
    qtbot.waitUntil(lambda: not ui.job.is_running(), timeout=30_000)
    assert indexed(w, photos) == 3
