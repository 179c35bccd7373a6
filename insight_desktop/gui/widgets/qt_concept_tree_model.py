"""The concept hierarchy (the catalog's display tree) as a Qt item model.

A model may have 8192–32768 concepts, so the tree is held in a few numpy arrays computed once
per catalog — the concepts grouped by display parent, where each group starts, and every
concept's row among its siblings — which makes ``index``, ``parent`` and ``rowCount`` O(1)
lookups instead of Python lists of child nodes. The internal id of an index is its concept id.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Mapping

import numpy as np
from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QColor, QFont

from .plain_text import escaped_tooltip

#: item-data role: the concept id (int) of a row, in every column
CONCEPT_ROLE = Qt.ItemDataRole.UserRole + 1
#: item-data role: a sortable value (numbers for the numeric columns, the lower-case name otherwise)
SORT_ROLE = Qt.ItemDataRole.UserRole + 2

#: a reviewed concept's name in the tree, by its status (rejected ones are also struck through)
STATUS_COLOURS = {"accepted": "#2b8a3e", "renamed": "#1864ab", "rejected": "#868e96", "flagged": "#e67700"}

_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


class Column(IntEnum):
    NAME = 0
    LEVEL = 1
    ACTIVATION = 2
    FREQUENCY = 3


HEADERS = ("Name", "Level", "Activation", "Frequency")


def format_frequency(frequency: float) -> str:
    """A firing frequency (0..1) as a percentage readable at every scale (12.3 %, 0.0042 %)."""
    return f"{100.0 * frequency:.3g} %" if frequency > 0 else "0 %"


class QtConceptTreeModel(QAbstractItemModel):
    """Rows are concepts, nested as in ``catalog.relations.display_parent``; roots and children
    in ascending concept order (as ``relations.roots`` and ``catalog.children``)."""

    #: before the activations of a new analysis or a concept's name change (views may filter or
    #: re-sort rows meanwhile); then one of the two after it
    rowsAboutToChange = Signal()
    activationsChanged = Signal()
    nameChanged = Signal(int)        # concept id
    switchToggled = Signal(int)      # concept id whose "switched on" check box the user clicked (gui.whatif)

    def __init__(self, document, parent: QObject | None = None):
        super().__init__(parent)
        self._document = document
        #: check boxes on the active concepts' names ("switched on"; gui.whatif sets it), and those switched off
        self.switchable, self._off = False, frozenset()
        self._rebuild()
        document.modelChanged.connect(self._on_model_changed)
        document.analysisChanged.connect(self._on_analysis_changed)
        document.conceptRenamed.connect(self._on_renamed)

    # ------------------------------------------------------------------ structure (numpy, once per catalog)
    def _rebuild(self) -> None:
        catalog = self._document.catalog
        m = catalog.n_concepts if catalog is not None else 0
        dp = (np.asarray(catalog.relations.display_parent, dtype=np.int64) if catalog is not None
              else np.zeros(0, np.int64))
        # Concepts grouped by parent (roots, parent −1, first), ascending id inside a group.
        order = np.lexsort((np.arange(m), dp))
        # Group of parent p is order[start[p + 1]:start[p + 2]] (slot 0 holds the roots).
        start = np.searchsorted(dp[order], np.arange(-1, m + 1))
        row = np.empty(m, dtype=np.int64)
        row[order] = np.arange(m) - start[dp[order] + 1]
        self._parent, self._row = dp, row
        # Python lists for the per-index look-ups Qt makes tens of thousands of times per filter
        # pass: indexing a list is several times cheaper than taking a numpy scalar.
        self._parent_of, self._row_of = dp.tolist(), row.tolist()
        self._order, self._start = order.tolist(), start.tolist()
        self._names = catalog.names.all() if catalog is not None else ()  # the catalog's name book, by id
        self._lower: tuple[str, ...] | None = None
        self._match: tuple[str, np.ndarray] | None = None
        self._level = np.asarray(catalog.relations.level) if catalog is not None else np.zeros(0, np.int64)
        self._frequency = np.asarray(catalog.relations.frequency) if catalog is not None else np.zeros(0)
        self._activation = self._activations()
        self._marks: dict[int, str] = {}   # concept → its review status, where reviewed

    def _activations(self) -> np.ndarray:
        out = np.zeros(len(self._names), dtype=np.float64)
        analysis = self._document.analysis
        if analysis is not None and analysis.concepts:
            ids = np.array([c.concept for c in analysis.concepts], dtype=np.int64)
            keep = (ids >= 0) & (ids < out.size)  # an analysis of another model must not crash the tree
            out[ids[keep]] = np.array([c.activation for c in analysis.concepts], dtype=np.float64)[keep]
        return out

    # ------------------------------------------------------------------ look-ups for the proxy and the panel
    @property
    def n_concepts(self) -> int:
        return len(self._names)

    def concept_at(self, row: int, parent: QModelIndex) -> int:
        """The concept in ``row`` under ``parent`` (the source index of the proxy's questions)."""
        slot = parent.internalId() + 1 if parent.isValid() else 0
        return self._order[self._start[slot] + row]

    def index_of(self, concept: int, column: int = 0) -> QModelIndex:
        if not 0 <= concept < self.n_concepts:
            return QModelIndex()
        return self.createIndex(self._row_of[concept], column, int(concept))

    def activation(self, concept: int) -> float:
        return float(self._activation[concept])

    def active_mask(self) -> np.ndarray:
        return self._activation > 0

    def name_mask(self, text: str) -> np.ndarray:
        """bool [m]: display name contains ``text``, case-insensitive (cached for the last text)."""
        needle = text.strip().lower()
        if self._match is None or self._match[0] != needle:
            if self._lower is None:
                self._lower = tuple(n.lower() for n in self._names)
            mask = np.fromiter((needle in n for n in self._lower), dtype=bool, count=len(self._lower))
            self._match = (needle, mask)
        return self._match[1]

    def ancestors_mask(self, concepts: np.ndarray) -> np.ndarray:
        """bool [m]: every display-tree ancestor of ``concepts`` (not the concepts themselves)."""
        out = np.zeros(self.n_concepts, dtype=bool)
        current = np.asarray(concepts, dtype=np.int64)
        while current.size:
            current = self._parent[current]
            current = np.unique(current[current >= 0])
            current = current[~out[current]]  # the guard keeps a malformed (cyclic) file finite
            out[current] = True
        return out

    # ------------------------------------------------------------------ QAbstractItemModel
    def index(self, row: int, column: int, parent: QModelIndex = QModelIndex()) -> QModelIndex:
        if column < 0 or column >= len(HEADERS) or row < 0 or (parent.isValid() and parent.column() != 0):
            return QModelIndex()
        slot = parent.internalId() + 1 if parent.isValid() else 0
        first = self._start[slot]
        if row >= self._start[slot + 1] - first:
            return QModelIndex()
        return self.createIndex(row, column, self._order[first + row])

    def parent(self, child: QModelIndex | None = None):  # noqa: D401 — also QObject.parent()
        if child is None:  # QObject.parent() shares the name
            return QObject.parent(self)
        if not child.isValid():
            return QModelIndex()
        p = self._parent_of[child.internalId()]
        return QModelIndex() if p < 0 else self.createIndex(self._row_of[p], 0, p)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        if not parent.isValid():
            return self._start[1] - self._start[0] if self.n_concepts else 0
        if parent.column() != 0:
            return 0
        slot = parent.internalId() + 1
        return self._start[slot + 1] - self._start[slot]

    def hasChildren(self, parent: QModelIndex = QModelIndex()) -> bool:
        return self.rowCount(parent) > 0

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        horizontal = orientation == Qt.Orientation.Horizontal
        if horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(HEADERS):
            return HEADERS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        concept, column = index.internalId(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == Column.NAME:
                return self._names[concept]
            if column == Column.LEVEL:
                return str(int(self._level[concept]))
            if column == Column.ACTIVATION:
                a = self._activation[concept]
                return f"{a:.3g}" if a > 0 else ""  # blank, not 0: "does not fire here"
            return format_frequency(float(self._frequency[concept]))
        if role == CONCEPT_ROLE:
            return int(concept)
        if role == SORT_ROLE:
            if column == Column.NAME:
                return self._names[concept].lower()
            if column == Column.LEVEL:
                return int(self._level[concept])
            if column == Column.ACTIVATION:
                return float(self._activation[concept])
            return float(self._frequency[concept])
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(concept)
        if role == Qt.ItemDataRole.CheckStateRole and column == Column.NAME and self._switch_shown(concept):
            return Qt.CheckState.Unchecked if concept in self._off else Qt.CheckState.Checked
        if column == Column.NAME and concept in self._marks:
            status = self._marks[concept]
            if role == Qt.ItemDataRole.FontRole and status == "rejected":
                font = QFont()
                font.setStrikeOut(True)
                return font
            if role == Qt.ItemDataRole.ForegroundRole and status in STATUS_COLOURS:
                return QColor(STATUS_COLOURS[status])
        if role == Qt.ItemDataRole.TextAlignmentRole and column != Column.NAME:
            return _RIGHT
        return None

    def _tooltip(self, concept: int) -> str:
        catalog = self._document.catalog
        lines = [f"{self._names[concept]}  (#{concept}, level {int(self._level[concept])})"]
        candidates = catalog.names.candidates(concept) if catalog is not None else ()
        if candidates:
            lines.append("Candidates: " + ", ".join(f"{c.term} ({c.score:.2f})" for c in candidates[:5]))
        return escaped_tooltip("\n".join(lines))

    def _switch_shown(self, concept: int) -> bool:
        return self.switchable and (self._activation[concept] > 0 or concept in self._off)

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        flags = super().flags(index)
        if index.isValid() and index.column() == Column.NAME and self._switch_shown(index.internalId()):
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def setData(self, index: QModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        """A click on a check box asks for the switch (gui.whatif decides, undoably, and calls
        :meth:`set_switched_off`); the box follows the state, not the click."""
        if role != Qt.ItemDataRole.CheckStateRole or not index.isValid() or index.column() != Column.NAME:
            return False
        self.switchToggled.emit(int(index.internalId()))
        return True

    def set_switched_off(self, concepts) -> None:
        """Uncheck ``concepts`` (switched off) and check every other active concept."""
        new = frozenset(int(j) for j in concepts)
        changed, self._off = new ^ self._off, new
        for j in changed:
            if 0 <= j < self.n_concepts:
                index = self.index_of(j, Column.NAME)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.CheckStateRole])

    def set_marks(self, statuses: Mapping[int, str]) -> None:
        """Show each concept's review status in its name: accepted green, renamed blue, flagged
        orange, rejected grey and struck through (``statuses``: the reviewed concepts only)."""
        new = {int(j): str(s) for j, s in statuses.items()}
        changed = {j for j in new.keys() | self._marks.keys() if new.get(j) != self._marks.get(j)}
        self._marks = new
        for j in changed:
            if 0 <= j < self.n_concepts:
                index = self.index_of(j, Column.NAME)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.FontRole, Qt.ItemDataRole.ForegroundRole])

    # ------------------------------------------------------------------ document
    def _on_model_changed(self) -> None:
        self.beginResetModel()
        self._rebuild()
        self.endResetModel()

    def _on_renamed(self, concept: int) -> None:
        catalog = self._document.catalog
        if catalog is None or not 0 <= concept < self.n_concepts:
            return
        self.rowsAboutToChange.emit()
        self._names = catalog.names.all()
        self._lower, self._match = None, None
        index = self.index_of(concept, Column.NAME)
        # DisplayRole: the proxy re-checks the name filter and re-sorts this row.
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole, SORT_ROLE, Qt.ItemDataRole.ToolTipRole])
        self.nameChanged.emit(concept)

    def _on_analysis_changed(self) -> None:
        # Only the activation column changes; a reset would collapse the user's tree.
        new = self._activations()
        changed = np.flatnonzero(new != self._activation)
        self.rowsAboutToChange.emit()
        self._activation = new
        self._emit_activation_changed(changed)
        self.activationsChanged.emit()

    def _emit_activation_changed(self, changed: np.ndarray) -> None:
        # dataChanged ranges must share a parent: one signal per sibling group, spanning its changed rows.
        parents = self._parent[changed]
        rows = self._row[changed]
        for p in np.unique(parents):
            in_group = rows[parents == p]
            parent = QModelIndex() if p < 0 else self.createIndex(int(self._row[p]), 0, int(p))
            top = self.index(int(in_group.min()), Column.ACTIVATION, parent)
            bottom = self.index(int(in_group.max()), Column.ACTIVATION, parent)
            # DisplayRole is the proxy's filter role: only then does it re-check hidden ancestors,
            # so a newly active concept under a hidden parent appears under "only active here".
            self.dataChanged.emit(top, bottom, [Qt.ItemDataRole.DisplayRole, SORT_ROLE])
