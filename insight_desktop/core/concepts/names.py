"""The one place a concept's name is looked up: the model's names plus the user's edits.

An :class:`~..analysis.Analysis` carries concept ids only; every view and export asks a
:class:`NameBook` for the words. So a concept renamed here is renamed everywhere at once — the
tree, the inspector, the charts, the exports — without analysing anything again.

The model's names are :meth:`.naming.ConceptNames.display_name` (the automatic name, or the
annotator's name stored in the bundle); the user's edits, made while the app runs, lie over them.
The edits are a plain ``id → name`` mapping (:attr:`NameBook.edits`), ready to be saved and read
back by whoever keeps them. Listeners connect to :attr:`NameBook.renamed` (a psygnal signal: no
Qt, and bound methods are held weakly, so a closed window is neither kept alive nor called).
Not thread-safe: one thread (the GUI's) edits and reads it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Mapping

import numpy as np
from psygnal import Signal

from .bundle_schema import MAX_NAME_CHARS
from .naming import ConceptNames, NameCandidate


def clean_name(name: str) -> str:
    """``name`` as a name is shown: one line (names sit in rows and bars), at most
    :data:`MAX_NAME_CHARS` characters, as the model's own names (a session or curation file may
    hold anything)."""
    name = " ".join(str(name).split())
    return name[:MAX_NAME_CHARS - 1] + "…" if len(name) > MAX_NAME_CHARS else name


class NameBook:
    """Concept id → the name to show, for every concept of one model."""

    #: a concept's shown name changed (its id)
    renamed = Signal(int)

    def __init__(self, model_names: ConceptNames, edits: Mapping[int, str] | None = None):
        self.model_names = model_names
        self._edits: dict[int, str] = {}
        self._all: tuple[str, ...] | None = None
        for j, name in (edits or {}).items():
            self._set(int(j), name)

    def __len__(self) -> int:
        return len(self.model_names)

    # ------------------------------------------------------------------ looking up
    def name(self, concept: int) -> str:
        """The name shown for ``concept``: the user's edit, else the model's name."""
        j = self._check(concept)
        edit = self._edits.get(j)
        return edit if edit is not None else self.model_names.display_name(j)

    def names(self, concepts: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.name(j) for j in concepts)

    def all(self) -> tuple[str, ...]:
        """Every concept's shown name, by id (kept until the next edit: a tree asks for it per pass)."""
        if self._all is None:
            self._all = self.model_names.display_names if not self._edits else tuple(
                self.name(j) for j in range(len(self)))
        return self._all

    def model_name(self, concept: int) -> str:
        """The model's name of ``concept``, whatever the user calls it."""
        return self.model_names.display_name(self._check(concept))

    def candidates(self, concept: int) -> tuple[NameCandidate, ...]:
        """The model's best vocabulary terms for ``concept``, best first."""
        return self.model_names.candidates[self._check(concept)]

    def find(self, text: str) -> np.ndarray:
        """Concepts whose shown name contains ``text`` (case-insensitive), ascending."""
        needle = text.strip().lower()
        if not needle:
            return np.arange(len(self))
        return np.array([j for j, n in enumerate(self.all()) if needle in n.lower()], dtype=np.int64)

    @property
    def edits(self) -> Mapping[int, str]:
        """The user's names, ``id → name`` (a read-only copy)."""
        return MappingProxyType(dict(self._edits))

    # ------------------------------------------------------------------ editing
    def rename(self, concept: int, name: str | None) -> None:
        """Call ``concept`` ``name`` from now on; None, blank or the model's own name removes the edit."""
        j = self._check(concept)
        before = self.name(j)
        self._set(j, name)
        if self.name(j) != before:
            self._all = None
            self.renamed.emit(j)

    def clear(self, concept: int) -> None:
        """Back to the model's name."""
        self.rename(concept, None)

    def _set(self, j: int, name: str | None) -> None:
        name = clean_name(name) if name is not None else ""
        if not name or name == self.model_names.display_name(self._check(j)):
            self._edits.pop(j, None)
        else:
            self._edits[j] = name

    def _check(self, concept: int) -> int:
        j = int(concept)
        if not 0 <= j < len(self):
            raise IndexError(f"concept {j} does not exist: the model has {len(self)} concepts")
        return j
