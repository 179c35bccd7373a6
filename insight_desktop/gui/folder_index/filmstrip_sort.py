"""The filmstrip in the order of the selected concept's activation, or only the images where it fires.

The window's image list *is* what the strip shows, so sorting reorders ``window.images`` itself
(the current image stays current): PgUp/PgDown, the "n / N" position and the strip then agree.
The name-ordered list is kept as the *base*; a list the window opens later (another folder)
becomes the new base and is sorted the same way. Activations come from the folder index
(:meth:`~insight_desktop.core.index.FolderIndex.image_activations`), read on a pool thread; a
result that arrives after the concept, the list or the index changed is dropped. Without an
index the strip keeps name order and the control says why.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..jobs import JobPool, Outcome
from ..widgets.plain_text import escaped_tooltip

BY_NAME, BY_ACTIVATION = "name", "activation"
#: the sort combo's entries, in order
SORT_LABELS = {BY_NAME: "Sort by name", BY_ACTIVATION: "Sort by concept activation"}
NO_INDEX = "Index this folder first"


def index_stamp(index: Path | None) -> tuple:
    """``index`` with the modification times of its file and its write-ahead log: a query is
    asked again once the index changed (images indexed meanwhile)."""
    if index is None:
        return (None,)
    stamps = []
    for p in (index, index.with_name(index.name + "-wal")):
        try:
            stamps.append(p.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return (index, *stamps)


@dataclass(frozen=True)
class Arrangement:
    """The base list rearranged: ``order`` (indices into the base) and what the strip should say."""

    order: tuple[int, ...]
    message: str = ""


def activations_for(paths: Sequence[Path], root: str | os.PathLike,
                    by_path: dict[str, float]) -> list[float]:
    """Each of ``paths``' largest activation from ``by_path`` (index-relative POSIX paths); NaN
    for an image the index does not hold (outside its folder, or new since it was built)."""
    base = Path(root).resolve()
    folders: dict[str, str | None] = {}   # each parent folder resolved once (10k files: 0.4 s → 30 ms)
    out = []
    for p in paths:
        parent, name = os.path.split(os.fspath(p))
        if parent not in folders:
            try:
                rel = Path(parent).resolve().relative_to(base).as_posix()
                folders[parent] = "" if rel == "." else rel + "/"
            except (ValueError, OSError):
                folders[parent] = None
        prefix = folders[parent]
        out.append(math.nan if prefix is None else by_path.get(prefix + name, math.nan))
    return out


def arrange(activations: Sequence[float], mode: str, only_firing: bool, name: str = "the concept") -> Arrangement:
    """The order of a name-ordered list with these activations (NaN: not indexed).

    ``BY_ACTIVATION``: largest first, ties and unindexed images in name order, unindexed last;
    ``only_firing``: images where it fires (activation > 0) only — unless it fires in none, then
    every image stays and the message says so."""
    n = len(activations)
    known = [i for i in range(n) if not math.isnan(activations[i])]
    missing = n - len(known)
    if mode == BY_ACTIVATION:
        order = sorted(known, key=lambda i: (-activations[i], i)) + [i for i in range(n) if math.isnan(activations[i])]
    else:
        order = list(range(n))
    notes = []
    if only_firing:
        firing = [i for i in order if not math.isnan(activations[i]) and activations[i] > 0]
        if firing:
            notes.append(f"{name} fires in {len(firing):,} of {n:,} images")
            order = firing
        else:
            notes.append(f"{name} fires in none of these images: all shown")
    elif mode == BY_ACTIVATION and known:
        notes.append(f"by {name}")
    if missing:
        notes.append(f"{missing:,} not indexed yet{'' if only_firing else ' (last)'}")
    return Arrangement(tuple(order), "; ".join(notes))


def _query_job(index: Path, concept: int, paths: list[Path]):
    def job(_progress, _should_stop) -> list[float]:  # on a pool thread: opens its own connection
        from ...core.index import FolderIndex

        with FolderIndex(index) as fi:
            root = fi.info().folder
            return activations_for(paths, root, fi.image_activations(concept))

    return job


class SortControls(QWidget):
    """The combo, the checkbox and a one-line message, in a narrow column left of the thumbnails."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sort = QComboBox()
        for key, label in SORT_LABELS.items():
            self.sort.addItem(label, key)
        self.sort.setToolTip("Order the images by the selected concept's largest activation in each "
                             "(from the folder index)")
        self.only_firing = QCheckBox("Only where it fires")
        self.only_firing.setToolTip("Show only the images where the selected concept fires (folder index)")
        self.message = QLabel()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        small = self.message.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.9))
        self.message.setFont(small)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        layout.addWidget(self.sort)
        layout.addWidget(self.only_firing)
        layout.addWidget(self.message, 1)
        self.setFixedWidth(max(170, self.sort.sizeHint().width() + 8))

    def mode(self) -> str:
        return str(self.sort.currentData())

    def set_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setToolTip(escaped_tooltip(text))


class FilmstripSorter(QObject):
    """Keeps ``window.images`` (and the strip) in the order the controls ask for.

    ``index_of()`` returns the folder index that applies now (a Path) or None with a reason, as
    ``(path, reason)``; the wiring supplies it."""

    def __init__(self, window: Any, controls: SortControls, index_of):
        super().__init__(window)
        self.window, self.controls, self.index_of = window, controls, index_of
        self.base: list[Path] = list(window.images)      # the list in the order the window opened it
        self.applied: list[Path] = list(window.images)   # what this sorter last made the window show
        self._asked: tuple | None = None                 # (index, concept, mode, only, base id) of the last query
        self._deferred = False                           # a reorder waits for an image load to finish
        self.pool = JobPool(1, self)
        self.pool.done.connect(self._on_result)
        controls.sort.currentIndexChanged.connect(lambda _i: self.update(force=True))
        controls.only_firing.toggled.connect(lambda _on: self.update(force=True))

    def active(self) -> bool:
        return self.controls.mode() == BY_ACTIVATION or self.controls.only_firing.isChecked()

    @Slot()
    def update(self, force: bool = False) -> None:
        """Arrange the strip for the current concept, list and index (queried off the GUI thread)."""
        w = self.window
        if list(w.images) != self.applied:  # the window opened another list: that is the new base
            self.base, self.applied = list(w.images), list(w.images)
            force = True
        if not self.active():
            self._asked = None
            self.pool.new_generation()
            self.controls.set_message("")
            self._show(list(range(len(self.base))))
            return
        concept = w.document.concept
        index, reason = self.index_of()
        key = (index_stamp(index), concept, self.controls.mode(), self.controls.only_firing.isChecked(),
               id(self.base))
        if key == self._asked and not force:
            return
        self._asked = key
        self.pool.new_generation()
        if index is None or concept < 0 or not self.base:
            self.controls.set_message(reason if index is None else "Select a concept to sort by" if self.base else "")
            self._show(list(range(len(self.base))))
            return
        self.controls.set_message("Reading the folder index…")
        self.pool.submit((key, concept), _query_job(index, concept, list(self.base)), "read the folder index")

    @Slot(object, object)
    def _on_result(self, key: Any, outcome: Outcome) -> None:
        asked, concept = key
        if asked != self._asked:
            return  # the concept, the list or the controls changed since
        if not outcome.succeeded:
            message = outcome.failure.message if outcome.failure else "stopped"
            self.controls.set_message(f"Could not read the folder index: {message}")
            self._show(list(range(len(self.base))))
            return
        name = self.window.document.concept_name(concept)
        arranged = arrange(outcome.value, self.controls.mode(), self.controls.only_firing.isChecked(), f"'{name}'")
        self.controls.set_message(arranged.message)
        self._show(list(arranged.order))

    def _show(self, order: list[int]) -> None:
        """Make the window list ``base[order]``, the current image kept (else the first one opened)."""
        from ..window_navigation import update_title_and_position

        w = self.window
        paths = [self.base[i] for i in order]
        if paths == list(w.images):
            return
        if w.loader.target() is not None:  # an image is on its way: its index refers to the old list
            self._deferred = True
            return
        self._deferred = False
        current = w.images[w.index] if 0 <= w.index < len(w.images) else None
        self.applied = paths
        if current is not None and current in paths:
            w.images = paths
            w.index = paths.index(current)
            w.filmstrip.set_images(paths, w.index)
            update_title_and_position(w)
        else:  # the current image does not fire: show the first that does
            w.open_images(paths, 0, w.folder)

    def after_image_load(self) -> None:
        """Call when an image was shown: a new list becomes the base; a deferred reorder happens now."""
        if self._deferred or list(self.window.images) != self.applied:
            self.update(force=True)
