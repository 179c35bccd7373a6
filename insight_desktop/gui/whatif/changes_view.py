"""What changed when concepts were switched off: the pixels whose label changed, highlighted on
the canvas, and the class shares and class scores before → after, in a panel.

The highlight is an image item of its own over the canvas's layers (made at the canvas's display
size from the same nearest-label sampling the segmentation layer uses), so the canvas needs no
new layer kind: it is drawn while "Highlight changed pixels" is on and something changed.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..layers import nearest_labels
from ..widgets.wrapping_row import WrappingRow
from .switches import CONCEPTS_ONLY, WITH_RESIDUAL, WhatIfView, residual_available

#: changed pixels: a light magenta wash (the new label's colour shows through) inside a solid
#: magenta border (the class colours are muted; magenta stands out against them)
CHANGED_RGBA = (255, 0, 200, 70)
CHANGED_BORDER_RGBA = (255, 0, 200, 255)
#: drawn over the segmentation, residual and heatmap layers, under the region outline
CHANGED_Z = 5


def changed_rgba(changed: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool [H, W] → RGBA uint8 at ``size`` (h, w): :data:`CHANGED_RGBA` where a label changed,
    :data:`CHANGED_BORDER_RGBA` on the changed pixels next to an unchanged one (or the edge)."""
    mask = nearest_labels(np.asarray(changed, dtype=np.uint8), size).astype(bool)
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    out = np.zeros((*mask.shape, 4), dtype=np.uint8)
    out[mask] = CHANGED_BORDER_RGBA
    out[inner] = CHANGED_RGBA
    return out


class ChangedLayer:
    """The highlight of changed pixels over an :class:`~..widgets.image_view.ImageCanvas`."""

    def __init__(self, canvas):
        self.canvas = canvas
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setZValue(CHANGED_Z)
        self.item.hide()
        canvas.viewbox.addItem(self.item)
        self.enabled = True
        self._view: WhatIfView | None = None

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        self.show(self._view)

    def show(self, view: WhatIfView | None) -> None:
        self._view = view
        image = self.canvas.document.image
        if (not self.enabled or view is None or view.changed is None or not view.changed_pixels or image is None
                or view.changed.shape != image.shape[:2]):
            self.item.hide()
            return
        self.item.setImage(changed_rgba(view.changed, self.canvas.display_size), autoLevels=False, levels=None)
        self.item.setRect(QRectF(0, 0, image.shape[1], image.shape[0]))
        self.item.show()

    def image(self) -> np.ndarray | None:
        """The RGBA drawn (display size), None while hidden."""
        return self.item.image if self.item.isVisible() else None


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(np.asarray(logits, dtype=np.float64) - np.max(logits))
    return e / e.sum()


def _percent(v: float) -> str:
    return f"{100.0 * v:.1f} %"


class ChangesPanel(QWidget):
    """Mode, switched-off concepts, "Switch off all rejected" / "Restore all", and the class shares
    and class scores before → after."""

    modeChosen = Signal(bool)          # True: concepts + residual
    restoreRequested = Signal()
    rejectedRequested = Signal()
    highlightToggled = Signal(bool)

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.summary = QLabel("Nothing switched off")
        self.summary.setWordWrap(True)
        self.only = QRadioButton(CONCEPTS_ONLY)
        self.only.setToolTip("x̂ without them: the prediction from the remaining concepts and the bias only")
        self.residual = QRadioButton(WITH_RESIDUAL)
        self.residual.setToolTip("x − their contributions: the features with only those concepts taken out "
                                 "(what the concepts do not explain stays); the opaque prediction shows it. "
                                 "Needs an analysis that keeps x − x̂ per patch")
        self.only.setChecked(True)
        self.highlight = QCheckBox("Highlight changed pixels")
        self.highlight.setChecked(True)
        self.rejected = QPushButton("Switch Off All Rejected")
        self.rejected.setToolTip("Switch off every concept rejected in review (one undo step)")
        self.restore = QPushButton("Restore All")
        self.restore.setToolTip("Switch every concept on again and show all levels (one undo step)")
        self.shares = QTableWidget(0, 3)
        self.shares.setHorizontalHeaderLabels(["Class", "Before", "After"])
        self.shares.verticalHeader().hide()
        self.shares.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.shares.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(40)
        self.shares.setToolTip("Share of the image's pixels per class, with nothing switched off and now")
        self.shares.setMinimumHeight(120)
        self.scores = QLabel()
        self.scores.setWordWrap(True)
        self.scores.setTextFormat(Qt.TextFormat.PlainText)

        modes = QVBoxLayout()
        modes.setSpacing(2)
        modes.addWidget(self.only)
        modes.addWidget(self.residual)
        buttons = WrappingRow(self.rejected, self.restore)  # a narrow dock wraps them rather than scrolls
        box = QVBoxLayout(self)
        box.addWidget(self.summary)
        box.addLayout(modes)
        box.addWidget(self.highlight)
        box.addWidget(buttons)
        box.addWidget(self.shares, 1)
        box.addWidget(self.scores)

        self.residual.toggled.connect(self._on_mode)
        self.restore.clicked.connect(self.restoreRequested)
        self.rejected.clicked.connect(self.rejectedRequested)
        self.highlight.toggled.connect(self.highlightToggled)
        self.show_view(None)

    def _on_mode(self, on: bool) -> None:
        self.modeChosen.emit(bool(on))

    def show_view(self, view: WhatIfView | None) -> None:
        """Fill the panel from ``view`` (None: no analysis)."""
        for button, on in ((self.residual, view is not None and view.state.keep_residual),
                           (self.only, view is None or not view.state.keep_residual)):
            button.blockSignals(True)
            button.setChecked(on)
            button.blockSignals(False)
        self.restore.setEnabled(view is not None and (bool(view.removed.size) or view.state.keep_residual))
        self.residual.setEnabled(residual_available(view.base if view is not None else None)
                                 or (view is not None and view.state.keep_residual))
        if view is None:
            self.summary.setText("No analysis yet")
            self.shares.setRowCount(0)
            self.scores.setText("")
            return
        self.summary.setText(self.summary_text(view))
        names, before, after = view.class_names, view.shares_before, view.shares_after
        rows = [i for i in range(len(names)) if before[i] > 0 or after[i] > 0]
        self.shares.setRowCount(len(rows))
        for r, i in enumerate(rows):
            cells = (names[i], _percent(before[i]), _percent(after[i]))
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == 2 and abs(after[i] - before[i]) >= 0.0005:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.shares.setItem(r, c, item)
        self.scores.setText(self.scores_text(view))

    @staticmethod
    def summary_text(view: WhatIfView) -> str:
        n = int(view.removed.size)
        parts = [f"Shown: {view.state.mode}."]
        if n:
            parts.append(f"{n} concept{'s' * (n != 1)} switched off (z = 0)"
                         + (f", levels above {view.state.level} included" if view.state.level is not None else "")
                         + ".")
        else:
            parts.append("Nothing switched off.")
        if view.changed is not None:
            share = view.changed_pixels / max(view.changed.size, 1)
            parts.append(f"Label changed on {view.changed_pixels:,} pixels ({_percent(share)}).")
        return " ".join(parts)

    @staticmethod
    def scores_text(view: WhatIfView) -> str:
        """Zero-shot classification before → after: the top classes, logit and probability."""
        cls, before, after = view.analysis.classification, view.logits_before, view.logits_after
        if cls is None or before is None or after is None:
            return ""
        p_before, p_after = _softmax(before), _softmax(after)
        path = "from the features, opaque" if view.state.keep_residual else "through concepts"
        lines = [f"Classification (zero-shot, {path}) before → after:"]
        for c in np.argsort(-after, kind="stable")[:5]:
            lines.append(f"  {cls.class_names[c]}: {before[c]:.2f} → {after[c]:.2f}  "
                         f"({_percent(p_before[c])} → {_percent(p_after[c])})")
        return "\n".join(lines)
