"""Keeping a :class:`..concepts.names.NameBook` and a :class:`.curation.Curation` in step.

The NameBook stays the one place names are looked up; the curation is where the annotator's
names are kept (and saved). :class:`NameSync` makes them one: built, it gives the NameBook the
curation's names; afterwards a rename in either shows in the other at once (a curation rename,
undo and merge included, renames in the NameBook, whose ``renamed`` signal redraws the views; a
rename through the NameBook — the tree's inline editor — becomes a curation rename). The
NameBook's own edits from before (a restored session's) are adopted into the curation, so
nothing is lost; :attr:`NameSync.adopted` is that change (empty when there were none).

Both signals hold bound methods weakly: keep the NameSync as long as both should stay in step,
or call :meth:`NameSync.close`.
"""

from __future__ import annotations

from ..concepts.names import NameBook
from .curation import Curation, CurationChange
from .records import CurationModelError


class NameSync:
    def __init__(self, curation: Curation, names: NameBook):
        if len(names) != curation.n_concepts:
            raise CurationModelError(f"the curation has {curation.n_concepts} concepts, the model's names "
                                     f"{len(names)}")
        self.curation, self.names = curation, names
        self._busy = False
        theirs = {j: n for j, n in names.edits.items() if curation.review(j).name is None}
        self.adopted: CurationChange | None = None
        self._busy = True
        try:
            for j, name in curation.names().items():
                names.rename(j, name)
            for j, name in theirs.items():
                change = curation.rename(j, name)
                self.adopted = change if self.adopted is None else _joined(self.adopted, change)
        finally:
            self._busy = False
        curation.changed.connect(self._curation_changed)
        names.renamed.connect(self._book_renamed)

    def close(self) -> None:
        self.curation.changed.disconnect(self._curation_changed)
        self.names.renamed.disconnect(self._book_renamed)

    def _curation_changed(self, ids: tuple[int, ...]) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            for j in ids:
                self.names.rename(j, self.curation.review(j).name)
        finally:
            self._busy = False

    def _book_renamed(self, concept: int) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            self.curation.rename(concept, self.names.edits.get(concept))
        finally:
            self._busy = False


def _joined(a: CurationChange, b: CurationChange) -> CurationChange:
    return CurationChange({**b.before, **a.before}, {**a.after, **b.after}, "Adopt the names edited before")
