"""Curation changes on a QUndoStack: every verdict, rename, note and bulk action is one undo step.

A :class:`CurationCommand` holds one :class:`~insight_desktop.core.curation.CurationChange`;
redo applies it, undo applies its inverse (the records before it, exactly). The curation emits
its ``changed`` signal either way, so the name book, the views and the autosave follow undo too.
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand, QUndoStack

from ..core.curation import Curation, CurationChange


class CurationCommand(QUndoCommand):
    """One applied change of ``curation`` (pushed already applied: the first redo is skipped)."""

    def __init__(self, curation: Curation, change: CurationChange, applied: bool = False):
        super().__init__(change.text or "Curation change")
        self.curation, self.change = curation, change
        self._skip_first_redo = applied

    def redo(self) -> None:
        if self._skip_first_redo:
            self._skip_first_redo = False
            return
        self.curation.apply(self.change)

    def undo(self) -> None:
        self.curation.apply(self.change.inverse())


def push_change(stack: QUndoStack, curation: Curation, change: CurationChange) -> bool:
    """Apply ``change`` to ``curation`` as one undo step; False (nothing pushed) when it changes nothing."""
    if not change:
        return False
    stack.push(CurationCommand(curation, change))
    return True
