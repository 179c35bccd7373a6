"""The concept hierarchy panel: a searchable, filterable tree of every concept of the model.

The tree shows the catalog's display tree (:mod:`.qt_concept_tree_model`); a proxy filters it by
the search (ids, names, candidate names and text similarity: :mod:`.concept_search`; Enter
selects the best hit) and by "active in this image", keeping the ancestors of every match
(recursive filtering) so a match is always shown in context. Selecting a row selects the concept in the document; a
concept selected elsewhere is selected and scrolled to here.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QObject, QSortFilterProxyModel, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from .concept_search import ConceptSearch, SearchStatus, tooltip_with_reason
from .qt_concept_tree_model import CONCEPT_ROLE, SORT_ROLE, Column, QtConceptTreeModel

#: typing pauses this long (ms) before the tree is filtered: one filter pass per word, not per key
SEARCH_DEBOUNCE_MS = 150
#: at most this many ancestors are expanded to reveal matches (expanding is per index, in Python)
MAX_EXPANDED = 2000
SORT_MODES = ("Hierarchy", "Activation")
#: the numeric columns' widths (px) on a wide panel; on a narrower one they shrink so that the
#: name keeps 40 % of the width, 55 % below NARROW_VIEW (a laptop at 150 %; see _fit_columns)
COLUMN_WIDTHS = ((Column.LEVEL, 44), (Column.ACTIVATION, 72), (Column.FREQUENCY, 72))
#: indentation per tree level (px), and below which view width the narrow one applies
WIDE_INDENT, NARROW_INDENT, NARROW_VIEW = 20, 10, 280


class ConceptFilterProxy(QSortFilterProxyModel):
    """Filters concepts by the search (the hits it is given, else a case-insensitive name
    substring) and, optionally, to those active in the current image; recursive filtering keeps
    the ancestors of every concept that passes. A hit's row tooltip says why it matched."""

    def __init__(self, source: QtConceptTreeModel, parent: QObject | None = None):
        super().__init__(parent)
        self._search = ""
        self._hits: dict[int, str] | None = None     # concept → why it matched, when given
        self._hit_mask: np.ndarray | None = None
        self._only_active = False
        self._hidden: frozenset[int] = frozenset()   # concepts never shown (rejected, when hidden)
        self.setRecursiveFilteringEnabled(True)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(Column.NAME)
        self.setSortRole(SORT_ROLE)
        self.setSourceModel(source)

    @property
    def search(self) -> str:
        return self._search

    @property
    def only_active(self) -> bool:
        return self._only_active

    def set_search(self, text: str, hits: Mapping[int, str] | None = None) -> None:
        """Show the concepts ``hits`` (concept → why it matched) for the search ``text``; without
        ``hits``, those whose name contains ``text``."""
        text, hits = text.strip(), (dict(hits) if hits is not None else None)
        if text != self._search or hits != self._hits:
            self.beginFilterChange()
            self._search, self._hits, self._hit_mask = text, hits, None
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def _search_mask(self) -> np.ndarray:
        src: QtConceptTreeModel = self.sourceModel()
        if self._hits is None:
            return src.name_mask(self._search)
        if self._hit_mask is None or self._hit_mask.size != src.n_concepts:
            self._hit_mask = np.zeros(src.n_concepts, dtype=bool)
            self._hit_mask[[j for j in self._hits if 0 <= j < src.n_concepts]] = True
        return self._hit_mask

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        value = super().data(index, role)
        if role == Qt.ItemDataRole.ToolTipRole and self._hits and self._search:
            why = self._hits.get(int(super().data(index, CONCEPT_ROLE)))
            if why:
                return tooltip_with_reason(value, why)
        return value

    def set_only_active(self, only: bool) -> None:
        if bool(only) != self._only_active:
            self.beginFilterChange()
            self._only_active = bool(only)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    @property
    def hidden(self) -> frozenset[int]:
        return self._hidden

    def set_hidden(self, concepts: frozenset[int]) -> None:
        """Hide ``concepts`` (rejected ones); a hidden concept with shown descendants stays as
        their context (recursive filtering), struck through by the model."""
        concepts = frozenset(int(j) for j in concepts)
        if concepts != self._hidden:
            self.beginFilterChange()
            self._hidden = concepts
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def is_filtering(self) -> bool:
        return bool(self._search) or self._only_active

    def passing(self) -> np.ndarray:
        """bool [m]: the concepts that pass the filter themselves (not just as ancestors)."""
        src: QtConceptTreeModel = self.sourceModel()
        mask = self._search_mask() if self._search else np.ones(src.n_concepts, dtype=bool)
        if self._hidden:
            mask = mask.copy()
            mask[[j for j in self._hidden if j < mask.size]] = False
        return mask & src.active_mask() if self._only_active else mask

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:
        src: QtConceptTreeModel = self.sourceModel()
        concept = src.concept_at(source_row, source_parent)
        if concept in self._hidden:
            return False
        if self._only_active and src.activation(concept) <= 0:
            return False
        return not self._search or bool(self._search_mask()[concept])


class ConceptTreePanel(QWidget):
    """Search field, "only active here" switch, sort order and the concept tree."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self._document = document
        # Set while the view follows the document or the rows change under it: in single-selection
        # mode Qt selects a neighbour when the selected row is filtered away, which is not the user
        # choosing a concept, so it must not reach the document.
        self._syncing = False
        self.model = QtConceptTreeModel(document, self)
        self.proxy = ConceptFilterProxy(self.model, self)

        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search concepts: name, #id or text (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.searcher = ConceptSearch(document, self)   # ids, names; text from a worker (connect_worker)
        self.search_status = SearchStatus(self)
        self.only_active = QCheckBox("Only active here", self)
        self.only_active.setToolTip("Show only the concepts that fire in the current image (and their ancestors)")
        self.sort = QComboBox(self)
        self.sort.addItems(SORT_MODES)
        self.sort.setToolTip("Order siblings by concept number (hierarchy) or by activation in this image")

        self.view = QTreeView(self)
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)  # lets the view skip measuring 32k rows
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(Column.NAME, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(20)
        for column, width in COLUMN_WIDTHS:
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, width)

        # Two rows at the least (Qt's default is about three): on a laptop at 200 % every line counts.
        self.view.setMinimumHeight(header.sizeHint().height() + 2 * (self.fontMetrics().height() + 4)
                                   + 2 * self.view.frameWidth())

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(SEARCH_DEBOUNCE_MS)

        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(self.only_active)
        controls.addStretch(1)
        controls.addWidget(self.sort)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.search)
        layout.addWidget(self.search_status)
        layout.addLayout(controls)
        layout.addWidget(self.view, 1)

        self.search.textChanged.connect(self._debounce.start)
        self._debounce.timeout.connect(self._apply_search)
        self.search.returnPressed.connect(self._select_best_hit)
        self.searcher.resultChanged.connect(self._show_search)
        self.only_active.toggled.connect(self._on_only_active)
        self.sort.currentIndexChanged.connect(self._on_sort)
        self.view.selectionModel().selectionChanged.connect(self._on_view_selection)
        self.model.rowsAboutToChange.connect(self._rows_about_to_change)
        self.model.activationsChanged.connect(self._after_analysis_changed)
        self.model.nameChanged.connect(self._after_rename)
        document.conceptSelected.connect(self._follow_document)
        document.modelChanged.connect(self._after_model_changed)
        self._follow_document(document.concept)

    def resizeEvent(self, event) -> None:  # noqa: N802 — Qt override
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """The numeric columns at their widths, or narrower so that the name keeps 40 % of the view;
        on a narrow view (a laptop at 150 %) 55 %, and the levels indent less, so that a deep name
        still shows beside its check box."""
        width = self.view.viewport().width()
        narrow = width < NARROW_VIEW
        scale = min(1.0, (0.45 if narrow else 0.6) * width / sum(w for _, w in COLUMN_WIDTHS))
        for column, w in COLUMN_WIDTHS:
            self.view.header().resizeSection(column, max(20, int(w * scale)))
        self.view.setIndentation(NARROW_INDENT if narrow else WIDE_INDENT)

    # ------------------------------------------------------------------ public
    def focus_search(self) -> None:
        """For the window's Ctrl+F: put the cursor in the search field, text selected."""
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def set_hidden(self, concepts: frozenset[int]) -> None:
        """Hide ``concepts`` from the tree (the rejected ones, while they are hidden); one with
        shown descendants stays as their context."""
        concepts = frozenset(concepts)
        if concepts == self.proxy.hidden:
            return
        self._syncing = True
        self.proxy.set_hidden(concepts)
        self._follow_document(self._document.concept)

    def index_of(self, concept: int) -> QModelIndex:
        """The view (proxy) index of ``concept``'s row; invalid when filtered out."""
        return self.proxy.mapFromSource(self.model.index_of(concept))

    # ------------------------------------------------------------------ user actions
    @Slot()
    def _apply_search(self) -> None:
        self._debounce.stop()  # also called directly when a filter must apply at once
        self._show_search(self.searcher.update(self.search.text()))

    @Slot(object)
    def _show_search(self, result) -> None:
        """Filter to ``result``'s hits (a SearchResult: now by name, again when text hits arrive)."""
        self._syncing = True
        self.proxy.set_search(result.query, result.why() if result.query else None)
        catalog = self._document.catalog
        self.search_status.show_result(result, catalog.names if catalog is not None else None,
                                       self.searcher.waiting)
        self._after_filter_change()

    @Slot()
    def _select_best_hit(self) -> None:
        """Enter in the search field: search now and select the best hit that is shown."""
        self._apply_search()
        hidden = self.proxy.hidden
        best = next((h.concept for h in self.searcher.result.hits if h.concept not in hidden), None)
        if best is not None:
            self._document.select_concept(best)

    @Slot(bool)
    def _on_only_active(self, checked: bool) -> None:
        self._syncing = True
        self.proxy.set_only_active(checked)
        self._after_filter_change()

    @Slot(int)
    def _on_sort(self, mode: int) -> None:
        self._syncing = True
        if SORT_MODES[mode] == "Activation":
            self.proxy.sort(Column.ACTIVATION, Qt.SortOrder.DescendingOrder)
        else:
            self.proxy.sort(-1)  # −1: back to the source order (the hierarchy, by concept number)
        self._follow_document(self._document.concept)

    @Slot()
    def _on_view_selection(self) -> None:
        if self._syncing:
            return
        rows = self.view.selectionModel().selectedRows(Column.NAME)
        if rows:
            self._document.select_concept(int(rows[0].data(CONCEPT_ROLE)))

    # ------------------------------------------------------------------ following the document
    @Slot(int)
    def _follow_document(self, concept: int) -> None:
        self._syncing = True
        try:
            index = self.index_of(concept) if concept >= 0 else QModelIndex()
            selection = self.view.selectionModel()
            if not index.isValid():
                selection.clearSelection()
                return
            self._expand_to(index)
            selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                      | QItemSelectionModel.SelectionFlag.Rows)
            self.view.scrollTo(index)
        finally:
            self._syncing = False

    @Slot()
    def _after_model_changed(self) -> None:
        self.searcher.reset()
        if self.search.text().strip():  # the new model's hits
            self._apply_search()
        else:
            self._after_filter_change()

    @Slot()
    def _rows_about_to_change(self) -> None:
        self._syncing = True  # cleared by _follow_document once the rows have settled

    @Slot()
    def _after_analysis_changed(self) -> None:
        if self.proxy.only_active:  # newly active concepts may sit under collapsed parents; the
            self._after_filter_change()  # selected one may have been filtered away
        else:
            self._follow_document(self._document.concept)

    @Slot(int)
    def _after_rename(self, concept: int) -> None:
        if self.proxy.search:  # the new name may match the search now (or no longer)
            self._apply_search()
        else:
            self._follow_document(self._document.concept)

    def _after_filter_change(self) -> None:
        """Expand what is needed to see the matches (or collapse back), then show the selection."""
        if self.proxy.is_filtering():
            hits = np.flatnonzero(self.proxy.passing())
            ancestors = np.flatnonzero(self.model.ancestors_mask(hits))[:MAX_EXPANDED]
            for concept in ancestors:
                self.view.setExpanded(self.index_of(int(concept)), True)
        else:  # the filter is off: fold the revealed branches away again
            self.view.collapseAll()
        self._follow_document(self._document.concept)

    def _expand_to(self, index: QModelIndex) -> None:
        parent = index.parent()
        while parent.isValid():
            if not self.view.isExpanded(parent):
                self.view.setExpanded(parent, True)
            parent = parent.parent()
