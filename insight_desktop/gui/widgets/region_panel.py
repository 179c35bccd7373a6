"""The concepts at a clicked patch (or in a Ctrl+dragged rectangle), strongest first.

Reads the sparse codes already in the Analysis: a concept's strength in the region is its
largest code over the region's patches (the image-level rule of docs/method.md §3, restricted to them).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QItemSelectionModel, Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .qt_concept_tree_model import CONCEPT_ROLE
from .wrapping_row import WrappedLabel

EMPTY_TEXT = "Click the image (Ctrl+drag for a rectangle) to see the concepts there"
NO_ANALYSIS_TEXT = "Analyse an image, then click it to see the concepts there"
#: a large rectangle can touch thousands of concepts; the table lists the strongest this many
MAX_ROWS = 1000
COLUMNS = ("Concept", "Activation", "Level", "Parents")


def concepts_in_patches(codes, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    """Concepts firing on the patches ``rows × cols`` of ``codes`` (PatchCodes) and their largest
    code there: ``(concepts int64, values float32)``, largest first (ties: lower id first)."""
    h, w = codes.grid
    r = np.arange(h)[rows]
    c = np.arange(w)[cols]
    patches = (r[:, None] * w + c[None, :]).ravel()
    starts, ends = codes.indptr[patches], codes.indptr[patches + 1]
    lengths = ends - starts
    if not lengths.sum():
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    # Positions of every stored entry of those patches: each patch's run starts at its indptr.
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    entries = offsets + np.arange(int(lengths.sum()))
    concepts = codes.indices[entries].astype(np.int64)
    values = codes.values[entries]
    order = np.lexsort((-values, concepts))           # by concept, largest value first
    first = np.r_[True, concepts[order][1:] != concepts[order][:-1]]
    concepts, values = concepts[order][first], values[order][first]
    ranked = np.lexsort((concepts, -values))
    return concepts[ranked], values[ranked]


def region_title(rows: slice, cols: slice) -> str:
    n = (rows.stop - rows.start) * (cols.stop - cols.start)
    if n == 1:
        return f"Patch ({rows.start}, {cols.start})"
    return f"Region {rows.start}–{rows.stop - 1} × {cols.start}–{cols.stop - 1} ({n} patches)"


class RegionPanel(QWidget):
    """Lists the concepts active in ``document.region``; clicking a row selects that concept."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self._document = document
        self._syncing = False  # set while the table follows the document, so no selection echoes back

        self.empty = QLabel(EMPTY_TEXT, self)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.title = WrappedLabel(parent=self)  # "— the strongest 1000 of 1234 concepts" must not widen the panel
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)  # a dense list
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(1, 72)
        header.resizeSection(2, 44)

        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table, 1)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self.stack)

        self.table.itemSelectionChanged.connect(self._on_table_selection)
        document.regionSelected.connect(self._refresh)
        document.analysisChanged.connect(self._refresh)
        document.conceptRenamed.connect(self._refresh)  # a listed concept or parent may be the one renamed
        document.conceptSelected.connect(self._follow_document)
        self._refresh()

    def concepts(self) -> list[int]:
        """The concepts listed, top to bottom."""
        return [int(self.table.item(r, 0).data(CONCEPT_ROLE)) for r in range(self.table.rowCount())]

    # ------------------------------------------------------------------ rendering
    def _refresh(self, *_args) -> None:  # from three signals with different arguments; all same-thread
        doc = self._document
        if doc.region is None or doc.analysis is None or doc.catalog is None:
            self.empty.setText(EMPTY_TEXT if doc.analysis is not None else NO_ANALYSIS_TEXT)
            self.table.setRowCount(0)
            self.stack.setCurrentIndex(0)
            return
        rows, cols = doc.region_patches(doc.region)
        concepts, values = concepts_in_patches(doc.analysis.codes, rows, cols)
        title = region_title(rows, cols)
        if not concepts.size:
            title += " — no concept fires here"
        elif concepts.size > MAX_ROWS:
            title += f" — the strongest {MAX_ROWS} of {concepts.size} concepts"
        self.title.setText(title)
        self._fill(concepts[:MAX_ROWS], values[:MAX_ROWS])
        self.stack.setCurrentIndex(1)
        self._follow_document(doc.concept)

    def _fill(self, concepts: np.ndarray, values: np.ndarray) -> None:
        doc = self._document
        catalog = doc.catalog
        self._syncing = True
        try:
            self.table.clearContents()
            self.table.setRowCount(len(concepts))
            for row, (j, v) in enumerate(zip(concepts.tolist(), values.tolist())):
                parents = ", ".join(doc.concept_name(p) for p, _ in catalog.parents(j)[:2])
                texts = (doc.concept_name(j), f"{v:.3g}", str(catalog.level(j)), parents)
                for column, text in enumerate(texts):
                    item = QTableWidgetItem(text)
                    item.setData(CONCEPT_ROLE, j)
                    if column in (1, 2):
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(row, column, item)
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ selection, both ways
    @Slot()
    def _on_table_selection(self) -> None:
        if self._syncing:
            return
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self._document.select_concept(int(self.table.item(rows[0].row(), 0).data(CONCEPT_ROLE)))

    @Slot(int)
    def _follow_document(self, concept: int) -> None:
        self._syncing = True
        try:
            listed = self.concepts()
            if concept in listed:
                index = self.table.model().index(listed.index(concept), 0)
                self.table.selectionModel().setCurrentIndex(
                    index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
                self.table.scrollTo(index)
            else:
                self.table.clearSelection()
        finally:
            self._syncing = False
