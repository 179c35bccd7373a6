"""The image view's ViewBox: left click selects, Ctrl+drag (or any drag in rectangle mode) draws a rectangle."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsRectItem

REGION_COLOUR = "#00e5ff"


class QtImageViewBox(pg.ViewBox):
    """A ViewBox whose left click selects instead of doing nothing, and whose Ctrl+left drag (or
    any left drag in rectangle mode) draws a selection rectangle instead of panning."""

    leftClicked = Signal(QPointF)     # view (image pixel) coordinates
    rectangleDrawn = Signal(QRectF)   # view coordinates, normalised

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rectangle_mode = False
        self._band = QGraphicsRectItem()
        self._band.setPen(cosmetic_pen(REGION_COLOUR, Qt.PenStyle.DashLine))
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


def cosmetic_pen(colour: str, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = pg.mkPen(colour, width=2, style=style)
    pen.setCosmetic(True)  # the same width on screen at any zoom
    return pen
