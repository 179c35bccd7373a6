"""The curation of one concept model by one annotator: every verdict, rename and note, undoable.

Every operation is planned first, as a :class:`CurationChange` (the records of the concepts it
touches, before and after), then applied. ``change.inverse()`` undoes it exactly: the GUI puts
``apply(change)`` / ``apply(change.inverse())`` on a QUndoStack, bulk operations included
("accept this subtree", "reject every concept firing on less than 0.01 % of patches"). The
``set_…`` methods plan and apply in one call and return the change.

:attr:`Curation.changed` (a psygnal signal, no Qt; bound methods held weakly) emits the ids of
the concepts whose record changed, once per applied change. Saving is the owner's business:
:meth:`Curation.save` after every change (atomic, ≈ 16 ms for 8192 reviewed concepts with
notes; debouncing is the GUI's choice). Not thread-safe: one thread (the GUI's) changes and
reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from psygnal import Signal

from ..fileio import atomic_output
from .fileformat import document_bytes, record_json
from .records import (
    ACCEPTED,
    FLAGGED,
    REJECTED,
    RENAMED,
    STATUSES,
    UNREVIEWED,
    UNREVIEWED_STATUS,
    ConceptReview,
    CurationError,
    checked_name,
    checked_note,
    current_user,
    now_utc,
)

#: "reject all concepts firing on < 0.01 % of patches": the default rarity threshold, as a fraction
RARE_FREQUENCY = 1e-4


@dataclass(frozen=True)
class CurationChange:
    """The records of the concepts one operation touches, before and after (None: no record)."""

    before: Mapping[int, ConceptReview | None]
    after: Mapping[int, ConceptReview | None]
    text: str = ""   # what it did, for an Undo menu ("Accept 12 concepts")

    @property
    def concepts(self) -> tuple[int, ...]:
        return tuple(sorted(self.after))

    def inverse(self) -> "CurationChange":
        return CurationChange(self.after, self.before, f"Undo {self.text}" if self.text else "")

    def __bool__(self) -> bool:
        return bool(self.after)


@dataclass(frozen=True)
class Progress:
    """How far a review has come (:meth:`Curation.progress`)."""

    total: int
    counts: Mapping[str, int]   # status → concepts

    @property
    def reviewed(self) -> int:
        return self.total - self.counts.get(UNREVIEWED_STATUS, 0)

    def __str__(self) -> str:
        c = self.counts
        text = f"{self.reviewed} of {self.total} reviewed, {c.get(RENAMED, 0)} renamed, {c.get(REJECTED, 0)} rejected"
        return text + (f", {c[FLAGGED]} flagged" if c.get(FLAGGED) else "")


class Curation:
    """Reviews of the ``n_concepts`` concepts of the model ``model_identity``, by ``user``."""

    #: the records of these concepts changed (a tuple of ids, ascending)
    changed = Signal(object)

    def __init__(self, model_identity: str, n_concepts: int, *, user: str | None = None,
                 model_label: str = "", path: str | os.PathLike | None = None,
                 records: Mapping[int, ConceptReview] | None = None):
        if not 0 < int(n_concepts):
            raise CurationError(f"a curation needs at least one concept, not {n_concepts}")
        self.model_identity = str(model_identity)
        self.n_concepts = int(n_concepts)
        self.user = user or current_user()
        self.model_label = str(model_label)   # a name people recognise (the bundle's file name)
        self.path: Path | None = Path(path) if path is not None else None
        self._records: dict[int, ConceptReview] = {}
        self._lines: dict[int, str] = {}      # concept → its serialised record (saving re-uses them)
        for j, review in (records or {}).items():
            self._put(self._check(j), review)

    # ------------------------------------------------------------------ reading
    def review(self, concept: int) -> ConceptReview:
        """The record of ``concept`` (:data:`.records.UNREVIEWED` when it has none)."""
        return self._records.get(self._check(concept), UNREVIEWED)

    def status(self, concept: int) -> str:
        return self.review(concept).status

    @property
    def records(self) -> Mapping[int, ConceptReview]:
        """Every concept with a record, ``id → review`` (read-only view)."""
        return MappingProxyType(self._records)

    def names(self) -> dict[int, str]:
        """The annotator's names, ``id → name`` (what :class:`..concepts.names.NameBook` takes as edits)."""
        return {j: r.name for j, r in sorted(self._records.items()) if r.name is not None}

    def with_status(self, *statuses: str) -> tuple[int, ...]:
        """Concepts whose status is one of ``statuses``, ascending (``unreviewed`` included)."""
        wanted = set(statuses)
        if UNREVIEWED_STATUS in wanted:
            return tuple(j for j in range(self.n_concepts) if self.status(j) in wanted)
        return tuple(sorted(j for j, r in self._records.items() if r.status in wanted))

    def rejected(self) -> frozenset[int]:
        return frozenset(self.with_status(REJECTED))

    def progress(self) -> Progress:
        counts = dict.fromkeys(STATUSES, 0)
        for r in self._records.values():
            counts[r.status] += 1
        counts[UNREVIEWED_STATUS] += self.n_concepts - len(self._records)
        return Progress(self.n_concepts, MappingProxyType(counts))

    # ------------------------------------------------------------------ planning
    def plan(self, concepts: Iterable[int], text: str, **fields) -> CurationChange:
        """The change setting ``fields`` (status, name, note) on ``concepts``; concepts it leaves
        as they are are not in it. Stamped with this curation's user and the time now."""
        if "status" in fields and fields["status"] not in STATUSES:
            raise CurationError(f"unknown status {fields['status']!r}; use one of {', '.join(STATUSES)}")
        if "name" in fields:
            fields["name"] = checked_name(fields["name"])
        if "note" in fields:
            fields["note"] = checked_note(fields["note"])
        stamp = {"by": self.user, "at": now_utc()}
        before: dict[int, ConceptReview | None] = {}
        after: dict[int, ConceptReview | None] = {}
        for j in dict.fromkeys(self._check(c) for c in concepts):
            old = self._records.get(j, UNREVIEWED)
            new = replace(old, **fields).normalized()
            if new.verdict() == old.verdict():
                continue
            new = replace(new, **stamp)
            before[j] = self._records.get(j)
            after[j] = None if new.is_default else new
        return CurationChange(MappingProxyType(before), MappingProxyType(after), text)

    def plan_status(self, concepts: Iterable[int], status: str) -> CurationChange:
        change = self.plan(concepts, "", status=status)
        return replace(change, text=f"{_VERB.get(status, status)} {_count(change.after)}")

    def plan_rename(self, concept: int, name: str | None) -> CurationChange:
        """Rename ``concept`` (a blank or None name gives it back the model's name). An
        unreviewed concept becomes ``renamed``; a rejected or flagged one keeps its status."""
        old = self.review(concept)
        fields: dict = {"name": name}
        if old.status == UNREVIEWED_STATUS and checked_name(name) is not None:
            fields["status"] = RENAMED
        return self.plan([concept], f"Rename concept {int(concept)}", **fields)

    def plan_note(self, concept: int, note: str | None) -> CurationChange:
        return self.plan([concept], f"Note on concept {int(concept)}", note=note)

    def plan_reject_rare(self, frequency: Sequence[float], below: float = RARE_FREQUENCY) -> CurationChange:
        """Reject every concept firing on less than ``below`` of the patches (``frequency``: one
        fraction per concept, e.g. :attr:`..concepts.relations.Relations.frequency`)."""
        if len(frequency) != self.n_concepts:
            raise CurationError(f"{len(frequency)} frequencies given for {self.n_concepts} concepts")
        rare = [j for j in range(self.n_concepts) if float(frequency[j]) < below]
        change = self.plan(rare, "", status=REJECTED)
        return replace(change, text=f"Reject {_count(change.after)} firing on < {100 * below:g} % of patches")

    # ------------------------------------------------------------------ changing
    def apply(self, change: CurationChange) -> tuple[int, ...]:
        """Set the ``after`` records of ``change``; emits :attr:`changed` if anything changed."""
        touched = []
        for j, review in change.after.items():
            j = self._check(j)
            if self._records.get(j) != review:
                self._put(j, review)
                touched.append(j)
        ids = tuple(sorted(touched))
        if ids:
            self.changed.emit(ids)
        return ids

    def set_status(self, concepts: Iterable[int], status: str) -> CurationChange:
        return self._do(self.plan_status(concepts, status))

    def accept(self, concepts: Iterable[int]) -> CurationChange:
        """Accept ``concepts`` (a subtree: its ids, e.g. ``[root, *relations.descendants(root)]``)."""
        return self.set_status(concepts, ACCEPTED)

    def reject(self, concepts: Iterable[int]) -> CurationChange:
        return self.set_status(concepts, REJECTED)

    def flag(self, concepts: Iterable[int]) -> CurationChange:
        return self.set_status(concepts, FLAGGED)

    def rename(self, concept: int, name: str | None) -> CurationChange:
        return self._do(self.plan_rename(concept, name))

    def note(self, concept: int, note: str | None) -> CurationChange:
        return self._do(self.plan_note(concept, note))

    def reject_rare(self, frequency: Sequence[float], below: float = RARE_FREQUENCY) -> CurationChange:
        return self._do(self.plan_reject_rare(frequency, below))

    def _do(self, change: CurationChange) -> CurationChange:
        self.apply(change)
        return change

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the curation to ``path`` (default: :attr:`path`) atomically — a temporary file,
        fsynced, renamed over the old one — and return the path. Cheap enough to call after
        every change: records' lines are kept serialised between saves."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise CurationError("this curation has no file yet: give a path to save it to")
        try:
            with atomic_output(target) as fh:
                fh.write(self.to_bytes())
        except OSError as exc:
            raise CurationError(f"cannot save the curation to '{target}': {exc.strerror or exc}") from None
        return target

    def to_bytes(self) -> bytes:
        """The file's bytes (:mod:`.fileformat`)."""
        head = {"user": self.user, "progress": dict(self.progress().counts),
                "model": {"identity": self.model_identity, "n_concepts": self.n_concepts, "label": self.model_label}}
        return document_bytes(head, (self._line(j) for j in sorted(self._records)))

    def _line(self, concept: int) -> str:
        line = self._lines.get(concept)
        if line is None:
            line = self._lines[concept] = record_json(concept, self._records[concept])
        return line

    # ------------------------------------------------------------------ internals
    def _put(self, j: int, review: ConceptReview | None) -> None:
        self._lines.pop(j, None)
        if review is None or review.is_default:
            self._records.pop(j, None)
        else:
            self._records[j] = review

    def _check(self, concept: int) -> int:
        j = int(concept)
        if not 0 <= j < self.n_concepts:
            raise CurationError(f"concept {j} does not exist: the model has {self.n_concepts} concepts")
        return j


_VERB = {ACCEPTED: "Accept", REJECTED: "Reject", FLAGGED: "Flag", UNREVIEWED_STATUS: "Reset",
         RENAMED: "Mark renamed"}


def _count(ids) -> str:
    n = len(ids)
    return f"concept {next(iter(ids))}" if n == 1 else f"{n} concepts"
