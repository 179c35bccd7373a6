"""The window's curation: opened for each model, kept in step with the names, undoable, autosaved.

When the document gets a catalog, the user's curation file of that model is opened (or a new
one started: :func:`~insight_desktop.core.curation.curation_for`, keyed by the model's content
identity, so a read-only or bundled model can be curated) and joined to the catalog's name
book by a :class:`~insight_desktop.core.curation.NameSync`. Every change goes through
:meth:`CurationController.push` onto one QUndoStack, renames from the inspector's F2 and the
tree included (the document's ``renamer``). Saving is atomic and debounced: 300 ms after the
last change, and at once when the model changes or the window closes (an event filter on the
window, so nothing waits on the window's own close handler).

A curation file that cannot be read is not overwritten: it is moved aside (``….damaged``), the
user is told where, and a new curation starts.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer, Signal
from PySide6.QtGui import QUndoStack

from ...core.curation import RARE_FREQUENCY, Curation, CurationChange, CurationError, NameSync, curation_for
from ..curation_undo import push_change

#: saving waits this long after a change, so a burst of keys is one write
AUTOSAVE_MS = 300


class CurationController(QObject):
    """Owns the curation of the document's model, its undo stack and its autosave."""

    #: the curation was replaced (a model opened or closed); None while no model is loaded
    curationChanged = Signal(object)
    #: a record changed (ids); also after undo and redo
    recordsChanged = Signal(object)
    #: saving failed: a message for the user
    saveFailed = Signal(str)
    #: the curation file could not be read and was moved aside: a message for the user
    openProblem = Signal(str)

    def __init__(self, document, window=None, parent: QObject | None = None):
        super().__init__(parent)
        self.document = document
        self.curation: Curation | None = None
        self.sync: NameSync | None = None
        self.undo_stack = QUndoStack(self)
        self.last_save_s = 0.0          # how long the last save took (the report's number)
        self.rare_below = RARE_FREQUENCY  # "reject rare concepts": firing on fewer patches than this
        self._dirty = False
        self._failing = False           # the last save failed (told once; every change tries again)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_MS)
        self._timer.timeout.connect(self.flush)
        document.modelChanged.connect(self._on_model_changed)
        if window is not None:
            window.installEventFilter(self)
        app = QCoreApplication.instance()
        if app is not None:  # quitting without closing the window (a signal, the session ending)
            app.aboutToQuit.connect(self.flush)
        self._on_model_changed()

    # ------------------------------------------------------------------ opening
    def _on_model_changed(self) -> None:
        self.close_curation()
        catalog = self.document.catalog
        if catalog is None:
            self.curationChanged.emit(None)
            return
        try:
            curation = self._open(catalog)
        except (CurationError, OSError, ValueError, RuntimeError) as exc:  # no manifest to key it by: no curation
            self.openProblem.emit(f"Concept review is not available for this model: {exc}")
            return
        self.curation = curation
        self.sync = NameSync(curation, catalog.names)
        curation.changed.connect(self._on_curation_changed)
        self.document.renamer = self.rename
        if self.sync.adopted:  # names edited before the curation was opened: saved from now on
            self._schedule()
        self.curationChanged.emit(curation)

    def _open(self, catalog) -> Curation:
        try:
            return curation_for(catalog)
        except CurationError as exc:
            from ...core.curation import default_path
            from ...core.curation.records import current_user

            path = default_path(catalog.model_identity, current_user())
            if not path.exists():
                raise
            aside = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.damaged")
            path.replace(aside)
            self.openProblem.emit(f"Your curation of this model could not be read ({exc}). It was kept as "
                                  f"'{aside}', and a new curation was started.")
            return curation_for(catalog)

    def close_curation(self) -> None:
        """Save and let go of the current curation (a model switch, the window closing)."""
        self.flush()
        if self.curation is not None:
            self.curation.changed.disconnect(self._on_curation_changed)
        if self.sync is not None:
            self.sync.close()
        if self.document.renamer == self.rename:
            self.document.renamer = None
        self.curation, self.sync = None, None
        self.undo_stack.clear()  # its commands belong to the curation let go

    # ------------------------------------------------------------------ changing (every change is one undo step)
    def push(self, change: CurationChange) -> bool:
        if self.curation is None:
            return False
        return push_change(self.undo_stack, self.curation, change)

    def rename(self, concept: int, name: str | None) -> None:
        if self.curation is not None:
            self.push(self.curation.plan_rename(concept, name))

    def set_status(self, concepts: Iterable[int], status: str) -> bool:
        return self.curation is not None and self.push(self.curation.plan_status(concepts, status))

    def note(self, concept: int, note: str) -> bool:
        return self.curation is not None and self.push(self.curation.plan_note(concept, note))

    def accept_subtree(self, root: int) -> bool:
        """Accept ``root`` and every concept under it in the display tree (one undo step)."""
        catalog = self.document.catalog
        if self.curation is None or catalog is None or not 0 <= root < catalog.n_concepts:
            return False
        return self.set_status(subtree(catalog, root), "accepted")

    def reject_rare(self) -> bool:
        """Reject every concept firing on < 0.01 % of patches (one undo step)."""
        catalog = self.document.catalog
        if self.curation is None or catalog is None:
            return False
        return self.push(self.curation.plan_reject_rare(np.asarray(catalog.relations.frequency), self.rare_below))

    # ------------------------------------------------------------------ saving
    def _on_curation_changed(self, ids) -> None:
        self._schedule()
        self.recordsChanged.emit(ids)

    def _schedule(self) -> None:
        self._dirty = True
        self._timer.start()

    def flush(self) -> bool:
        """Save now if anything changed since the last save (atomic; cheap when nothing did)."""
        self._timer.stop()
        if not self._dirty or self.curation is None or self.curation.path is None:
            return False
        started = time.perf_counter()
        try:
            self.curation.save()
        except CurationError as exc:
            if not self._failing:  # once, not a message box per key press while the disk is full
                self.saveFailed.emit(f"{exc}\n\nYour changes are kept in the window; saving is tried again "
                                     "after every change and when the window closes.")
            self._failing = True
            return False
        self.last_save_s = time.perf_counter() - started
        self._dirty = self._failing = False
        return True

    @property
    def path(self) -> Path | None:
        return self.curation.path if self.curation is not None else None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close:
            with contextlib.suppress(RuntimeError):  # never let saving stop a window from closing
                self.flush()
        return False


def subtree(catalog, root: int) -> list[int]:
    """``root`` and its display-tree descendants, in tree order."""
    out, stack, seen = [], [int(root)], set()
    while stack:
        j = stack.pop()
        if j in seen:  # a malformed hierarchy must not loop
            continue
        seen.add(j)
        out.append(j)
        stack.extend(reversed(catalog.children(j)))
    return out
