"""Side by side (gui.whatif.side_by_side): two linked views with a readout in both, four comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QObject, QPointF, QRectF, Signal
from PySide6.QtWidgets import QApplication

from insight_desktop.core.paths import resource_path
from insight_desktop.core.tasks.decoder import without_concepts
from insight_desktop.core.tasks.segmentation import segment
from insight_desktop.core.tasks.whatif import mean_iou
from insight_desktop.gui.whatif.side_by_side import MODES, SideBySideView
from insight_desktop.gui.whatif.side_content import switched
from tests.gui.conftest import show_widget


@pytest.fixture
def view(qtbot, document):
    return show_widget(qtbot, SideBySideView(document), 1000, 520)


def settle(qtbot, view) -> None:
    """Levels and switch-offs are recomputed on the view's thread: wait until they are drawn."""
    qtbot.waitUntil(lambda: not view.pending(), timeout=30_000)


def ranges(pane):
    (x0, x1), (y0, y1) = pane.viewbox.viewRange()
    return np.array([x0, x1, y0, y1])


def move_mouse_to(pane, y: float, x: float) -> None:
    """Send a real mouse move over ``pane`` at frame point (x, y)."""
    from PySide6.QtCore import QPoint
    from pytestqt.qtbot import QtBot

    scene = pane.viewbox.mapViewToScene(QPointF(x, y))
    point = pane.view.mapFromScene(scene)
    QtBot.mouseMove(pane.view.viewport(), QPoint(point.x(), point.y()))
    QApplication.processEvents()


def strongest_patch(a, concept):
    """The patch where ``concept`` is strongest among those whose centre pixel lies in the image."""
    m = a.codes.concept_map(concept)
    for q in np.argsort(-m, axis=None, kind="stable"):
        r, c = (int(v) for v in np.unravel_index(int(q), m.shape))
        if a.patch_at(*pixel_of_patch(a, r, c)) == (r, c):
            return r, c, float(m[r, c])
    raise AssertionError("no patch lies in the image")


def pixel_of_patch(a, r, c):
    top, left, bottom, right = a.patch_box(r, c)
    return int((top + min(bottom, a.image_size[0])) / 2), int((left + min(right, a.image_size[1])) / 2)


def test_linked_views_follow_each_other_on_zoom_and_pan(view):
    left, right = view.panes
    left.viewbox.setRange(QRectF(40, 30, 80, 60), padding=0)
    QApplication.processEvents()
    assert np.allclose(ranges(left), ranges(right), atol=1e-6)
    right.viewbox.setRange(QRectF(200, 100, 50, 40), padding=0)    # and the other way round
    QApplication.processEvents()
    assert np.allclose(ranges(left), ranges(right), atol=1e-6)
    assert ranges(left)[0] == pytest.approx(200, abs=30)
    right.viewbox.translateBy(x=-25, y=10)                          # a pan
    left.viewbox.scaleBy((0.5, 0.5))                                # a zoom
    QApplication.processEvents()
    assert np.allclose(ranges(left), ranges(right), atol=1e-6)


def test_the_readout_shows_each_views_value_under_the_cursor(view, document, tiny_analysis):
    a = tiny_analysis
    ja, jb = a.concepts[0].concept, a.concepts[1].concept
    view.set_mode("concepts")
    view.concept_a.setCurrentIndex(view.concept_a.findData(ja))
    view.concept_b.setCurrentIndex(view.concept_b.findData(jb))
    r, c, za = strongest_patch(a, ja)        # planted: read from the codes, not through the view
    zb = float(a.codes.concept_map(jb)[r, c])
    y, x = pixel_of_patch(a, r, c)
    left, right = view.panes
    left.viewbox.setRange(QRectF(x - 20, y - 20, 40, 40), padding=0)
    QApplication.processEvents()
    move_mouse_to(left, y + 0.5, x + 0.5)
    assert left.readout.text() == f"x {x}, y {y} · {document.concept_name(ja)} z = {za:.3f}"
    assert right.readout.text() == f"x {x}, y {y} · {document.concept_name(jb)} z = {zb:.3f}"
    assert za > 0 and right.cross[0].isVisible() and right.cross[0].value() == pytest.approx(x + 0.5, abs=0.5)
    move_mouse_to(right, y + 8.5, x - 9.5)   # from the right pane, both follow too
    assert left.readout.text().startswith(f"x {x - 10}, y {y + 8} · ")
    assert right.readout.text().startswith(f"x {x - 10}, y {y + 8} · ")


def test_two_levels_at_the_deepest_level_is_the_full_segmentation(qtbot, view, document, tiny_analysis):
    a = tiny_analysis
    n_levels = len(document.catalog.relations.group_ends)
    view.set_mode("levels")
    view.level_a.setValue(1)
    view.level_b.setValue(n_levels)
    assert "computing" in view.panes[0].title.text()
    settle(qtbot, view)
    assert view.controls.currentIndex() == list(MODES).index("levels")
    left, right = view.panes
    assert right.title.text() == f"Segmentation through levels 1–{n_levels} · mIoU against all levels 1.00"
    # the left pane: its own prefix, decoded independently of the view
    deeper = [c.concept for c in a.concepts if c.level > 1]
    assert deeper, "the tiny model has concepts on level 2"
    prefix = segment(a.segmentation_inputs(without_concepts(a.codes, np.array(deeper))))
    assert left.title.text() == ("Segmentation through level 1 · mIoU against all levels "
                                 f"{mean_iou(prefix.labels, a.segmentation.labels):.2f}")
    assert "■" in left.legend.text() and left.legend.isVisible()
    h, w = a.image_size
    for y, x in ((h // 3, w // 3), (h // 2, w // 2), (2 * h // 3, w - 5)):
        view.show_cursor(x + 0.5, y + 0.5)
        assert left.readout.text() == f"x {x}, y {y} · {prefix.class_names[int(prefix.labels[y, x])]}"
        assert right.readout.text() == f"x {x}, y {y} · {a.segmentation.class_names[int(a.segmentation.labels[y, x])]}"


def test_switching_everything_off_leaves_the_bias_class_everywhere(view, tiny_analysis):
    a = tiny_analysis
    seg = a.segmentation
    view.before_after = lambda: switched(a, [c.concept for c in a.concepts])
    view.set_mode("switch")
    left, right = view.panes
    assert left.title.text() == "Before"
    assert right.title.text() == f"After switching off {len(a.concepts)} concept(s) (concepts only)"
    assert view.switch_label.text().endswith("shown: concepts only")
    # x̂ = b_dec everywhere: every pixel takes the class nearest the bias (no background in CLASSES)
    bias_class = seg.class_names[int(np.argmax(seg.bias_similarity))]
    h, w = a.image_size
    for y, x in ((3, 4), (h // 2, w // 2), (h - 2, w - 3)):
        view.show_cursor(x + 0.5, y + 0.5)
        before = seg.class_names[int(seg.labels[y, x])]
        assert left.readout.text() == f"x {x}, y {y} · {before}"
        expected = bias_class if before == bias_class else f"{bias_class} (was {before})"
        assert right.readout.text() == f"x {x}, y {y} · {expected}"


def test_without_the_switches_before_after_switches_off_the_selected_concept(qtbot, view, document, tiny_analysis):
    a = tiny_analysis
    seg = a.segmentation
    j = max(seg.segments, key=lambda s: s.pixels).contributions[0].concept   # the largest segment's top concept
    document.select_concept(j)
    view.set_mode("switch")
    assert view.panes[1].title.text() == "After (computing…)"
    settle(qtbot, view)
    assert view.switch_label.text() == f"Switched off: {document.concept_name(j)} — shown: concepts only"
    after = segment(a.segmentation_inputs(without_concepts(a.codes, np.array([j])))).labels   # decoded on its own
    changed = np.argwhere(after != seg.labels)
    h, w = a.image_size
    points = [tuple(int(v) for v in changed[len(changed) // 2])] if len(changed) else []
    for y, x in points + [(h // 2, w // 2), (5, 7)]:
        view.show_cursor(x + 0.5, y + 0.5)
        now, was = seg.class_names[int(after[y, x])], seg.class_names[int(seg.labels[y, x])]
        assert view.panes[1].readout.text() == f"x {x}, y {y} · " + (now if now == was else f"{now} (was {was})")


def test_two_images_with_one_concept_read_their_own_pixels(view, document, tiny_analyzer, tiny_analysis):
    from insight_desktop.core.images import load_image

    path = resource_path("samples", "coffee.png")
    coffee = load_image(path)
    other = tiny_analyzer.analyze(coffee)
    j = document.concept
    view.set_mode("images")
    view.set_images([document.image_path, path])
    assert view.message.text().startswith("Choose the image to compare with")
    wanted = []
    view.secondImageWanted.connect(wanted.append)
    index = view.image_b.findData(str(path))
    view.image_b.setCurrentIndex(index)
    view.image_b.activated.emit(index)          # as a user's pick
    assert wanted == [str(path)]
    view.set_second(path, coffee, None)
    assert view.panes[1].title.text() == "coffee.png: analysing…"
    view.set_second(path, coffee, other)
    left, right = view.panes
    scale = min(tiny_analysis.image_size[0] / coffee.shape[0], tiny_analysis.image_size[1] / coffee.shape[1])
    assert right.scale == pytest.approx(scale) and left.scale == 1.0
    r, c, z = strongest_patch(other, j) if other.concept(j) is not None else (0, 0, 0.0)
    y, x = pixel_of_patch(other, r, c)
    view.show_cursor((x + 0.5) * scale, (y + 0.5) * scale)     # the frame is the left image's pixels
    assert right.readout.text() == f"x {x}, y {y} · {document.concept_name(j)} z = {z:.3f}"
    ly, lx = int((y + 0.5) * scale), int((x + 0.5) * scale)
    za = float(tiny_analysis.codes.concept_map(j)[tiny_analysis.patch_at(ly, lx)])
    assert left.readout.text() == f"x {lx}, y {ly} · {document.concept_name(j)} z = {za:.3f}"


def test_modes_switch_and_a_new_analysis_redraws(view, document, tiny_analysis):
    for key in MODES:
        view.set_mode(key)
        assert view.current_mode() == key and view.controls.currentIndex() == list(MODES).index(key)
        assert view.panes[0].content.photo is not None
    view.set_mode("concepts")
    document.set_analysis(None)
    assert view.panes[0].title.text() == "No analysis yet" and view.panes[0].content.photo is None
    view.show_cursor(10.5, 10.5)
    assert view.panes[0].readout.text().strip() == ""
    document.set_analysis(tiny_analysis)
    assert view.panes[0].content.photo is not None and view.concept_a.count() == len(tiny_analysis.concepts)


def test_in_the_window_the_action_shows_the_dock_and_a_second_image_gets_analysed(qtbot, window, tiny_bundle):
    from tests.gui.conftest import wait_for_analysis

    chelsea, coffee = resource_path("samples", "chelsea.png"), resource_path("samples", "coffee.png")
    window.start([chelsea, coffee], tiny_bundle)
    a = wait_for_analysis(qtbot, window)
    side = window.side_by_side
    assert not side.dock.isVisible()
    window.actions.side_by_side.trigger()
    assert side.dock.isVisible() and window.actions.side_by_side.isChecked()
    view = side.view
    assert [view.image_b.itemData(i) for i in range(1, view.image_b.count())] == [str(chelsea), str(coffee)]
    view.set_mode("images")
    index = view.image_b.findData(str(coffee))
    view.image_b.setCurrentIndex(index)
    view.image_b.activated.emit(index)
    qtbot.waitUntil(lambda: view.second is not None and view.second[3] is not None, timeout=60_000)
    assert view.second[3].image_size == view.second[1].shape[:2] != a.image_size
    assert window.document.analysis is a                         # the window still shows its own image
    assert view.panes[1].title.text() == f"coffee.png: {window.document.concept_name(window.document.concept)}"

    # before/after follows the what-if switches of the window (gui.whatif)
    controller = window.whatif.controller
    view.set_mode("switch")
    assert "Nothing is switched off" in view.message.text()
    j = a.concepts[0].concept
    controller.set_off([j], True)
    qtbot.waitUntil(lambda: not controller.pending(), timeout=30_000)
    assert view.panes[1].title.text() == "After switching off 1 concept(s) (concepts only)"
    assert view.switch_label.text() == f"Switched off: {window.document.concept_name(j)} — shown: concepts only"
    window.actions.side_by_side.trigger()
    assert not side.dock.isVisible()


class FakeWorker(QObject):
    """The WorkerClient's face as SecondImage uses it: analyze() → a generation; results by signal."""

    analysisReady = Signal(int, object)
    idle = Signal()

    def __init__(self):
        super().__init__()
        self.is_busy = False
        self.asked: list[tuple[int, str]] = []

    def analyze(self, image, classes=(), background=False, label=""):
        self.asked.append((len(self.asked) + 1, label))
        self.is_busy = True
        return len(self.asked)

    def end(self, generation: int | None = None, analysis=None) -> None:
        """The running job ends: answered (``generation``, ``analysis``) or not (superseded, cancelled)."""
        if generation is not None:
            self.analysisReady.emit(generation, analysis)
        self.is_busy = False
        self.idle.emit()


def test_the_second_image_waits_for_an_idle_worker_and_is_asked_again_once_when_superseded(
        qtbot, view, document, tiny_analysis):
    from types import SimpleNamespace

    from PySide6.QtWidgets import QStatusBar

    from insight_desktop.gui.whatif.wiring_side import SecondImage

    coffee_path = resource_path("samples", "coffee.png")
    worker = FakeWorker()
    window = SimpleNamespace(document=document, worker=worker, requests=SimpleNamespace(_cache={}),
                             statusBar=QStatusBar)
    second = SecondImage(window, view)
    view.set_mode("images")
    worker.is_busy = True                     # the window's own analysis is running
    second.want(coffee_path)
    qtbot.waitUntil(lambda: view.second is not None, timeout=10_000)   # read off the GUI thread
    assert worker.asked == [] and "as soon as the running job ends" in view.message.text()
    worker.end()                              # idle: now it is asked
    assert worker.asked == [(1, "coffee.png")]
    worker.end()                              # ended unanswered (the window asked for another image): again, once
    assert worker.asked == [(1, "coffee.png"), (2, "coffee.png")]
    worker.end()
    assert len(worker.asked) == 2 and "was not analysed (stopped): choose it again" in view.message.text()

    second.want(coffee_path)                  # chosen again: asked again, and this time answered
    qtbot.waitUntil(lambda: len(worker.asked) == 3, timeout=10_000)
    worker.end(3, tiny_analysis)
    assert view.second[3] is tiny_analysis and view.second[0] == coffee_path

    version = coffee_path.stat().st_mtime_ns  # in the window's memory of recent analyses: no worker request
    window.requests._cache[(str(coffee_path), version, document.classes, document.background,
                            id(document.catalog))] = tiny_analysis
    second.want(coffee_path)
    assert view.second is None and view.message.text() == "Reading coffee.png…"
    qtbot.waitUntil(lambda: view.second is not None, timeout=10_000)
    assert view.second[3] is tiny_analysis and len(worker.asked) == 3
    second.shutdown()


def test_two_levels_without_classes_show_each_patchs_strongest_concept_of_those_levels(
        qtbot, view, document, tiny_analyzer, sample_rgb):
    a = tiny_analyzer.analyze(sample_rgb)       # no classes: no segmentation to cut down
    document.set_analysis(a)
    view.set_mode("levels")
    view.level_a.setValue(1)
    view.level_b.setValue(2)
    left, right = view.panes
    assert left.title.text() == "Level ≤ 1: strongest concept" and right.title.text() == "Level ≤ 2: strongest concept"
    r, c = a.grid[0] // 2, a.grid[1] // 2
    y, x = pixel_of_patch(a, r, c)
    view.show_cursor(x + 0.5, y + 0.5)
    for pane, level in ((left, 1), (right, 2)):
        kept = sorted(k.concept for k in a.concepts if k.level <= level)
        z = {j: float(a.codes.concept_map(j)[r, c]) for j in kept}
        best = max(kept, key=lambda j: (z[j], -kept.index(j)))
        expected = f"{document.concept_name(best)} z = {z[best]:.3f}" if z[best] > 0 else "no concept of these levels"
        assert pane.readout.text() == f"x {x}, y {y} · {expected}"
