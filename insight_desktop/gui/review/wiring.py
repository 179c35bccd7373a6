"""Review mode installed into the main window: one call from the window, everything else here.

:func:`install_review` adds the curation controller, the Review dock, the undo stack behind
Edit → Undo / Redo, the "hide rejected concepts" toggle (the tree hides them, every contribution
chart sums them into one bar), the tree's context menu (Accept Subtree) and the user's own keys.

Ctrl+Z inside the class list editor stays the editor's: while the focus is in a widget with its
own undo (:data:`OWN_UNDO`), the window's Undo/Redo give up their keys, so the two shortcuts are
never active together (Qt would call that ambiguous and run neither).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QMenu, QWidget
from shiboken6 import isValid

from ..actions import apply_shortcut_overrides
from ..dialogs import show_error
from ..docks import add_hidden_dock
from ..widgets.contribution_chart import ContributionChart
from ..widgets.qt_concept_tree_model import CONCEPT_ROLE
from . import curation_files
from .curation_controller import CurationController
from .panel import ReviewPanel
from .review_mode import ReviewMode

#: the settings key remembering "hide rejected concepts"
HIDE_REJECTED_KEY = "review/hide_rejected"
#: class names of widgets that keep Ctrl+Z / Ctrl+Shift+Z for an undo of their own
OWN_UNDO = ("ClassListEditor",)


@dataclass
class Review:
    controller: CurationController
    panel: ReviewPanel
    dock: QDockWidget
    mode: ReviewMode


def install_review(window) -> Review:
    a, doc = window.actions, window.document
    controller = CurationController(doc, window, window)
    panel = ReviewPanel(doc)
    dock = add_hidden_dock(window, "review", "Review", panel, "dock-review")
    mode = ReviewMode(window, controller, dock, panel)

    stack = controller.undo_stack
    a.undo.triggered.connect(stack.undo)
    a.redo.triggered.connect(stack.redo)
    # The window deletes its actions before the stack, which says "nothing to undo" as it goes.
    stack.canUndoChanged.connect(lambda on: isValid(a.undo) and a.undo.setEnabled(on))
    stack.canRedoChanged.connect(lambda on: isValid(a.redo) and a.redo.setEnabled(on))
    stack.undoTextChanged.connect(lambda text: isValid(a.undo) and a.undo.setText(f"&Undo {text}" if text else "&Undo"))
    stack.redoTextChanged.connect(lambda text: isValid(a.redo) and a.redo.setText(f"&Redo {text}" if text else "&Redo"))
    a.undo.setEnabled(False)
    a.redo.setEnabled(False)
    _UndoKeyGate(window, (a.undo, a.redo))

    a.accept_subtree.triggered.connect(lambda: controller.accept_subtree(doc.concept))
    a.reject_rare.triggered.connect(controller.reject_rare)
    a.export_verdicts.triggered.connect(lambda: curation_files.ask_export_verdicts(window))
    a.merge_curation.triggered.connect(lambda: curation_files.ask_merge(window))
    qs = window.settings.qsettings
    a.hide_rejected.setChecked(str(qs.value(HIDE_REJECTED_KEY, "false")).lower() == "true")
    a.hide_rejected.toggled.connect(lambda on: qs.setValue(HIDE_REJECTED_KEY, bool(on)))
    a.hide_rejected.toggled.connect(lambda _on: apply_hiding(window, controller))
    controller.recordsChanged.connect(lambda _ids: apply_hiding(window, controller))
    controller.curationChanged.connect(lambda _c: apply_hiding(window, controller))
    controller.saveFailed.connect(lambda message: show_error(window, "The curation was not saved", message))
    controller.openProblem.connect(lambda message: window.statusBar().showMessage(message, 15_000))

    view = window.tree.view
    view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    view.customContextMenuRequested.connect(lambda pos: _tree_menu(window, pos))
    apply_shortcut_overrides(a, window.settings.qsettings)
    return Review(controller, panel, dock, mode)


def apply_hiding(window, controller: CurationController) -> None:
    """Statuses marked in the tree; rejected concepts out of the tree and folded into one bar in
    every chart while hidden (or back)."""
    cur = controller.curation
    on = window.actions.hide_rejected.isChecked() and cur is not None
    rejected = cur.rejected() if on else frozenset()
    window.tree.model.set_marks({j: r.status for j, r in cur.records.items()} if cur is not None else {})
    window.tree.set_hidden(rejected)
    for chart in window.findChildren(ContributionChart):
        chart.set_hidden(rejected)


def _tree_menu(window, pos: QPoint) -> None:
    index = window.tree.view.indexAt(pos)
    if index.isValid():
        window.document.select_concept(int(index.data(CONCEPT_ROLE)))
    menu = QMenu(window.tree.view)
    a = window.actions
    for action in (a.accept_subtree, a.review_mode, a.hide_rejected, a.reject_rare):
        menu.addAction(action)
    menu.exec(window.tree.view.viewport().mapToGlobal(pos))
    menu.deleteLater()


class _UndoKeyGate(QObject):
    """Takes the window's Undo/Redo keys away while the focus is in a widget with its own undo."""

    def __init__(self, window, actions: tuple[QAction, ...]):
        super().__init__(window)
        self.actions = actions
        self.keys = {id(act): act.shortcuts() for act in actions}
        QApplication.instance().focusChanged.connect(self._on_focus)

    def _on_focus(self, _old: QWidget | None, new: QWidget | None) -> None:
        own = False
        w = new
        while w is not None:
            if type(w).__name__ in OWN_UNDO:
                own = True
                break
            w = w.parentWidget()
        for act in self.actions:
            if own and act.shortcuts():
                self.keys[id(act)] = act.shortcuts()
                act.setShortcuts([])
            elif not own and not act.shortcuts():
                act.setShortcuts(self.keys[id(act)] or [QKeySequence()])
