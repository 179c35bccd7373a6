"""Big photos: the photo and its layers are drawn at display size (layers made off the GUI thread),
placed over the image in image pixels, so clicks, hovers and exports are what they were; the
fixed heat scale; and the layer jobs' stale results are dropped."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QRectF, Qt

from insight_desktop.core.tasks.render import class_colours
from insight_desktop.gui.layers import (
    DISPLAY_CAP,
    colormap_lut,
    composite,
    display_size,
    heat_rgba,
    label_rgba,
    nearest_labels,
    training_max,
)
from insight_desktop.gui.widgets import canvas_layers
from insight_desktop.gui.widgets.canvas_layers import CanvasLayers, full_resolution_layers
from insight_desktop.gui.widgets.image_view import DETAIL_DELAY_MS, ImageCanvas
from tests.gui.conftest import CLASSES, show_widget, zoom_on

BIG = (2000, 3000)  # (H, W): display size 1365 × 2048, big enough to be drawn on a thread


@pytest.fixture(scope="module")
def big_rgb(sample_rgb):
    return np.asarray(Image.fromarray(sample_rgb).resize(BIG[::-1], Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def big_analysis(tiny_analyzer, big_rgb):
    return tiny_analyzer.analyze(big_rgb, classes=list(CLASSES))


@pytest.fixture
def big_document(qtbot, tiny_catalog, big_rgb, big_analysis):
    from insight_desktop.gui.document import Document

    doc = Document()
    doc.set_catalog(tiny_catalog)
    doc.set_image(None, big_rgb)
    doc.set_classes(CLASSES)
    doc.set_analysis(big_analysis)
    return doc


@pytest.fixture
def big_canvas(qtbot, big_document):
    canvas = show_widget(qtbot, ImageCanvas(big_document), 700, 560)
    settle(qtbot, canvas)
    return canvas


def settle(qtbot, canvas) -> None:
    """Big layers are made on a thread: wait until every layer asked for is drawn."""
    qtbot.waitUntil(lambda: not canvas.layers.pending(), timeout=30_000)


def centres(n_out: int, n_in: int) -> np.ndarray:
    """The full-resolution pixel under the centre of each display pixel."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(int), n_in - 1)


def covers_the_image(item, h: int, w: int) -> bool:
    rect = item.mapRectToParent(item.boundingRect())
    return rect == QRectF(0, 0, w, h)


def test_display_size_caps_the_long_side():
    assert display_size((300, 451)) == (300, 451)  # small images are drawn as they are
    assert display_size((6000, 8000)) == (1536, DISPLAY_CAP)
    assert display_size((8000, 3000)) == (DISPLAY_CAP, 768)


def test_the_heatmap_is_drawn_at_display_size_and_matches_the_full_resolution_one(big_canvas, big_document):
    doc, (h, w) = big_document, BIG
    dh, dw = display_size(BIG)
    rgba = big_canvas.layer_image("heatmap")
    assert rgba.shape == (dh, dw, 4) and big_canvas.items["heatmap"].isVisible()
    assert covers_the_image(big_canvas.items["heatmap"], h, w)  # placed over the image in image pixels
    assert big_canvas.photo_item.image.shape[:2] == (dh, dw) and covers_the_image(big_canvas.photo_item, h, w)
    full = heat_rgba(doc.analysis.display_map(doc.concept), colormap_lut("inferno"), 0.0)
    sampled = full[np.ix_(centres(dh, h), centres(dw, w))]
    diff = np.abs(rgba.astype(int) - sampled.astype(int))
    assert diff[..., 3].max() <= 3 and diff[..., 3].mean() < 0.5  # the same heat, sampled at display pixels
    assert (rgba[..., 3] > 0).mean() > 0.05


def test_segmentation_and_residual_layers_at_display_size(qtbot, big_canvas, big_document):
    seg, (h, w) = big_document.analysis.segmentation, BIG
    dh, dw = display_size(BIG)
    big_document.set_overlay(show_segmentation=True, show_residual=True, show_heatmap=False)
    settle(qtbot, big_canvas)
    labels = seg.labels[np.ix_(centres(dh, h), centres(dw, w))]
    np.testing.assert_array_equal(nearest_labels(seg.labels, (dh, dw)), labels)
    colours = np.array(class_colours(len(seg.class_names), background=seg.background_label is not None), np.uint8)
    rgba = big_canvas.layer_image("segmentation")
    np.testing.assert_array_equal(rgba[..., :3], colours[labels])
    assert covers_the_image(big_canvas.items["segmentation"], h, w)
    residual = big_canvas.layer_image("residual")
    assert residual.shape == (dh, dw, 4) and residual[..., 3].max() >= 250
    assert big_canvas.residual_bar.levels()[1] == pytest.approx(big_canvas.layers.residual_top)


def test_the_export_stays_full_resolution(big_canvas, big_document, big_rgb):
    big_document.set_overlay(show_segmentation=True)
    out = big_canvas.composite_rgb()
    assert out.shape == big_rgb.shape
    shown = {"segmentation": big_canvas.items["segmentation"].opacity(),
             "heatmap": big_document.overlay.heatmap_opacity}
    np.testing.assert_array_equal(out, composite(big_rgb, full_resolution_layers(big_document, shown)))
    seg = big_document.analysis.segmentation
    colours = class_colours(len(seg.class_names), background=seg.background_label is not None)
    layers = full_resolution_layers(big_document, {"segmentation": 0.5})
    np.testing.assert_array_equal(layers[0][0], label_rgba(seg.labels, colours))  # full-size labels, as before


def test_clicks_and_hovers_on_a_big_image_read_image_pixels(qtbot, big_canvas, big_document):
    a = big_document.analysis
    y, x = 1234, 2345
    pos = zoom_on(big_canvas, y, x)
    with qtbot.waitSignal(big_canvas.pixelClicked) as clicked:
        qtbot.mouseClick(big_canvas.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert clicked.args == [y, x]
    region = big_document.region
    assert region.top <= y < region.bottom and region.left <= x < region.right
    r, c = a.patch_at(y, x)
    assert big_document.region_patches(region) == (slice(r, r + 1), slice(c, c + 1))
    assert big_document.segment == a.segmentation.labels[y, x]
    text = big_canvas._readout(y, x)
    assert text.startswith(f"x {x}, y {y}") and f"patch ({r}, {c})" in text


def test_zoomed_in_the_photo_shows_its_full_resolution_pixels(qtbot, big_canvas, big_rgb):
    assert not big_canvas.detail_item.isVisible()  # fitted: the display copy is enough
    zoom_on(big_canvas, 1000, 1500)
    qtbot.waitUntil(big_canvas.detail_item.isVisible, timeout=5 * DETAIL_DELAY_MS + 5_000)
    item = big_canvas.detail_item
    rect = item.mapRectToParent(item.boundingRect())
    top, left = int(rect.top()), int(rect.left())
    tile = item.image
    assert rect.contains(QRectF(1490, 990, 20, 20))
    np.testing.assert_array_equal(tile, big_rgb[top:top + tile.shape[0], left:left + tile.shape[1]])  # 1:1 pixels
    big_canvas.fit()
    qtbot.waitUntil(lambda: not big_canvas.detail_item.isVisible(), timeout=5 * DETAIL_DELAY_MS + 5_000)


def test_opacity_is_set_on_the_item_and_remakes_nothing(qtbot, big_canvas, big_document, monkeypatch):
    made = []
    monkeypatch.setattr(CanvasLayers, "request", lambda self, *args: made.append(args))
    big_document.set_overlay(heatmap_opacity=0.25)
    assert made == [] and big_canvas.items["heatmap"].opacity() == pytest.approx(0.25)


def test_a_superseded_layer_is_dropped(qtbot):
    layers = CanvasLayers()
    layers.reset(BIG)
    arrived, gate = [], threading.Event()
    layers.ready.connect(lambda name, key, rgba: arrived.append((name, key, int(rgba[0, 0, 0]))))

    def slow():
        gate.wait(10)
        return np.full((2, 2, 4), 1, np.uint8)

    assert layers.request("heatmap", "first", slow) is None  # big: made on the pool
    assert layers.request("heatmap", "second", lambda: np.full((2, 2, 4), 2, np.uint8)) is None
    gate.set()
    qtbot.waitUntil(lambda: bool(arrived), timeout=10_000)
    layers.wait()
    qtbot.wait(50)
    assert arrived == [("heatmap", "second", 2)]  # the first one's result never arrives
    layers.reset(BIG)
    layers.request("heatmap", "third", lambda: np.zeros((2, 2, 4), np.uint8))
    layers.reset(BIG)  # a new image: what was asked for the old one is not wanted
    layers.wait()
    qtbot.wait(50)
    assert [a[1] for a in arrived] == ["second"] and not layers.pending()
    layers.shutdown()


# ---------------------------------------------------------------------------- the fixed heat scale
def test_training_max_is_the_top_of_the_bundles_top_token_table():
    top = np.array([[4.0, 3.0], [-np.inf, -np.inf], [0.0, 0.0]], np.float32)
    cat = SimpleNamespace(n_concepts=3, relations=SimpleNamespace(top_values=top))
    assert training_max(cat, 0) == 4.0
    assert training_max(cat, 1) is None and training_max(cat, 2) is None  # never fired: no scale
    assert training_max(cat, 7) is None and training_max(None, 0) is None


def test_the_fixed_scale_colours_heat_by_the_training_max(qtbot, document, monkeypatch):
    canvas = show_widget(qtbot, ImageCanvas(document), 700, 560)
    a, j = document.analysis, document.concept
    # the strongest activation drawn (bilinear upsampling of z² peaks at or below the strongest patch's)
    strongest = float(np.sqrt(canvas.layers.maps.squared(a, j, document.image.shape[:2]).max()))
    monkeypatch.setattr(canvas_layers, "training_max", lambda catalog, concept: 2.0 * strongest)
    relative = canvas.layer_image("heatmap").copy()
    assert relative[..., 3].max() == 255  # the image's own max is 1
    assert "image max = 1" in canvas.colorbar.getAxis("left").labelText
    document.set_overlay(heat_scale="model")
    fixed = canvas.layer_image("heatmap")
    # heat is the squared activation: half the training max shows as a quarter
    assert fixed[..., 3].max() == round(0.25 * 255)
    np.testing.assert_allclose(fixed[..., 3] / 255.0, relative[..., 3] / 255.0 * 0.25, atol=1.5 / 255)
    assert "training max = 1" in canvas.colorbar.getAxis("left").labelText
    out = canvas.composite_rgb()  # the export follows the same scale
    layers = full_resolution_layers(document, {"heatmap": canvas.items["heatmap"].opacity()})
    np.testing.assert_array_equal(layers[0][0], fixed)  # small image: display size is full size
    np.testing.assert_array_equal(out, composite(document.image, layers))

    monkeypatch.setattr(canvas_layers, "training_max", lambda catalog, concept: None)
    document.set_overlay(colormap="viridis")  # remade: without a training max, the image's max is used
    assert canvas.layer_image("heatmap")[..., 3].max() == 255
    assert "no training max" in canvas.colorbar.getAxis("left").labelText


def test_the_overlay_bar_toggles_the_fixed_scale(qtbot, document):
    from insight_desktop.gui.widgets.overlay_bar import OverlayBar

    bar = show_widget(qtbot, OverlayBar(document))
    assert not bar.fixed_scale.isChecked()
    bar.fixed_scale.click()
    assert document.overlay.heat_scale == "model"
    document.set_overlay(heat_scale="image")  # e.g. a session restored
    assert not bar.fixed_scale.isChecked()
