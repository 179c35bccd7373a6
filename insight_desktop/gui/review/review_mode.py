"""Review mode: the review panel's dock, its keys, auto-advance, filters and the bulk actions.

The keys are the window's actions of the Review menu (listed in F1; configurable through the
settings, :func:`..actions.apply_shortcut_overrides`). They are enabled only while review mode is
on, so A, X, J, … do nothing elsewhere, and the :class:`..actions.TypingGuard` gives them to a
text field that has the focus. A verdict (A accept, X reject, Shift+F flag, Backspace unreviewed)
is one undo step; with "advance after a verdict" on, the next concept is shown at once: it is
selected in the document, so the canvas shows its heatmap with zoom and pan as they were.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Slot
from shiboken6 import isValid

from ...core.curation import ACCEPTED, FLAGGED, REJECTED, UNREVIEWED_STATUS
from .navigation import ReviewFilter, ReviewNavigator
from .panel import ReviewPanel

#: actions that exist only in review mode (enabled while it is on)
REVIEW_KEYS = ("review_accept", "review_reject", "review_flag", "review_reset", "review_rename", "review_note",
               "review_next", "review_previous", "review_next_unreviewed")


class ReviewMode(QObject):
    def __init__(self, window, controller, dock, panel: ReviewPanel):
        super().__init__(window)
        self.window, self.controller, self.dock, self.panel = window, controller, dock, panel
        self.document = window.document
        self.navigator: ReviewNavigator | None = None
        a = window.actions
        a.review_mode.toggled.connect(self.set_active)
        dock.visibilityChanged.connect(self._on_dock_visibility)
        for name, status in (("review_accept", ACCEPTED), ("review_reject", REJECTED), ("review_flag", FLAGGED),
                             ("review_reset", UNREVIEWED_STATUS)):
            getattr(a, name).triggered.connect(lambda _=False, s=status: self.verdict(s))
        a.review_next.triggered.connect(lambda: self.step(+1))
        a.review_previous.triggered.connect(lambda: self.step(-1))
        a.review_next_unreviewed.triggered.connect(self.next_unreviewed)
        a.review_rename.triggered.connect(panel.start_rename)
        a.review_note.triggered.connect(panel.start_note)
        a.review_rename.setShortcuts([a.review_rename.shortcut(), Qt.Key.Key_Enter])  # the keypad's Enter too
        panel.set_buttons([getattr(a, name) for name in ("review_accept", "review_reject", "review_flag",
                                                          "review_next_unreviewed", "accept_subtree")])
        panel.renameRequested.connect(controller.rename)
        panel.noteRequested.connect(controller.note)
        panel.filtersChanged.connect(self._on_filters)
        self._undo_index = 0
        controller.undo_stack.indexChanged.connect(self._on_undo_index)
        controller.curationChanged.connect(self._on_curation)
        controller.recordsChanged.connect(self._on_records)
        self._on_curation(controller.curation)
        self.set_active(False)

    # ------------------------------------------------------------------ mode
    @property
    def active(self) -> bool:
        return self.window.actions.review_mode.isChecked()

    @Slot(bool)
    def set_active(self, on: bool) -> None:
        a = self.window.actions
        if a.review_mode.isChecked() != on:
            a.review_mode.setChecked(on)  # comes back here through toggled
            return
        for name in REVIEW_KEYS:
            getattr(a, name).setEnabled(on and self.controller.curation is not None)
        self.dock.setVisible(on)
        if on:
            self.dock.raise_()
            tasks = self.window.docks.get("tasks")
            if tasks is not None and tasks.isVisible() and self.window.dockWidgetArea(tasks) == \
                    self.window.dockWidgetArea(self.dock):  # the panel under review gets most of the column
                self.window.resizeDocks([tasks, self.dock], [1, 3], Qt.Orientation.Vertical)
            self.panel.setFocus(Qt.FocusReason.ShortcutFocusReason)
            if self.document.concept < 0 and self.navigator is not None:
                self._show(self.navigator.first())
            # the vocabulary for type-ahead is read now, off the GUI thread, not on the first rename
            from ..widgets.name_completer import vocabulary_terms

            threading.Thread(target=vocabulary_terms, args=((),), daemon=True).start()

    def _on_dock_visibility(self, visible: bool) -> None:
        # the dock closed with its title bar's ×, or shown again by a restored window layout
        if not visible and self.dock.isHidden() and self.active:
            self.set_active(False)
        elif visible and not self.active:
            self.set_active(True)

    # ------------------------------------------------------------------ curation and filters
    def _on_curation(self, curation) -> None:
        catalog = self.document.catalog
        self.navigator = ReviewNavigator(catalog, curation) if curation is not None and catalog is not None else None
        self.panel.set_curation(curation, self.navigator.levels() if self.navigator is not None else [])
        self._on_filters()
        a = self.window.actions
        for name in ("accept_subtree", "reject_rare", "export_verdicts", "merge_curation"):
            getattr(a, name).setEnabled(curation is not None)
        self.set_active(self.active)

    def _on_records(self, ids) -> None:
        if self.panel.concept() in ids:
            self.panel.show_record()
        else:
            self.panel.progress.setText(str(self.controller.curation.progress()))

    def _on_filters(self) -> None:
        nav = self.navigator
        if nav is None:
            return
        nav.order_name = self.panel.order_name()
        nav.filter = ReviewFilter(self.panel.status_wanted(), self.panel.level_wanted())
        if self.active and self.document.concept >= 0 and not nav.passes(self.document.concept):
            self._show(nav.step(self.document.concept, +1))

    def _on_undo_index(self, index: int) -> None:
        """After undoing a verdict on one concept, show that concept again (it is to be judged anew)."""
        stack, before, self._undo_index = self.controller.undo_stack, self._undo_index, index
        if not isValid(self.window.actions.review_mode):  # the window is being deleted (its stack clears)
            return
        if self.active and index < before:
            command = stack.command(index)
            concepts = getattr(command, "change", None)
            if concepts is not None and len(concepts.after) == 1:
                self._show(next(iter(concepts.after)))

    # ------------------------------------------------------------------ keys
    def verdict(self, status: str) -> None:
        j = self.panel.concept()
        if j < 0:
            return
        self.controller.set_status([j], status)
        if self.panel.auto_advance.isChecked() and status != UNREVIEWED_STATUS:
            self.step(+1, after=j)

    def step(self, step: int, after: int | None = None) -> None:
        if self.navigator is not None:
            self._show(self.navigator.step(self.document.concept if after is None else after, step))

    def next_unreviewed(self) -> None:
        if self.navigator is not None:
            self._show(self.navigator.next_unreviewed(self.document.concept))

    def _show(self, concept: int) -> None:
        if concept >= 0:
            self.document.select_concept(concept)
