"""Everything the model knows about the selected concept: name, facts, candidate names,
parents and children (click one to go there), and the strip of its top patches. "Rename…" (F2)
gives the concept a name of the user's own, shown at once everywhere (:meth:`Document.rename_concept`)."""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QAction, QFont, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .name_completer import attach_name_completer
from .qt_concept_tree_model import CONCEPT_ROLE, format_frequency

EMPTY_TEXT = "Select a concept in the tree, the image or a list to inspect it"
NO_THUMBNAILS = "No thumbnails in this model"
#: link lists grow to this many rows, then scroll
MAX_LIST_ROWS = 6
#: the top-patch strip is drawn at most this tall (its crops are 64 px by default)
MAX_STRIP_HEIGHT = 96
#: the number after a parent is D̂ of docs/method.md §4, said in words
PARENTS_TIP = ("A parent fires wherever this concept fires: the number is the share of this concept's "
               "activation that falls where the parent is active too (D̂ in the method; a parent needs > 0.75).")
HEADING_TIPS = {"Parents": PARENTS_TIP,
                "Children": "Concepts that fire mostly where this one fires (this concept is their parent)."}
CANDIDATE_TIPS = ("A word or phrase the concept may stand for",
                  "The family of prompt templates the word fitted best in: noun ('a photo of a …'), "
                  "adjective ('something that is …') or verb ('someone …'); not the word's part of speech",
                  "The word list the candidate came from",
                  "Cosine similarity between the concept and the templated word (higher fits better)")


class ThumbnailStrip(QLabel):
    """A picture scaled to the label's width (never wider than itself, at most MAX_STRIP_HEIGHT tall)."""

    def __init__(self, parent: QWidget | None = None, max_height: int = MAX_STRIP_HEIGHT):
        super().__init__(parent)
        self._pixmap = QPixmap()
        self.max_height = int(max_height)   # the review panel shows the strip larger
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        # Ignored: the layout sets the width, the picture follows (else the pixmap would set it).
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def set_jpeg(self, data: bytes | None) -> bool:
        """Show ``data``; False (and the "no thumbnails" text) when it is missing or unreadable."""
        self._pixmap = QPixmap()
        if data and self._pixmap.loadFromData(bytes(data)) and not self._pixmap.isNull():
            self._fit()
            return True
        self._pixmap = QPixmap()
        self.setPixmap(QPixmap())
        self.setText(NO_THUMBNAILS)
        self.setFixedHeight(self.fontMetrics().height() + 4)
        return False

    def has_picture(self) -> bool:
        return not self._pixmap.isNull()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.has_picture():
            self._fit()

    def _fit(self) -> None:
        pm = self._pixmap
        width = max(1, min(self.width(), pm.width() * self.max_height // max(pm.height(), 1)))
        scaled = pm.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
        self.setFixedHeight(scaled.height())
        self.setPixmap(scaled)


class ConceptInspector(QWidget):
    """Shows ``document.concept``; the parent and child lists select another concept when clicked."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self._document = document

        self.empty = QLabel(EMPTY_TEXT, self)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)

        self.name = QLabel(self)
        font = QFont(self.name.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.name.setFont(font)
        self.name.setTextFormat(Qt.TextFormat.PlainText)  # a name is text, never markup (names.json is not trusted)
        self.name.setWordWrap(True)
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rename_action = QAction("Rename Concept…", self)
        self.rename_action.setShortcut(QKeySequence(Qt.Key.Key_F2))
        self.rename_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)  # F2 wherever the concept is chosen
        self.rename_action.setToolTip("Give this concept a name of your own (F2); an empty name restores the model's")
        self.rename_action.triggered.connect(self.ask_rename)
        self.addAction(self.rename_action)
        rename = QToolButton(self)
        rename.setDefaultAction(self.rename_action)
        rename.setAutoRaise(True)
        self.facts = QLabel(self)
        self.facts.setWordWrap(True)
        self.facts.setTextFormat(Qt.TextFormat.PlainText)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.thumbnails = ThumbnailStrip(self)

        self.candidates = QTableWidget(0, 4, self)
        self.candidates.setHorizontalHeaderLabels(["Candidate", "Template", "Vocabulary", "Score"])
        for column, tip in enumerate(CANDIDATE_TIPS):
            header_item = self.candidates.horizontalHeaderItem(column)
            if header_item is not None:
                header_item.setToolTip(tip)
        # Tab moves on to the next widget; arrows move between cells (Tab inside would trap the keyboard).
        self.candidates.setTabKeyNavigation(False)
        self.candidates.verticalHeader().hide()
        self.candidates.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.candidates.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.candidates.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.candidates.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # a handful of rows: cheap
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.no_candidates = QLabel("No candidate names (named by hand or by index)", self)
        self.parents = self._link_list("Click a parent to select it. " + PARENTS_TIP)
        self.no_parents = QLabel("None: a root of the hierarchy", self)
        self.children = self._link_list("Click a child to select it")
        self.no_children = QLabel("None", self)

        page = QWidget()
        layout = QVBoxLayout(page)
        title = QHBoxLayout()
        title.addWidget(self.name, 1)
        title.addWidget(rename, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(title)
        layout.addWidget(self.facts)
        layout.addWidget(self.thumbnails)
        for title, widgets in (("Candidate names", (self.candidates, self.no_candidates)),
                               ("Parents", (self.parents, self.no_parents)),
                               ("Children", (self.children, self.no_children))):
            heading = QLabel(f"<b>{title}</b>", page)
            heading.setToolTip(HEADING_TIPS.get(title, ""))
            if title == "Parents":
                self.parents_heading = heading
            layout.addWidget(heading)
            for w in widgets:
                layout.addWidget(w)
        layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(page)
        # It scrolls: two lines are enough as a minimum (Qt's is room for both scroll bars), so the
        # window still fits a laptop screen at 200 %.
        scroll.setMinimumHeight(2 * self.fontMetrics().lineSpacing())

        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(scroll)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

        document.conceptSelected.connect(self._refresh)
        document.analysisChanged.connect(self._refresh)  # the activation here changes
        document.modelChanged.connect(self._refresh)
        document.conceptRenamed.connect(self._refresh)  # this concept, a parent or a child may be the one renamed
        self._refresh()

    def _link_list(self, tip: str) -> QListWidget:
        lst = QListWidget(self)
        lst.setToolTip(tip)
        lst.setCursor(Qt.CursorShape.PointingHandCursor)
        lst.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        lst.itemClicked.connect(self._on_link)
        lst.itemActivated.connect(self._on_link)
        return lst

    # ------------------------------------------------------------------ rendering
    def _refresh(self, *_args) -> None:  # from three signals with different arguments; all same-thread
        doc, catalog = self._document, self._document.catalog
        j = doc.concept
        shown = catalog is not None and 0 <= j < catalog.n_concepts
        self.rename_action.setEnabled(shown)
        if not shown:
            self.stack.setCurrentIndex(0)
            return
        self.stack.setCurrentIndex(1)
        self.name.setText(doc.concept_name(j))
        self.facts.setText(self._facts(j))
        self.thumbnails.set_jpeg(catalog.thumbnails.get(j))

        candidates = catalog.names.candidates(j)
        self.candidates.setRowCount(len(candidates))
        for row, c in enumerate(candidates):
            for column, text in enumerate((c.term, c.family, c.vocabulary, f"{c.score:.3f}")):
                item = QTableWidgetItem(text)
                if column == 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.candidates.setItem(row, column, item)
        self.candidates.setVisible(bool(candidates))
        self.no_candidates.setVisible(not candidates)
        if candidates:
            rows = min(len(candidates), MAX_LIST_ROWS)
            self.candidates.setFixedHeight(self.candidates.horizontalHeader().height()
                                           + rows * self.candidates.verticalHeader().defaultSectionSize() + 4)

        parents = [(p, f"{doc.concept_name(p)}   ({score:.2f})") for p, score in catalog.parents(j)]
        self._fill(self.parents, self.no_parents, parents)
        self._fill(self.children, self.no_children, [(c, doc.concept_name(c)) for c in catalog.children(j)])

    def _facts(self, j: int) -> str:
        doc, catalog = self._document, self._document.catalog
        if doc.analysis is None:
            here = "no image analysed yet"
        else:
            a = doc.concept_activation(j)
            here = f"activation here {a:.3g}" if a > 0 else "not active in this image"
        return (f"#{j} · level {catalog.level(j)} · fires on {format_frequency(catalog.frequency(j))} of patches"
                f" · {here}")

    @staticmethod
    def _fill(lst: QListWidget, none_label: QLabel, links: list[tuple[int, str]]) -> None:
        lst.clear()
        for concept, text in links:
            item = QListWidgetItem(text)
            item.setData(CONCEPT_ROLE, int(concept))
            item.setForeground(lst.palette().link())
            lst.addItem(item)
        lst.setVisible(bool(links))
        none_label.setVisible(not links)
        if links:
            rows = min(len(links), MAX_LIST_ROWS)
            lst.setFixedHeight(rows * max(lst.sizeHintForRow(0), 1) + 2 * lst.frameWidth() + 2)

    # ------------------------------------------------------------------ user actions
    @Slot()
    def ask_rename(self) -> None:
        """Ask for a new name of the selected concept (a dialog; OK renames it, Cancel does nothing)."""
        doc = self._document
        j = doc.concept
        if doc.catalog is None or not 0 <= j < doc.catalog.n_concepts:
            return
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Rename Concept")
        dialog.setLabelText(f"Name of concept #{j} (leave empty for the model's name, "
                            f"'{doc.catalog.names.model_name(j)}'):")
        dialog.setTextValue(doc.concept_name(j))
        for label in dialog.findChildren(QLabel):  # the prompt quotes the model's name: plain text
            label.setTextFormat(Qt.TextFormat.PlainText)
        edit = dialog.findChild(QLineEdit)
        if edit is not None:  # type-ahead: the candidates, then the vocabulary
            attach_name_completer(edit, doc.catalog, j)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.textValueSelected.connect(partial(self._rename, doc.catalog, j))  # the concept asked about
        dialog.open()

    def _rename(self, catalog, concept: int, name: str) -> None:
        if self._document.catalog is catalog:  # another model may have been opened meanwhile
            self._document.rename_concept(concept, name)

    @Slot(QListWidgetItem)
    def _on_link(self, item: QListWidgetItem) -> None:
        self._document.select_concept(int(item.data(CONCEPT_ROLE)))
