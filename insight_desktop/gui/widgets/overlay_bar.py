"""The overlay controls: heatmap colormap, opacity, threshold and scale, and the mask opacity.

Every control only replaces the Document's :class:`~insight_desktop.gui.document.OverlaySettings`;
the image view re-renders from data it already has (showing is not computing).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QWidget
from superqt import QLabeledDoubleSlider

from ..document import COLORMAPS, Document


def _slider(tooltip: str) -> QLabeledDoubleSlider:
    s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    s.setRange(0.0, 1.0)
    s.setSingleStep(0.05)
    s.setDecimals(2)
    s.setMinimumWidth(44)  # with the other controls they must fit a 1366-pixel screen at 200 % (683 logical px)
    s.setToolTip(tooltip)
    return s


class OverlayBar(QWidget):
    """Colormap, heatmap opacity, heat threshold and mask opacity, kept in step with the Document."""

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.colormap.setToolTip("Colormap of the concept heatmap")
        self.opacity = _slider("Opacity of the concept heatmap ([ and ] change it)")
        self.threshold = _slider("Heat below this share of the map's maximum is not drawn")
        self.mask_opacity = _slider("Opacity of the segmentation mask")
        self.fixed_scale = QCheckBox("Fixed")
        self.fixed_scale.setToolTip(
            "Colour the heat on a fixed scale: 1 is the concept's strongest activation in the model's training "
            "data, so the same colour means the same activation in every image and a weak activation looks weak.\n"
            "Off: 1 is the concept's strongest activation in this image.")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        for label, widget in (("Colormap", self.colormap), ("Opacity", self.opacity),
                              ("Threshold", self.threshold), ("Mask", self.mask_opacity)):
            layout.addWidget(QLabel(label))
            layout.addWidget(widget)
            if widget is self.threshold:
                layout.addWidget(self.fixed_scale)  # it belongs with the heatmap's controls
        self._sync()
        self.colormap.currentTextChanged.connect(self._on_colormap)
        self.opacity.valueChanged.connect(self._on_opacity)
        self.threshold.valueChanged.connect(self._on_threshold)
        self.mask_opacity.valueChanged.connect(self._on_mask_opacity)
        self.fixed_scale.toggled.connect(self._on_fixed_scale)
        document.overlayChanged.connect(self._sync)

    @Slot()
    def _sync(self) -> None:
        """Show the Document's settings (after a session restore or a shortcut) without echoing back."""
        o = self.document.overlay
        for widget, value in ((self.opacity, o.heatmap_opacity), (self.threshold, o.threshold),
                              (self.mask_opacity, o.mask_opacity)):
            if abs(widget.value() - value) > 1e-6:
                widget.blockSignals(True)
                widget.setValue(value)
                widget.blockSignals(False)
        if self.fixed_scale.isChecked() != (o.heat_scale == "model"):
            self.fixed_scale.blockSignals(True)
            self.fixed_scale.setChecked(o.heat_scale == "model")
            self.fixed_scale.blockSignals(False)
        if self.colormap.currentText() != o.colormap:
            self.colormap.blockSignals(True)
            self.colormap.setCurrentText(o.colormap)
            self.colormap.blockSignals(False)

    @Slot(str)
    def _on_colormap(self, name: str) -> None:
        self.document.set_overlay(colormap=name)

    @Slot(float)
    def _on_opacity(self, value: float) -> None:
        self.document.set_overlay(heatmap_opacity=round(float(value), 3))

    @Slot(float)
    def _on_threshold(self, value: float) -> None:
        self.document.set_overlay(threshold=round(float(value), 3))

    @Slot(float)
    def _on_mask_opacity(self, value: float) -> None:
        self.document.set_overlay(mask_opacity=round(float(value), 3))

    @Slot(bool)
    def _on_fixed_scale(self, on: bool) -> None:
        self.document.set_overlay(heat_scale="model" if on else "image")
