"""The review panel: one concept at a time, large, with everything needed to judge it.

It shows the document's selected concept (selecting it also puts its heatmap on the image,
zoom and pan untouched): the bundle's strip of its top patches, large; its name (an edit field
with type-ahead), the model's name, its status and note; its candidate names with scores; its
parents and children (click one to go there); and the review's progress. The keys live in
:mod:`.review_mode`; this widget only shows and edits.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal, Slot
from PySide6.QtGui import QFont, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.curation import STATUSES
from ..widgets.concept_inspector import ThumbnailStrip
from ..widgets.name_completer import attach_name_completer
from ..widgets.qt_concept_tree_model import CONCEPT_ROLE, STATUS_COLOURS, format_frequency
from ..widgets.wrapping_row import WrappingRow
from .navigation import ALL, ORDERS

#: the strip of top patches is drawn up to this tall here (the inspector's is 96 px)
LARGE_STRIP_HEIGHT = 200
NO_CONCEPT = "Select a concept (or press J) to review it"


class ReviewPanel(QWidget):
    """Shows ``document.concept`` for review; emits what the user typed."""

    renameRequested = Signal(int, str)    # concept, the new name ("" gives the model's name back)
    noteRequested = Signal(int, str)      # concept, the note
    filtersChanged = Signal()             # order, status filter or level filter changed

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.curation = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)   # review keys work with the focus here
        self.progress = QLabel(self)
        self.order = QComboBox(self)
        self.order.addItems(ORDERS)
        self.order.setToolTip("Review in tree order (parents before children) or most frequent first")
        self.status_filter = QComboBox(self)
        self.status_filter.addItem("All statuses", ALL)
        for status in STATUSES:
            self.status_filter.addItem(status.capitalize(), status)
        self.status_filter.setToolTip("Visit only concepts with this status")
        self.level_filter = QComboBox(self)
        self.level_filter.setToolTip("Visit only concepts of this hierarchy level")
        self.auto_advance = QCheckBox("Advance after a verdict", self)
        self.auto_advance.setChecked(True)
        self.auto_advance.setToolTip("After Accept, Reject or Flag, go on to the next concept")

        self.heading = QLabel(self)
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.strip = ThumbnailStrip(self, max_height=LARGE_STRIP_HEIGHT)
        self.name_edit = QLineEdit(self)
        font = QFont(self.name_edit.font())
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.name_edit.setFont(font)
        self.name_edit.setToolTip("Enter to rename: type, pick a completion, Enter keeps it (empty: the model's name)")
        self.model_name = QLabel(self)
        self.model_name.setTextFormat(Qt.TextFormat.PlainText)
        self.status = QLabel(self)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.note_edit = QLineEdit(self)
        self.note_edit.setPlaceholderText("A note (N), Enter keeps it")
        self.candidates = self._list("Candidate names with their scores; click one to take it as the name")
        self.parents = self._list("Click a parent to review it")
        self.children = self._list("Click a child to review it")
        for lst in (self.parents, self.children):
            lst.itemClicked.connect(self._go_to)
        self.buttons: list[QToolButton] = []
        self._buttons_slot = QVBoxLayout()   # the verdict buttons (set_buttons), wrapping on a narrow panel

        controls = QFormLayout()
        controls.addRow("Order", self.order)
        filters = QHBoxLayout()
        filters.addWidget(self.status_filter)
        filters.addWidget(self.level_filter)
        controls.addRow("Show", filters)
        page = QWidget(self)
        layout = QVBoxLayout(page)
        layout.addWidget(self.progress)
        layout.addLayout(controls)
        layout.addWidget(self.auto_advance)
        layout.addWidget(self.heading)
        layout.addWidget(self.strip)
        self.below_strip = QVBoxLayout()   # others show more of the concept here (gui.folder_index: the folder's best)
        layout.addLayout(self.below_strip)
        layout.addWidget(self.name_edit)
        layout.addWidget(self.model_name)
        layout.addWidget(self.status)
        layout.addWidget(self.note_edit)
        layout.addLayout(self._buttons_slot)
        for title, lst in (("Candidate names", self.candidates), ("Parents", self.parents),
                           ("Children", self.children)):
            layout.addWidget(QLabel(f"<b>{title}</b>", page))
            layout.addWidget(lst)
        layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # narrow: the buttons wrap, the panel never scrolls sideways
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(page)
        for combo in (self.order, self.status_filter, self.level_filter):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        for edit in (self.name_edit, self.note_edit):
            edit.installEventFilter(self)
        self.name_edit.returnPressed.connect(self._commit_name)
        self.note_edit.returnPressed.connect(self._commit_note)
        self.candidates.itemClicked.connect(self._take_candidate)
        for combo in (self.order, self.status_filter, self.level_filter):
            combo.currentIndexChanged.connect(self.filtersChanged)
        document.conceptSelected.connect(self.refresh)
        document.conceptRenamed.connect(self._on_renamed)
        document.analysisChanged.connect(self.refresh)

    def _list(self, tip: str) -> QListWidget:
        lst = QListWidget(self)
        lst.setToolTip(tip)
        lst.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        lst.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the panel
        lst.setMaximumHeight(6 * (self.fontMetrics().height() + 6))
        return lst

    def set_buttons(self, actions) -> None:
        """A button per action (Accept, Reject, …), in a row that wraps on a narrow panel."""
        for action in actions:
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.buttons.append(button)
        self._buttons_slot.addWidget(WrappingRow(*self.buttons))

    # ------------------------------------------------------------------ state
    def set_curation(self, curation, levels: list[int]) -> None:
        self.curation = curation
        self.level_filter.blockSignals(True)
        self.level_filter.clear()
        self.level_filter.addItem("All levels", -1)
        for level in levels:
            self.level_filter.addItem(f"Level {level}", level)
        self.level_filter.blockSignals(False)
        self.refresh()

    def order_name(self) -> str:
        return self.order.currentText()

    def status_wanted(self) -> str:
        return str(self.status_filter.currentData())

    def level_wanted(self) -> int:
        data = self.level_filter.currentData()
        return int(data) if data is not None else -1

    def concept(self) -> int:
        doc = self.document
        ok = doc.catalog is not None and self.curation is not None and 0 <= doc.concept < doc.catalog.n_concepts
        return doc.concept if ok else -1

    # ------------------------------------------------------------------ showing
    @Slot()
    def refresh(self, *_args) -> None:
        self.progress.setText(str(self.curation.progress()) if self.curation is not None else "No concept model")
        j, catalog = self.concept(), self.document.catalog
        for w in (self.name_edit, self.note_edit):
            w.setEnabled(j >= 0)
        if j < 0:
            self.heading.setText(NO_CONCEPT)
            self.strip.set_jpeg(None)
            for w in (self.name_edit, self.note_edit):
                w.clear()
            for lst in (self.candidates, self.parents, self.children):
                lst.clear()
            self.model_name.clear()
            self.status.clear()
            return
        self.heading.setText(f"#{j} · level {catalog.level(j)} · fires on {format_frequency(catalog.frequency(j))}"
                             " of patches")
        self.strip.set_jpeg(catalog.thumbnails.get(j))
        self.show_record()
        self.candidates.clear()
        for c in catalog.names.candidates(j):
            item = QListWidgetItem(f"{c.term}   {c.score:.3f}")
            item.setData(Qt.ItemDataRole.UserRole, c.term)
            self.candidates.addItem(item)
        self._fill(self.parents, [(p, f"{self.document.concept_name(p)}   ({score:.2f})")
                                  for p, score in catalog.parents(j)])
        self._fill(self.children, [(c, self.document.concept_name(c)) for c in catalog.children(j)])

    def show_record(self) -> None:
        """The name, status and note of the shown concept as the curation has them now."""
        j = self.concept()
        if j < 0:
            return
        review = self.curation.review(j)
        if not self.name_edit.hasFocus():
            self.name_edit.setText(self.document.concept_name(j))
        if not self.note_edit.hasFocus():
            self.note_edit.setText(review.note)
        self.model_name.setText(f"model's name: {self.document.catalog.names.model_name(j)}")
        who = f" · by {review.by}, {review.at}" if review.by else ""
        self.status.setText(f"{review.status}{who}")
        colour = STATUS_COLOURS.get(review.status)
        self.status.setStyleSheet(f"color: {colour}; font-weight: bold" if colour else "")
        self.progress.setText(str(self.curation.progress()))

    @staticmethod
    def _fill(lst: QListWidget, links: list[tuple[int, str]]) -> None:
        lst.clear()
        for concept, text in links:
            item = QListWidgetItem(text)
            item.setData(CONCEPT_ROLE, int(concept))
            lst.addItem(item)
        if not links:
            lst.addItem(QListWidgetItem("none"))

    def _on_renamed(self, concept: int) -> None:
        if concept == self.concept():
            self.show_record()
        elif self.concept() >= 0:  # a parent or child may be the one renamed
            self.refresh()

    # ------------------------------------------------------------------ editing
    def start_rename(self) -> None:
        j = self.concept()
        if j < 0:
            return
        attach_name_completer(self.name_edit, self.document.catalog, j)
        self.name_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.name_edit.selectAll()

    def start_note(self) -> None:
        if self.concept() >= 0:
            self.note_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
            self.note_edit.selectAll()

    def _commit_name(self) -> None:
        j = self.concept()
        text = self.name_edit.text().strip()
        self.setFocus(Qt.FocusReason.OtherFocusReason)
        if j >= 0 and text != self.document.concept_name(j):
            self.renameRequested.emit(j, text)
        self.show_record()

    def _commit_note(self) -> None:
        j = self.concept()
        self.setFocus(Qt.FocusReason.OtherFocusReason)
        if j >= 0 and self.note_edit.text().strip() != self.curation.review(j).note:
            self.noteRequested.emit(j, self.note_edit.text())
        self.show_record()

    def _take_candidate(self, item: QListWidgetItem) -> None:
        j, term = self.concept(), item.data(Qt.ItemDataRole.UserRole)
        if j >= 0 and term and term != self.document.concept_name(j):
            self.renameRequested.emit(j, str(term))

    def _go_to(self, item: QListWidgetItem) -> None:
        concept = item.data(CONCEPT_ROLE)
        if concept is not None:
            self.document.select_concept(int(concept))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Esc in the name or note field: leave it unchanged (and keep Esc from the window's Cancel)."""
        if isinstance(event, QKeyEvent) and event.key() == Qt.Key.Key_Escape:
            if event.type() == QEvent.Type.ShortcutOverride:
                event.accept()
                return True
            if event.type() == QEvent.Type.KeyPress:
                self.setFocus(Qt.FocusReason.OtherFocusReason)
                self.show_record()
                return True
        return super().eventFilter(watched, event)
