"""The image view: the photo with the concept heatmap, segmentation and residual layers over it.

Every layer is re-rendered from the Analysis already in the document (ARCHITECTURE rule 4), and
only the layers whose inputs changed: an opacity change is a ``setOpacity`` call, a concept
switch back to a recent concept reuses its cached display map. The photo and its layers are
drawn at display size (:func:`~insight_desktop.gui.layers.display_size`, at most 2048 px long)
and placed in image coordinates, so clicks and hovers still read image pixels; zoomed in, a
full-resolution tile of the photo covers the view. Layers are made by :mod:`.canvas_layers`
(from the same functions of :mod:`insight_desktop.gui.layers` an exported PNG is made with, at
full size).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import QGraphicsRectItem, QLabel, QStackedLayout, QWidget

from ..document import Region
from ..layers import (
    colormap_lut,
    composite,
    display_size,
    patch_activation,
    patch_region,
    photo_preview,
    residual_lut,
)
from .canvas_layers import LAYERS, CanvasLayers, full_resolution_layers, heat_scale_label, write_figure
from .image_viewbox import REGION_COLOUR, QtImageViewBox, cosmetic_pen

HINT = "Open an image (Ctrl+O) or drop one here"
ZOOM_STEP = 1.25
#: the residual layer has no opacity setting; this keeps the photo readable under a poor reconstruction
RESIDUAL_OPACITY = 0.7
RESIDUAL_LABEL = "reconstruction error ‖x − x̂‖"
#: the colour bars draw their colours over 0..BAR_STEPS in their own coordinates
BAR_STEPS = 256
#: a full-resolution tile of the photo replaces its display copy where one copy pixel would span
#: more than this many screen pixels (zoomed in), made this long after the view stops moving
DETAIL_ZOOM = 1.25
DETAIL_DELAY_MS = 60


class ImageCanvas(QWidget):
    """Shows ``document.image`` and the layers of ``document.analysis``; clicks select regions and segments."""

    pixelClicked = Signal(int, int)   # y, x of a left click on the image
    hovered = Signal(str)             # readout for the status bar ("" when the cursor leaves the image)

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.render_seconds = 0.0
        self.layers = CanvasLayers(self)
        self.display_size: tuple[int, int] = (1, 1)  # (H, W) the photo copy and the layers are drawn at
        self._photo: np.ndarray | None = None      # the photo copy drawn (the image itself when small)
        self._keys: dict[str, object] = {}         # layer → inputs of the image it shows
        self._bar_colormap: str | None = None
        self._last_hover = ""
        self._hover_pixel: tuple[int, int] | None = None  # under the cursor, for a readout made again on a rename

        self.view = pg.GraphicsLayoutWidget()
        self.view.setAcceptDrops(False)  # file drops go on to the main window
        self.viewbox = QtImageViewBox(lockAspect=True, invertY=True, enableMenu=True)
        self.view.ci.addItem(self.viewbox, 0, 0)
        self.photo_item = pg.ImageItem(axisOrder="row-major")
        self.viewbox.addItem(self.photo_item)
        self.detail_item = pg.ImageItem(axisOrder="row-major")  # full resolution where zoomed in
        self.detail_item.setZValue(0.5)
        self.detail_item.hide()
        self.viewbox.addItem(self.detail_item)
        self._detail_timer = QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(DETAIL_DELAY_MS)
        self._detail_timer.timeout.connect(self._update_detail)
        self.items: dict[str, pg.ImageItem] = {}
        for z, name in enumerate(LAYERS, start=1):
            item = self.items[name] = pg.ImageItem(axisOrder="row-major")
            item.setZValue(z)
            item.hide()
            self.viewbox.addItem(item)
        self.region_item = QGraphicsRectItem()
        self.region_item.setPen(cosmetic_pen(REGION_COLOUR))
        self.region_item.setZValue(10)
        self.region_item.hide()
        self.viewbox.addItem(self.region_item, ignoreBounds=True)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), width=14, label="relative activation",
                                        interactive=False, colorMapMenu=False)
        # the threshold slider's value on the heatmap's bar: heat below it is not drawn
        self.threshold_marker = pg.InfiniteLine(angle=0, movable=False, pen=cosmetic_pen("#ffffff"))
        self.threshold_marker.setZValue(10)
        self.colorbar.addItem(self.threshold_marker)
        self.residual_bar = pg.ColorBarItem(values=(0.0, 1.0), width=14, label=RESIDUAL_LABEL,
                                            interactive=False, colorMapMenu=False)
        lut = residual_lut(BAR_STEPS)
        self.residual_bar.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut, name="residual"))

        self.hint = QLabel(HINT)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid); font-size: 14pt;")
        self._stack = QStackedLayout(self)
        self._stack.addWidget(self.hint)
        self._stack.addWidget(self.view)

        self.viewbox.leftClicked.connect(self._on_left_click)
        self.viewbox.rectangleDrawn.connect(self._on_rectangle)
        self.viewbox.sigRangeChanged.connect(self._remember_view)
        self.viewbox.sigRangeChanged.connect(self._detail_timer.start)
        self.layers.ready.connect(self._on_layer_ready)
        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        document.imageChanged.connect(self._on_image_changed)
        document.analysisChanged.connect(self._render)
        document.conceptSelected.connect(self._render)
        document.overlayChanged.connect(self._render)
        document.regionSelected.connect(self._show_region)
        document.conceptRenamed.connect(self._on_renamed)
        self._on_image_changed()

    # ------------------------------------------------------------------ view commands
    def fit(self) -> None:
        """Show the whole image."""
        if self.document.image is not None:
            h, w = self.document.image.shape[:2]
            self.viewbox.setRange(QRectF(0, 0, w, h), padding=0)

    def actual_size(self) -> None:
        """One image pixel per screen pixel, keeping the centre of the view."""
        centre = self.viewbox.viewRect().center()
        w, h = self.viewbox.width(), self.viewbox.height()  # the scene is unscaled: scene units are pixels
        self.viewbox.setRange(QRectF(centre.x() - w / 2, centre.y() - h / 2, w, h), padding=0)

    def zoom_in(self) -> None:
        self.viewbox.scaleBy((1 / ZOOM_STEP, 1 / ZOOM_STEP))

    def zoom_out(self) -> None:
        self.viewbox.scaleBy((ZOOM_STEP, ZOOM_STEP))

    def _remember_view(self, *_args) -> None:
        """Keep the visible area in the document, where a saved session finds it."""
        if self.document.image is None:
            self.document.view = None
            return
        r = self.viewbox.viewRect()
        self.document.view = {"rect": [round(v, 2) for v in (r.x(), r.y(), r.width(), r.height())]}

    def _restore_view(self) -> None:
        """Show the zoom and pan a reopened session asked for, once its image is shown."""
        wanted = self.document.view_to_restore
        if wanted is None or wanted[0] != self.document.image_path:
            return
        self.document.view_to_restore = None
        rect = wanted[1].get("rect")
        if (isinstance(rect, list) and len(rect) == 4 and all(isinstance(v, (int, float)) for v in rect)
                and rect[2] > 0 and rect[3] > 0):  # a hand-edited view that is not a rectangle keeps the fit
            self.viewbox.setRange(QRectF(*(float(v) for v in rect)), padding=0)

    def set_rectangle_mode(self, on: bool) -> None:
        """With it on, a plain left drag draws a selection rectangle (Ctrl+drag always does)."""
        self.viewbox.rectangle_mode = bool(on)

    def image_to_view(self, y: float, x: float) -> QPointF:
        """Position in ``self.view``'s viewport of image point (y, x) (for tests and tools)."""
        scene = self.viewbox.mapViewToScene(QPointF(x, y))
        return QPointF(self.view.mapFromScene(scene))

    # ------------------------------------------------------------------ output
    def composite_rgb(self) -> np.ndarray:
        """The photo with the visible layers composited at full image resolution (RGB uint8)."""
        image = self.document.image
        if image is None:
            raise ValueError("there is no image to composite")
        shown = {n: self.items[n].opacity() for n in LAYERS if self.items[n].isVisible()}
        return composite(image, full_resolution_layers(self.document, shown))

    def export_image(self, path: str | Path) -> None:
        """Write the composite as a PNG with a colour bar (heatmap shown) and a class legend (segmentation shown)."""
        write_figure(self.document, self.composite_rgb(), self.items["heatmap"].isVisible(),
                     self.items["segmentation"].isVisible(), path)

    # ------------------------------------------------------------------ rendering
    def _analysis(self):
        """The document's analysis if it belongs to the image shown (else None)."""
        a, image = self.document.analysis, self.document.image
        if a is None or image is None or tuple(a.image_size) != image.shape[:2]:
            return None
        return a

    def _on_image_changed(self) -> None:
        image = self.document.image
        self._keys.clear()
        for item in self.items.values():
            item.hide()
            item.clear()  # the last image's layers must not show over this one, not even for a moment
        self.detail_item.hide()
        self.detail_item.clear()
        if image is None:
            self._photo = None
            self.photo_item.clear()
            self._stack.setCurrentWidget(self.hint)
            self.document.view = None
        else:
            h, w = image.shape[:2]
            self.display_size = display_size((h, w))
            preview = self.document.preview
            self._photo = preview if preview is not None else photo_preview(image)
            self.layers.reset(self.display_size)
            self.photo_item.setImage(self._photo, autoLevels=False, levels=None)  # uint8 as is: no rescaling pass
            self.photo_item.setRect(QRectF(0, 0, w, h))
            self._stack.setCurrentWidget(self.view)
            self.fit()
            self._restore_view()
        self._render()
        self._show_region(self.document.region)

    def _render(self, *_args) -> None:
        start = time.perf_counter()
        doc, a, layers = self.document, self._analysis(), self.layers
        ov = doc.overlay
        concept = doc.concept
        seg = a.segmentation if a is not None else None
        self._update_layer("heatmap", a is not None and concept >= 0 and ov.show_heatmap,
                           (a, concept, ov.colormap, ov.threshold, ov.heat_scale),
                           lambda: layers.heat(a, concept, ov, doc.catalog), ov.heatmap_opacity)
        self._update_layer("segmentation", seg is not None and ov.show_segmentation,
                           (a, ov.show_opaque, ov.hidden_labels), lambda: layers.segmentation(seg, ov),
                           ov.mask_opacity)
        self._update_layer("residual", a is not None and ov.show_residual, (a,),
                           lambda: layers.residual(a), RESIDUAL_OPACITY)
        self._update_colorbar()
        self.render_seconds = time.perf_counter() - start

    def _update_layer(self, name: str, shown: bool, key: tuple, make, opacity: float) -> None:
        """Show or hide one layer; its pixels are remade only when ``key`` (its inputs) changed.

        A big layer is made on a thread: until it arrives the layer keeps showing what it showed
        (the last concept's heat, say), or nothing after a new image."""
        item = self.items[name]
        if not shown:
            item.hide()
            self.layers.forget(name)
            return
        if self._keys.get(name) != key and self.layers.wanted(name) != key:
            rgba = self.layers.request(name, key, make)
            if rgba is not None:
                self._set_layer(name, key, rgba)
        item.setOpacity(float(opacity))
        item.show()

    def _set_layer(self, name: str, key: object, rgba: np.ndarray) -> None:
        image = self.document.image
        if image is None:
            return
        item = self.items[name]
        item.setImage(rgba, autoLevels=False, levels=None)  # uint8 as is: no rescaling pass
        item.setRect(QRectF(0, 0, image.shape[1], image.shape[0]))  # display pixels over image pixels
        self._keys[name] = key
        self.layers.forget(name)

    def _on_layer_ready(self, name: str, key: object, rgba: np.ndarray) -> None:
        self._set_layer(name, key, rgba)
        if name == "residual":
            self._update_colorbar()

    def layer_image(self, name: str) -> np.ndarray | None:
        """The RGBA drawn for layer ``name`` (display size), None before one was made."""
        return self.items[name].image if self._keys.get(name) is not None else None

    def _update_colorbar(self) -> None:
        shown = self.items["heatmap"].isVisible()
        self._place_bar(self.colorbar, shown, 1)
        overlay = self.document.overlay
        if shown and overlay.colormap != self._bar_colormap:
            lut = colormap_lut(overlay.colormap)
            self.colorbar.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut, name=overlay.colormap))
            self._bar_colormap = overlay.colormap
        if shown:
            label = heat_scale_label(self.document)
            if self.colorbar.getAxis("left").labelText != label:
                self.colorbar.setLabel("left", label)
        self.threshold_marker.setValue(overlay.threshold * BAR_STEPS)  # the bar spans heat 0..1
        self.threshold_marker.setVisible(overlay.threshold > 0)
        residual = self.items["residual"].isVisible() and self._keys.get("residual") is not None
        self._place_bar(self.residual_bar, residual, 2)
        if residual:
            # the layer's colours are relative to the image's largest error: the bar says what that is
            self.residual_bar.setLevels((0.0, self.layers.residual_top))

    def _update_detail(self) -> None:
        """Zoomed in past the display copy's resolution: cover the visible part of the photo with
        its full-resolution pixels (a crop of at most about the view's size), else hide the tile."""
        image, photo = self.document.image, self._photo
        if image is None or photo is None or photo.shape[:2] == image.shape[:2] or not self.view.isVisible():
            self.detail_item.hide()
            return
        h, w = image.shape[:2]
        ratio = w / photo.shape[1]                                                   # image pixels per copy pixel
        r = self.viewbox.viewRect()  # the scene is unscaled: the viewbox's width is in screen pixels
        per_device = r.width() / max(self.viewbox.width(), 1.0) / max(self.devicePixelRatioF(), 1.0)
        if per_device <= 0 or ratio / per_device <= DETAIL_ZOOM:
            self.detail_item.hide()
            return
        top, left = max(0, math.floor(r.top())), max(0, math.floor(r.left()))
        bottom, right = min(h, math.ceil(r.bottom())), min(w, math.ceil(r.right()))
        if bottom <= top or right <= left:
            self.detail_item.hide()
            return
        step = max(1, math.floor(per_device))  # no more pixels than the screen shows
        tile = np.ascontiguousarray(image[top:bottom:step, left:right:step])
        self.detail_item.setImage(tile, autoLevels=False, levels=None)  # uint8 as is: no rescaling pass
        self.detail_item.setRect(QRectF(left, top, tile.shape[1] * step, tile.shape[0] * step))
        self.detail_item.show()

    def _place_bar(self, bar: pg.ColorBarItem, shown: bool, column: int) -> None:
        in_layout = bar.scene() is not None
        if shown and not in_layout:
            self.view.ci.addItem(bar, 0, column)
        elif not shown and in_layout:
            self.view.ci.removeItem(bar)  # hiding alone would keep its space

    def _show_region(self, region: Region | None) -> None:
        if region is None or self.document.image is None:
            self.region_item.hide()
            return
        width, height = region.right - region.left, region.bottom - region.top
        self.region_item.setRect(QRectF(region.left, region.top, width, height))
        self.region_item.show()

    # ------------------------------------------------------------------ mouse
    def _pixel_at(self, point: QPointF) -> tuple[int, int] | None:
        image = self.document.image
        if image is None:
            return None
        y, x = math.floor(point.y()), math.floor(point.x())
        if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
            return y, x
        return None

    def _on_left_click(self, point: QPointF) -> None:
        pixel = self._pixel_at(point)
        if pixel is None:
            return
        y, x = pixel
        self.pixelClicked.emit(y, x)
        a = self._analysis()
        if a is None:
            return
        self.document.select_region(patch_region(a, y, x))
        if a.segmentation is not None:
            labels = a.segmentation.opaque_labels if self.document.overlay.show_opaque else a.segmentation.labels
            self.document.select_segment(int(labels[y, x]))

    def _on_rectangle(self, rect: QRectF) -> None:
        image = self.document.image
        if image is None or self._analysis() is None:
            return
        h, w = image.shape[:2]
        top, left = min(max(math.floor(rect.top()), 0), h - 1), min(max(math.floor(rect.left()), 0), w - 1)
        bottom = min(max(math.ceil(rect.bottom()), top + 1), h)
        right = min(max(math.ceil(rect.right()), left + 1), w)
        self.document.select_region(Region(top, left, bottom, right))

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        pixel = self._pixel_at(self.viewbox.mapSceneToView(scene_pos))
        self._hover_pixel = pixel
        self._hover(self._readout(*pixel) if pixel is not None else "")

    def leaveEvent(self, event) -> None:
        self._hover_pixel = None
        self._hover("")
        super().leaveEvent(event)

    def _on_renamed(self, concept: int) -> None:
        """The status-bar readout names the selected concept: make it again where the cursor rests."""
        pixel, image = self._hover_pixel, self.document.image
        if pixel is not None and image is not None and pixel[0] < image.shape[0] and pixel[1] < image.shape[1]:
            self._hover(self._readout(*pixel))

    def _hover(self, text: str) -> None:
        if text != self._last_hover:  # moves over the margins would otherwise clear the status bar over and over
            self._last_hover = text
            self.hovered.emit(text)

    def _readout(self, y: int, x: int) -> str:
        parts = [f"x {x}, y {y}"]
        a, doc = self._analysis(), self.document
        if a is not None:
            r, c = a.patch_at(y, x)
            parts.append(f"patch ({r}, {c})")
            if doc.concept >= 0:
                parts.append(f"{doc.concept_name(doc.concept)} {patch_activation(a, r, c, doc.concept):.2f}")
            if a.segmentation is not None:
                labels = a.segmentation.opaque_labels if doc.overlay.show_opaque else a.segmentation.labels
                parts.append(a.segmentation.class_names[int(labels[y, x])])
        return " · ".join(parts)
