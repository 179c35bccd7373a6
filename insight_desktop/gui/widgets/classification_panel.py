"""The classification panel: which classes the image looks like, and which concepts say so.

Two classifiers, when there are two: zero-shot over the user's classes (through the concepts,
with the opaque raw-feature path beside it for comparison) and the bundle's concept-bottleneck
probe. Selecting a class shows its exact decomposition: the bars add up to its logit.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .contribution_chart import ContributionChart
from .plain_text import escaped
from .wrapping_row import WrappedLabel

ZERO_SHOT = "Zero-shot (your classes)"
PROBE = "Probe (bundle)"
_CLASS = Qt.ItemDataRole.UserRole


class ClassificationPanel(QWidget):
    """A ranked table of classes for one classifier and the concept contributions to the selected class."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.method = QComboBox()
        self.method.setToolTip("Zero-shot compares the image with your class names; the probe is a classifier "
                               "trained on concepts and stored in the concept model")
        self.summary = WrappedLabel()
        self.summary.setTextFormat(Qt.TextFormat.RichText)  # always: _summary escapes what it quotes
        self.table = QTableWidget(0, 0)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.chart = ContributionChart(name_of=document.concept_name)
        top = QHBoxLayout()
        top.addWidget(QLabel("Classifier:"))
        top.addWidget(self.method, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.chart)
        self._syncing = False
        self._selected_name: str | None = None   # kept across analyses when the class is still there
        self.method.currentIndexChanged.connect(self._fill)
        self.table.itemSelectionChanged.connect(self._class_selected)
        self.chart.conceptClicked.connect(document.select_concept)
        document.analysisChanged.connect(self._on_analysis)
        document.conceptSelected.connect(self.chart.set_highlighted)
        document.conceptRenamed.connect(self.chart.refresh_names)
        self._on_analysis()

    def result(self):
        """The ClassificationResult shown now (zero-shot or probe), or None."""
        a = self.document.analysis
        if a is None:
            return None
        return a.probe if self.method.currentText() == PROBE else a.classification

    def selected_class(self) -> int:
        """Index (into the shown result's class_names) of the selected row, −1 for none."""
        items = self.table.selectedItems()
        return int(items[0].data(_CLASS)) if items else -1

    def select_class(self, class_index: int) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(_CLASS) == class_index:
                self.table.selectRow(row)
                return

    # ------------------------------------------------------------------ document → widgets
    def _on_analysis(self) -> None:
        a = self.document.analysis
        methods = [m for m, r in ((ZERO_SHOT, a and a.classification), (PROBE, a and a.probe)) if r is not None]
        current = self.method.currentText()
        self._syncing = True
        self.method.clear()
        self.method.addItems(methods)
        if current in methods:
            self.method.setCurrentText(current)
        self.method.setEnabled(len(methods) > 1)
        self._syncing = False
        self._fill()

    def _fill(self, *_) -> None:
        if self._syncing:
            return
        result = self.result()
        self._syncing = True
        self.table.clearContents()
        self.table.setRowCount(0)
        if result is None:
            self._syncing = False
            self.table.setColumnCount(0)
            a = self.document.analysis
            self.summary.setText("Open an image to classify it" if self.document.image is None else
                                 "No analysis yet" if a is None else
                                 "No classification: the image was analysed without classes; press Segment")
            self.chart.clear("No classification yet")
            return
        opaque = result.opaque_logits
        headers = ["#", "Class", "Probability", "Logit"] + (["Opaque path"] if opaque is not None else [])
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.horizontalHeaderItem(len(headers) - 1).setToolTip(
            "Probability from the raw backbone features, without concepts (for comparison)")
        opaque_p = _softmax(opaque) if opaque is not None else None
        order = np.argsort(-result.probabilities, kind="stable")
        self.table.setRowCount(len(order))
        for row, c in enumerate(order):
            cells = [str(row + 1), result.class_names[c], f"{100 * result.probabilities[c]:.1f} %",
                     f"{result.logits[c]:.3f}"] + ([f"{100 * opaque_p[c]:.1f} %"] if opaque_p is not None else [])
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(_CLASS, int(c))
                if col != 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.summary.setText(_summary(result))
        names = result.class_names
        self.select_class(names.index(self._selected_name) if self._selected_name in names else result.predicted)
        self._syncing = False

    def _class_selected(self) -> None:
        result, c = self.result(), self.selected_class()
        if result is None or c < 0:
            self.chart.clear("Select a class to see which concepts speak for it")
            return
        if not self._syncing:
            self._selected_name = result.class_names[c]
        why = result.explain(c)
        # The probe has no bias (all zeros): no bar for it.
        bias = why.bias if result.opaque_logits is not None or why.bias != 0 else None
        self.chart.set_contributions(why.contributions, bias,
                                     f"Why '{why.name}': logit {why.logit:.3f} ({100 * why.probability:.1f} %)")
        self.chart.set_highlighted(self.document.concept)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - np.max(logits))
    return e / e.sum()


def _summary(result) -> str:
    # Rich text for the bold; the class names in it are escaped (a session file may carry any name).
    text = f"Through the concepts: <b>{escaped(result.predicted_name)}</b> ({100 * result.probabilities.max():.1f} %)"
    if result.opaque_predicted is not None:
        same = result.opaque_predicted == result.predicted
        text += f"; the opaque features {'agree' if same else 'say'}"
        text += "" if same else f" <b>{escaped(result.class_names[result.opaque_predicted])}</b>"
    return text
