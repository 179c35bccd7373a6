"""The image view: what its layers draw, and what clicks, drags and hovers do to the document."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from insight_desktop.core.tasks.render import class_colours
from insight_desktop.gui.layers import colormap_lut, patch_activation
from insight_desktop.gui.widgets.image_view import HINT, ImageCanvas
from tests.gui.conftest import show_widget, visible_pixels, zoom_on

#: pyqtgraph's scene ignores mouse moves closer together than its rate limit (1/60 s)
MOVE_INTERVAL_MS = 40


@pytest.fixture
def canvas(qtbot, document):
    return show_widget(qtbot, ImageCanvas(document), 700, 560)


def heat_image(canvas) -> np.ndarray:
    return canvas.items["heatmap"].image


def other_concept(document) -> int:
    """An active concept whose map differs from the selected one's."""
    a = document.analysis
    current = a.concept_map(document.concept)
    return next(c.concept for c in a.concepts if not np.array_equal(a.concept_map(c.concept), current))


def test_heatmap_is_drawn_over_the_photo(canvas, document):
    assert canvas.photo_item.isVisible() and canvas.view.isVisible() and not canvas.hint.isVisible()
    np.testing.assert_array_equal(canvas.photo_item.image, document.image)
    item = canvas.items["heatmap"]
    assert item.isVisible() and item.opacity() == pytest.approx(document.overlay.heatmap_opacity)
    rgba = heat_image(canvas)
    assert rgba.shape == (*document.image.shape[:2], 4)
    heat = document.analysis.display_map(document.concept)
    # Alpha follows the heat, colours come from the chosen colormap.
    np.testing.assert_array_equal(rgba[..., 3], np.floor(heat * 255 + 0.5).astype(np.uint8))
    lut = colormap_lut("inferno")
    hot = np.unravel_index(np.argmax(heat), heat.shape)
    np.testing.assert_array_equal(rgba[hot][:3], lut[255])
    assert visible_pixels(rgba) > 0.05 * heat.size
    composite = canvas.composite_rgb()
    assert composite.shape == document.image.shape
    assert np.abs(composite.astype(int) - document.image).sum() > 0
    # Cold pixels keep the photo exactly.
    cold = heat == 0
    if cold.any():
        np.testing.assert_array_equal(composite[cold], document.image[cold])
    assert canvas.colorbar.scene() is not None  # the colour bar is shown next to the image


def test_image_is_upright(canvas, document):
    h, w = document.image.shape[:2]
    top, bottom = canvas.image_to_view(0, w / 2), canvas.image_to_view(h, w / 2)
    left, right = canvas.image_to_view(h / 2, 0), canvas.image_to_view(h / 2, w)
    assert top.y() < bottom.y() and left.x() < right.x()
    # The aspect ratio is locked: one image pixel is as wide as it is high on screen.
    px = canvas.viewbox.viewPixelSize()
    assert px[0] == pytest.approx(px[1], rel=1e-6)


def test_selecting_another_concept_changes_the_heatmap(canvas, document):
    before = heat_image(canvas).copy()
    j = other_concept(document)
    document.select_concept(j)
    after = heat_image(canvas)
    assert not np.array_equal(before, after)
    expected = np.floor(document.analysis.display_map(j) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(after[..., 3], expected)


def test_colormap_change_recolours_heat(canvas, document):
    before = heat_image(canvas).copy()
    document.set_overlay(colormap="viridis")
    after = heat_image(canvas)
    np.testing.assert_array_equal(after[..., 3], before[..., 3])
    hot = np.unravel_index(np.argmax(after[..., 3]), after.shape[:2])
    np.testing.assert_array_equal(after[hot][:3], colormap_lut("viridis")[after[hot][3]])
    assert not np.array_equal(after[..., :3], before[..., :3])


def test_zero_opacity_or_hidden_heatmap_leaves_the_photo(canvas, document):
    document.set_overlay(heatmap_opacity=0.0)
    assert canvas.items["heatmap"].opacity() == 0.0
    np.testing.assert_array_equal(canvas.composite_rgb(), document.image)
    document.set_overlay(heatmap_opacity=0.8, show_heatmap=False)
    assert not canvas.items["heatmap"].isVisible()
    assert canvas.colorbar.scene() is None  # no colour bar for a layer that is not shown
    np.testing.assert_array_equal(canvas.composite_rgb(), document.image)


def test_threshold_hides_cold_heat(canvas, document):
    document.set_overlay(threshold=1.0)
    assert visible_pixels(heat_image(canvas)) == 0
    document.set_overlay(threshold=0.0)
    many = visible_pixels(heat_image(canvas))
    assert many > 0.05 * document.image.shape[0] * document.image.shape[1]
    document.set_overlay(threshold=0.5)
    heat = document.analysis.display_map(document.concept)
    assert visible_pixels(heat_image(canvas)) == np.count_nonzero(heat > 0.5) < many


def test_segmentation_layer_uses_the_class_colours(canvas, document):
    seg = document.analysis.segmentation
    document.set_overlay(show_segmentation=True, show_heatmap=False, mask_opacity=0.7)
    item = canvas.items["segmentation"]
    assert item.isVisible() and item.opacity() == pytest.approx(0.7)
    colours = np.array(class_colours(len(seg.class_names), background=seg.background_label is not None), np.uint8)
    rgba = item.image
    np.testing.assert_array_equal(rgba[..., :3], colours[seg.labels])
    assert (rgba[..., 3] == 255).all()
    expected = np.rint(document.image * 0.3 + colours[seg.labels] * 0.7)
    assert np.abs(canvas.composite_rgb().astype(int) - expected).max() <= 1

    hidden = int(np.bincount(seg.labels.ravel()).argmax())
    document.set_overlay(hidden_labels=frozenset({hidden}))
    rgba = item.image
    np.testing.assert_array_equal(rgba[..., 3] == 0, seg.labels == hidden)
    np.testing.assert_array_equal(canvas.composite_rgb()[seg.labels == hidden], document.image[seg.labels == hidden])


def test_opaque_segmentation_is_drawn_when_asked(canvas, document):
    seg = document.analysis.segmentation
    document.set_overlay(show_segmentation=True, show_opaque=True)
    colours = np.array(class_colours(len(seg.class_names), background=seg.background_label is not None), np.uint8)
    np.testing.assert_array_equal(canvas.items["segmentation"].image[..., :3], colours[seg.opaque_labels])


def test_residual_layer_is_reddest_where_the_reconstruction_is_worst(canvas, document):
    a = document.analysis
    document.set_overlay(show_residual=True, show_heatmap=False)
    rgba = canvas.items["residual"].image
    assert canvas.items["residual"].isVisible() and rgba.shape[:2] == document.image.shape[:2]
    worst = np.unravel_index(np.argmax(rgba[..., 3]), rgba.shape[:2])
    assert rgba[worst][3] >= 250 and rgba[worst][0] > rgba[worst][1]
    res = a.faithfulness.residual
    # The most opaque pixel lies in (or next to, bilinear blending) the patch with the largest residual.
    r, c = a.patch_at(*worst)
    assert res[r, c] >= np.sort(res.ravel())[-4]


def test_click_selects_the_segment_and_the_patch_under_the_cursor(canvas, document, qtbot):
    seg = document.analysis.segmentation
    labels = seg.labels
    # A pixel of a label other than the one selected now, so the selection must change.
    ys, xs = np.nonzero(labels != labels[0, 0])
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    pos = zoom_on(canvas, y, x)
    with qtbot.waitSignal(canvas.pixelClicked) as clicked:
        qtbot.mouseClick(canvas.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert clicked.args == [y, x]
    assert document.segment == labels[y, x]
    region = document.region
    assert region.top <= y < region.bottom and region.left <= x < region.right
    rows, cols = document.region_patches(region)
    assert (rows.start, cols.start) == document.analysis.patch_at(y, x)
    assert rows.stop - rows.start == 1 and cols.stop - cols.start == 1  # one patch
    assert canvas.region_item.isVisible()
    rect = canvas.region_item.rect()
    drawn = (rect.top(), rect.left(), rect.bottom(), rect.right())
    assert drawn == (region.top, region.left, region.bottom, region.right)


def _send(widget, kind, pos: QPoint, buttons, modifiers) -> None:
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    global_pos = QPointF(widget.mapToGlobal(pos))
    QApplication.sendEvent(widget, QMouseEvent(kind, QPointF(pos), global_pos, button, buttons, modifiers))


def _drag(widget, start: QPoint, end: QPoint, modifiers) -> None:
    left = Qt.MouseButton.LeftButton
    _send(widget, QEvent.Type.MouseButtonPress, start, left, modifiers)
    for t in (0.25, 0.5, 1.0):
        QTest.qWait(MOVE_INTERVAL_MS)  # pyqtgraph drops mouse moves that come faster than its rate limit
        _send(widget, QEvent.Type.MouseMove, start + (end - start) * t, left, modifiers)
    _send(widget, QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton, modifiers)


@pytest.mark.parametrize("how", ["ctrl", "mode"])
def test_drag_draws_a_selection_rectangle(canvas, document, how):
    viewport = canvas.view.viewport()
    start, end = canvas.image_to_view(40.2, 60.2).toPoint(), canvas.image_to_view(150.8, 220.8).toPoint()
    range_before = canvas.viewbox.viewRect()
    if how == "mode":
        canvas.set_rectangle_mode(True)
    modifiers = Qt.KeyboardModifier.ControlModifier if how == "ctrl" else Qt.KeyboardModifier.NoModifier
    _drag(viewport, start, end, modifiers)
    region = document.region
    assert region is not None
    # A screen pixel is less than one image pixel here, so the rectangle is exact to a pixel.
    assert abs(region.top - 40) <= 1 and abs(region.left - 60) <= 1
    assert abs(region.bottom - 151) <= 1 and abs(region.right - 221) <= 1
    assert canvas.viewbox.viewRect() == range_before  # it did not pan
    assert canvas.region_item.isVisible()


def test_plain_drag_pans(canvas, document):
    before = canvas.viewbox.viewRect()
    viewport = canvas.view.viewport()
    centre = canvas.image_to_view(150, 225).toPoint()
    _drag(viewport, centre, centre + QPoint(60, 0), Qt.KeyboardModifier.NoModifier)
    after = canvas.viewbox.viewRect()
    assert after.left() < before.left()  # dragging right shows what lies to the left
    assert document.region is None


def test_hover_reports_pixel_patch_and_activation(canvas, document, qtbot):
    a = document.analysis
    j = document.concept
    heat = a.concept_map(j)
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    # The centre pixel of that patch (clipped to the image: the grid also covers padding).
    ph = a.image_size[0] / a.analysis_size[0] * a.patch_size
    pw = a.image_size[1] / a.analysis_size[1] * a.patch_size
    y = min(int((r + 0.5) * ph), a.image_size[0] - 1)
    x = min(int((c + 0.5) * pw), a.image_size[1] - 1)
    pos = zoom_on(canvas, y, x)
    QTest.qWait(MOVE_INTERVAL_MS)
    with qtbot.waitSignal(canvas.hovered) as hovered:
        qtbot.mouseMove(canvas.view.viewport(), pos)
    text = hovered.args[0]
    r, c = a.patch_at(y, x)
    assert text.startswith(f"x {x}, y {y}")
    assert f"patch ({r}, {c})" in text
    value = float(heat[r, c])
    assert patch_activation(a, r, c, j) == pytest.approx(value)
    assert f"{document.catalog.name(j)} {value:.2f}" in text
    assert a.segmentation.class_names[a.segmentation.labels[y, x]] in text
    # Off the image the readout is cleared (the fitted wide image leaves a margin above it).
    canvas.fit()
    above = canvas.image_to_view(-10, a.image_size[1] / 2).toPoint()
    assert canvas.view.viewport().rect().contains(above)
    QTest.qWait(MOVE_INTERVAL_MS)
    with qtbot.waitSignal(canvas.hovered) as hovered:
        qtbot.mouseMove(canvas.view.viewport(), above)
    assert hovered.args == [""]


def test_export_writes_the_composite_with_a_colour_bar_and_legend(canvas, document, tmp_path):
    h, w = document.image.shape[:2]
    path = tmp_path / "out" / "figure.png"
    canvas.export_image(path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > w and im.height >= h
        pixels = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(pixels[:h, :w], canvas.composite_rgb())
    heat_only = pixels.shape[1]
    # The colour bar shows the colormap's top colour somewhere right of the image.
    assert (pixels[:, w:] == colormap_lut("inferno")[255]).all(axis=-1).any()

    document.set_overlay(show_segmentation=True)
    canvas.export_image(path)
    with Image.open(path) as im:
        assert im.width > heat_only  # the class legend was added
    document.set_overlay(show_segmentation=False, show_heatmap=False)
    canvas.export_image(path)
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), document.image)
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]  # no temporary file left behind


def test_opacity_change_does_not_recompute_the_map(canvas, document, monkeypatch):
    calls = []
    first, second = document.concept, other_concept(document)
    analysis_type = type(document.analysis)
    original = analysis_type.concept_map

    def counting(self, j):
        calls.append(j)
        return original(self, j)

    monkeypatch.setattr(analysis_type, "concept_map", counting)
    shown = heat_image(canvas)
    document.set_overlay(heatmap_opacity=0.3)
    assert calls == [] and heat_image(canvas) is shown
    assert canvas.items["heatmap"].opacity() == pytest.approx(0.3)
    document.select_concept(second)
    assert calls == [second]
    assert canvas.render_seconds > 0  # measured (how fast is for benchmarks, not for a test on a busy machine)
    document.select_concept(first)  # switching back is served from the cache
    assert calls == [second]
    document.set_overlay(threshold=0.4, show_segmentation=True)
    assert calls == [second]


def test_new_analysis_is_rendered_from_scratch(canvas, document, tiny_analysis):
    document.set_overlay(show_segmentation=True)
    document.set_analysis(None)
    assert not any(item.isVisible() for item in canvas.items.values())
    np.testing.assert_array_equal(canvas.composite_rgb(), document.image)
    document.set_analysis(tiny_analysis)
    assert canvas.items["heatmap"].isVisible() and canvas.items["segmentation"].isVisible()


def test_empty_view_shows_a_hint_until_an_image_arrives(qtbot, sample_rgb):
    from insight_desktop.gui.document import Document

    doc = Document()
    view = show_widget(qtbot, ImageCanvas(doc))
    assert view.hint.isVisible() and view.hint.text() == HINT and not view.view.isVisible()
    with pytest.raises(ValueError):
        view.composite_rgb()
    doc.set_image(None, sample_rgb)
    assert view.view.isVisible() and not view.hint.isVisible()
    np.testing.assert_array_equal(view.composite_rgb(), sample_rgb)  # no analysis yet: the photo only


def test_zoom_commands(canvas, document):
    h, w = document.image.shape[:2]
    rect = canvas.viewbox.viewRect()  # a new image is fitted to the view
    assert rect.contains(QRectF(0, 0, w, h))
    canvas.zoom_in()
    canvas.fit()
    assert canvas.viewbox.viewRect() == rect
    assert rect.width() >= w - 1 and rect.height() >= h - 1
    assert rect.width() <= w + 1 or rect.height() <= h + 1  # fitted: one side touches the view
    canvas.zoom_in()
    assert canvas.viewbox.viewRect().width() < rect.width()
    canvas.zoom_out()
    canvas.zoom_out()
    assert canvas.viewbox.viewRect().width() > rect.width()
    canvas.actual_size()
    px = canvas.viewbox.viewPixelSize()
    assert px[0] == pytest.approx(1.0, rel=0.02) and px[1] == pytest.approx(1.0, rel=0.02)


def test_patch_regions_map_back_to_their_patch(document):
    """A click's region always holds the clicked pixel and starts at the clicked patch."""
    from insight_desktop.gui.layers import patch_region

    a = document.analysis
    h, w = a.image_size
    single = 0
    for y in range(0, h, 7):
        for x in range(0, w, 5):
            region = patch_region(a, y, x)
            assert region.top <= y < region.bottom and region.left <= x < region.right
            rows, cols = document.region_patches(region)
            assert (rows.start, cols.start) == a.patch_at(y, x)
            single += rows.stop - rows.start == 1 and cols.stop - cols.start == 1
    # Only pixels cut by a patch border (about 1 in 10 per axis here) reach into the next patch.
    assert single > 0.7 * len(range(0, h, 7)) * len(range(0, w, 5))


def test_every_clicked_pixel_selects_exactly_its_own_patch(document):
    """Also pixels that a (fractional) patch border cuts through: the region names its patch."""
    from insight_desktop.gui.layers import patch_region

    a = document.analysis
    h, w = a.image_size
    for y in range(0, h, 7):
        for x in range(0, w, 5):
            r, c = a.patch_at(y, x)
            region = patch_region(a, y, x)
            assert region.top <= y < region.bottom and region.left <= x < region.right
            assert document.region_patches(region) == (slice(r, r + 1), slice(c, c + 1))


def bar_fraction(bar, y_view: float) -> float:
    """Where ``y_view`` (in the bar's own coordinates) is drawn, as a fraction of the bar from its bottom."""
    def scene_y(v):
        return bar.vb.mapViewToScene(QPointF(0.5, v)).y()
    return (scene_y(0) - scene_y(y_view)) / (scene_y(0) - scene_y(256))


def test_the_threshold_is_marked_on_the_colour_bar(canvas, document):
    assert not canvas.threshold_marker.isVisible()  # no threshold, nothing hidden, no mark
    document.set_overlay(threshold=0.25)  # what the threshold slider does
    QApplication.processEvents()
    marker = canvas.threshold_marker
    assert marker.isVisible() and marker.scene() is canvas.colorbar.scene()
    assert canvas.colorbar.levels() == (0.0, 1.0)
    assert bar_fraction(canvas.colorbar, marker.value()) == pytest.approx(0.25, abs=0.01)
    document.set_overlay(threshold=0.6)
    QApplication.processEvents()
    assert bar_fraction(canvas.colorbar, marker.value()) == pytest.approx(0.6, abs=0.01)


def test_the_residual_layer_has_its_own_colour_bar(canvas, document):
    assert canvas.residual_bar.scene() is None  # not shown while the layer is off
    document.set_overlay(show_residual=True)
    QApplication.processEvents()
    bar = canvas.residual_bar
    assert bar.scene() is not None and bar.isVisible()
    assert "‖x − x̂‖" in bar.getAxis("left").labelText
    top = float(canvas.layers.upsampled_residual(document.analysis, document.image.shape[:2]).max())
    assert top > 0 and bar.levels() == pytest.approx((0.0, top))
    assert canvas.colorbar.scene() is not None  # the heatmap keeps its own bar next to it
    document.set_overlay(show_residual=False)
    assert canvas.residual_bar.scene() is None
