"""The image view: the photo with the concept heatmap, segmentation and residual layers over it.

Every layer is re-rendered from the Analysis already in the document (ARCHITECTURE rule 4), and
only the layers whose inputs changed: an opacity change is a ``setOpacity`` call, a concept
switch back to a recent concept reuses its cached display map. The RGBA arrays are made by
:mod:`insight_desktop.gui.layers`, so an exported PNG holds exactly what the screen shows.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsRectItem, QLabel, QStackedLayout, QWidget

from ..document import Region
from ..layers import (
    DisplayMapCache,
    colorbar_image,
    colormap_lut,
    composite,
    figure,
    heat_rgba,
    label_rgba,
    patch_activation,
    patch_region,
    residual_lut,
    residual_rgba,
)

HINT = "Open an image (Ctrl+O) or drop one here"
ZOOM_STEP = 1.25
#: drawing order of the layers over the photo (heat last: it is what the user is looking at)
LAYERS = ("segmentation", "residual", "heatmap")
REGION_COLOUR = "#00e5ff"
#: the residual layer has no opacity setting; this keeps the photo readable under a poor reconstruction
RESIDUAL_OPACITY = 0.7
RESIDUAL_LABEL = "reconstruction error ‖x − x̂‖"
#: the colour bars draw their colours over 0..BAR_STEPS in their own coordinates
BAR_STEPS = 256


class QtImageViewBox(pg.ViewBox):
    """A ViewBox whose left click selects instead of doing nothing, and whose Ctrl+left drag (or
    any left drag in rectangle mode) draws a selection rectangle instead of panning."""

    leftClicked = Signal(QPointF)     # view (image pixel) coordinates
    rectangleDrawn = Signal(QRectF)   # view coordinates, normalised

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rectangle_mode = False
        self._band = QGraphicsRectItem()
        self._band.setPen(_cosmetic_pen(REGION_COLOUR, Qt.PenStyle.DashLine))
        self._band.setZValue(20)
        self._band.hide()
        self.addItem(self._band, ignoreBounds=True)

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.leftClicked.emit(self.mapSceneToView(ev.scenePos()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        ctrl = bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if ev.button() != Qt.MouseButton.LeftButton or not (ctrl or self.rectangle_mode) or axis is not None:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        rect = QRectF(self.mapSceneToView(ev.buttonDownScenePos()), self.mapSceneToView(ev.scenePos())).normalized()
        if ev.isFinish():
            self._band.hide()
            self.rectangleDrawn.emit(rect)
        else:
            self._band.setRect(rect)
            self._band.show()


class ImageCanvas(QWidget):
    """Shows ``document.image`` and the layers of ``document.analysis``; clicks select regions and segments."""

    pixelClicked = Signal(int, int)   # y, x of a left click on the image
    hovered = Signal(str)             # readout for the status bar ("" when the cursor leaves the image)

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.render_seconds = 0.0
        self._maps = DisplayMapCache()
        self._residual: tuple[object, np.ndarray] | None = None  # (analysis, upsampled residual)
        self._keys: dict[str, object] = {}
        self._rgba: dict[str, np.ndarray] = {}
        self._bar_colormap: str | None = None
        self._last_hover = ""
        self._hover_pixel: tuple[int, int] | None = None  # under the cursor, for a readout made again on a rename

        self.view = pg.GraphicsLayoutWidget()
        self.view.setAcceptDrops(False)  # file drops go on to the main window
        self.viewbox = QtImageViewBox(lockAspect=True, invertY=True, enableMenu=True)
        self.view.ci.addItem(self.viewbox, 0, 0)
        self.photo_item = pg.ImageItem(axisOrder="row-major")
        self.viewbox.addItem(self.photo_item)
        self.items: dict[str, pg.ImageItem] = {}
        for z, name in enumerate(LAYERS, start=1):
            item = self.items[name] = pg.ImageItem(axisOrder="row-major")
            item.setZValue(z)
            item.hide()
            self.viewbox.addItem(item)
        self.region_item = QGraphicsRectItem()
        self.region_item.setPen(_cosmetic_pen(REGION_COLOUR))
        self.region_item.setZValue(10)
        self.region_item.hide()
        self.viewbox.addItem(self.region_item, ignoreBounds=True)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), width=14, label="relative activation",
                                        interactive=False, colorMapMenu=False)
        # the threshold slider's value on the heatmap's bar: heat below it is not drawn
        self.threshold_marker = pg.InfiniteLine(angle=0, movable=False, pen=_cosmetic_pen("#ffffff"))
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
        shown = [(self._rgba[n], self.items[n].opacity()) for n in LAYERS if self.items[n].isVisible()]
        return composite(image, shown)

    def export_image(self, path: str | Path) -> None:
        """Write the composite as a PNG with a colour bar (heatmap shown) and a class legend (segmentation shown)."""
        from ...core.fileio import atomic_output
        from ...core.tasks.render import class_colours, legend_png

        rgb = self.composite_rgb()
        doc, panels = self.document, []
        if self.items["heatmap"].isVisible():
            panels.append(colorbar_image(colormap_lut(doc.overlay.colormap), rgb.shape[0],
                                         doc.concept_name(doc.concept)))
        seg = doc.analysis.segmentation if doc.analysis is not None else None
        if seg is not None and self.items["segmentation"].isVisible():
            labels = seg.opaque_labels if doc.overlay.show_opaque else seg.labels
            n = len(seg.class_names)
            counts = np.bincount(labels.ravel(), minlength=n)[:n]
            colours = class_colours(n, background=seg.background_label is not None)
            keep = [i for i in range(n) if i not in doc.overlay.hidden_labels]
            if keep:
                panels.append(legend_png([seg.class_names[i] for i in keep], [colours[i] for i in keep],
                                         [int(counts[i]) for i in keep]))
        with atomic_output(path) as fh:
            figure(rgb, panels).save(fh, format="PNG")

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
        self._rgba.clear()
        if image is None:
            self.photo_item.clear()
            self._stack.setCurrentWidget(self.hint)
            self.document.view = None
        else:
            self.photo_item.setImage(image, autoLevels=False, levels=(0, 255))
            self._stack.setCurrentWidget(self.view)
            self.fit()
            self._restore_view()
        self._render()
        self._show_region(self.document.region)

    def _render(self, *_args) -> None:
        start = time.perf_counter()
        doc, a = self.document, self._analysis()
        ov = doc.overlay
        concept = doc.concept
        seg = a.segmentation if a is not None else None
        self._update_layer("heatmap", a is not None and concept >= 0 and ov.show_heatmap,
                           (a, concept, ov.colormap, ov.threshold),
                           lambda: heat_rgba(self._maps.get(a, concept), colormap_lut(ov.colormap), ov.threshold),
                           ov.heatmap_opacity)
        self._update_layer("segmentation", seg is not None and ov.show_segmentation,
                           (a, ov.show_opaque, ov.hidden_labels), lambda: self._segmentation_rgba(seg, ov),
                           ov.mask_opacity)
        self._update_layer("residual", a is not None and ov.show_residual, (a,),
                           lambda: residual_rgba(self._upsampled_residual(a)), RESIDUAL_OPACITY)
        self._update_colorbar()
        self.render_seconds = time.perf_counter() - start

    def _update_layer(self, name: str, shown: bool, key: tuple, make, opacity: float) -> None:
        """Show or hide one layer; its pixels are remade only when ``key`` (its inputs) changed."""
        item = self.items[name]
        if not shown:
            item.hide()
            return
        if self._keys.get(name) != key:
            rgba = self._rgba[name] = make()
            item.setImage(rgba, autoLevels=False, levels=(0, 255))
            self._keys[name] = key
        item.setOpacity(float(opacity))
        item.show()

    @staticmethod
    def _segmentation_rgba(seg, overlay) -> np.ndarray:
        from ...core.tasks.render import class_colours

        colours = class_colours(len(seg.class_names), background=seg.background_label is not None)
        labels = seg.opaque_labels if overlay.show_opaque else seg.labels
        return label_rgba(labels, colours, overlay.hidden_labels)

    def _upsampled_residual(self, a) -> np.ndarray:
        if self._residual is None or self._residual[0] is not a:
            residual = np.asarray(a.faithfulness.residual, dtype=np.float32)
            self._residual = (a, a.sampler().upsample_full(residual[None])[0])
        return self._residual[1]

    def _update_colorbar(self) -> None:
        shown = self.items["heatmap"].isVisible()
        self._place_bar(self.colorbar, shown, 1)
        overlay = self.document.overlay
        if shown and overlay.colormap != self._bar_colormap:
            lut = colormap_lut(overlay.colormap)
            self.colorbar.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut, name=overlay.colormap))
            self._bar_colormap = overlay.colormap
        self.threshold_marker.setValue(overlay.threshold * BAR_STEPS)  # the bar spans heat 0..1
        self.threshold_marker.setVisible(overlay.threshold > 0)
        residual = self._residual[1] if self._residual is not None and self.items["residual"].isVisible() else None
        self._place_bar(self.residual_bar, residual is not None, 2)
        if residual is not None:
            # the layer's colours are relative to the image's largest error: the bar says what that is
            self.residual_bar.setLevels((0.0, float(residual.max()) if residual.size else 0.0))

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


def _cosmetic_pen(colour: str, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = pg.mkPen(colour, width=2, style=style)
    pen.setCosmetic(True)  # the same width on screen at any zoom
    return pen
