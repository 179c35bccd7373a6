"""Review → Export Verdicts… and Merge Another Annotator's Curation…

Exporting writes the verdicts of every concept as CSV or JSON
(:func:`~insight_desktop.core.curation.export.export_verdicts`). Merging reads another
annotator's curation file of the same model: what does not conflict is taken as one undo step,
the conflicts are listed side by side (concept, your verdict, theirs) to choose from, and the
choices are a second undo step; the dialog also says how far the two agree (percent agreement
and Cohen's κ over the concepts both reviewed, before merging).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.curation import ConceptReview, Conflict, CurationError, agreement, load_curation, plan_merge
from ...core.curation.store import SUFFIX
from ..dialogs import show_error

CURATION_FILTER = f"Curation files (*{SUFFIX});;JSON (*.json);;All files (*)"
SIDES = ("mine", "theirs")


def describe(review: ConceptReview) -> str:
    """A review in a few words: "renamed 'tabby cat' — note" (plain text)."""
    text = review.status + (f" '{review.name}'" if review.name is not None else "")
    return text + (f" — {review.note}" if review.note else "") + (f"  ({review.by})" if review.by else "")


def ask_export_verdicts(window) -> Path | None:
    controller, catalog = window.review.controller, window.document.catalog
    if controller.curation is None or catalog is None:
        return None
    path, _ = QFileDialog.getSaveFileName(window, "Export verdicts", "verdicts.csv", "CSV (*.csv);;JSON (*.json)")
    if not path:
        return None
    from ...core.curation.export import export_verdicts

    try:
        return export_verdicts(controller.curation, path, catalog.names.model_names)
    except CurationError as exc:
        show_error(window, "The verdicts were not exported", str(exc))
        return None


def ask_merge(window) -> "MergeDialog | None":
    """Pick another annotator's file; merge what does not conflict; show the conflicts (if any)."""
    controller = window.review.controller
    mine = controller.curation
    if mine is None:
        return None
    path, _ = QFileDialog.getOpenFileName(window, "Merge another annotator's curation", "", CURATION_FILTER)
    if not path:
        return None
    try:
        theirs = load_curation(path, model_identity=mine.model_identity, n_concepts=mine.n_concepts)
        agreed = agreement(mine, theirs)
        plan = plan_merge(mine, theirs)
    except CurationError as exc:
        show_error(window, "The curation was not merged", str(exc))
        return None
    controller.push(plan.change)
    taken = len(plan.change.after)
    agreed_text = str(agreed)
    summary = (f"Took {taken} concept{'s' * (taken != 1)} from {theirs.user or 'the other annotator'} that you had "
               f"not reviewed.\n{agreed_text[:1].upper()}{agreed_text[1:]}.")
    if not plan.conflicts:
        box = QMessageBox(QMessageBox.Icon.Information, "Curation merged", summary + "\nNo conflicts.",
                          QMessageBox.StandardButton.Ok, window)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return None
    dialog = MergeDialog(window, plan.conflicts, summary)
    dialog.accepted.connect(lambda: controller.push(plan.resolution(dialog.choices())))
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog


class MergeDialog(QDialog):
    """The conflicts side by side, a "mine / theirs" choice per concept (mine by default)."""

    def __init__(self, window, conflicts: tuple[Conflict, ...], summary: str, parent: QWidget | None = None):
        super().__init__(parent or window)
        self.setWindowTitle("Conflicting verdicts")
        self.conflicts = conflicts
        doc = window.document
        intro = QLabel(f"{summary}\n{len(conflicts)} concept{'s' * (len(conflicts) != 1)} were judged differently: "
                       "choose whose verdict to keep (OK keeps your choices; Cancel keeps yours for all).", self)
        intro.setTextFormat(Qt.TextFormat.PlainText)
        intro.setWordWrap(True)
        self.table = QTableWidget(len(conflicts), 4, self)
        self.table.setHorizontalHeaderLabels(["Concept", "Yours", "Theirs", "Keep"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.combos: list[QComboBox] = []
        for row, c in enumerate(conflicts):
            for column, text in enumerate((f"#{c.concept} {doc.catalog.names.model_name(c.concept)}",
                                           describe(c.mine), describe(c.theirs))):
                self.table.setItem(row, column, QTableWidgetItem(text))
            combo = QComboBox(self.table)
            combo.addItems(["Yours", "Theirs"])
            self.table.setCellWidget(row, 3, combo)
            self.combos.append(combo)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(760, 420)

    def choose(self, concept: int, side: str) -> None:
        row = [c.concept for c in self.conflicts].index(int(concept))
        self.combos[row].setCurrentIndex(SIDES.index(side))

    def choices(self) -> dict[int, str]:
        return {c.concept: SIDES[combo.currentIndex()] for c, combo in zip(self.conflicts, self.combos)}
