"""Merging another annotator's curation into mine, and how much two annotators agree.

A merge is two-way (curation files keep no common ancestor): a concept only *they* reviewed,
named or noted is taken from their file, with their name and time; one only *I* touched stays
mine; one we both touched the same way (same status, name and note) stays mine; one we both
touched differently is a :class:`Conflict`, listed for the annotator to choose mine or theirs.
Everything comes back as :class:`~.curation.CurationChange` values, so a merge is undone like
any other change.

Agreement (:func:`agreement`) compares the *verdicts* — accepted (a rename counts as accepted: the
concept is good, only its name changed), rejected, flagged — over the concepts both annotators
reviewed. Unreviewed concepts are left out, not counted as a category: "not looked at yet" is no
verdict; how many were left out is reported beside the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

from .curation import Curation, CurationChange
from .records import ACCEPTED, FLAGGED, REJECTED, RENAMED, ConceptReview, CurationError, CurationModelError

Side = Literal["mine", "theirs"]
#: the verdict categories agreement is computed on (renamed counts as accepted)
VERDICTS = (ACCEPTED, REJECTED, FLAGGED)


@dataclass(frozen=True)
class Conflict:
    """Both annotators changed ``concept``, differently."""

    concept: int
    mine: ConceptReview
    theirs: ConceptReview


@dataclass(frozen=True)
class MergePlan:
    """What merging their curation into mine does: ``change`` (applied by itself, it takes
    everything that does not conflict) and the ``conflicts`` left to choose."""

    change: CurationChange
    conflicts: tuple[Conflict, ...]

    def resolution(self, choices: Mapping[int, Side] | Side) -> CurationChange:
        """The change settling the conflicts: ``choices`` maps a concept to "mine" or "theirs"
        (conflicts not in it are left as mine), or is one side for all of them."""
        before: dict[int, ConceptReview | None] = {}
        after: dict[int, ConceptReview | None] = {}
        for c in self.conflicts:
            side = choices if isinstance(choices, str) else choices.get(c.concept, "mine")
            if side not in ("mine", "theirs"):
                raise CurationError(f"choose 'mine' or 'theirs' for concept {c.concept}, not {side!r}")
            if side == "theirs":
                before[c.concept], after[c.concept] = c.mine, c.theirs
        n = len(after)
        return CurationChange(MappingProxyType(before), MappingProxyType(after),
                              f"Take theirs for {n} conflicting concept{'s' if n != 1 else ''}")


def plan_merge(mine: Curation, theirs: Curation) -> MergePlan:
    """How to merge ``theirs`` into ``mine`` (both of the same model); nothing is changed yet."""
    _same_model(mine, theirs)
    before: dict[int, ConceptReview | None] = {}
    after: dict[int, ConceptReview | None] = {}
    conflicts = []
    for j, their in sorted(theirs.records.items()):
        my = mine.records.get(j)
        if my is None:
            before[j], after[j] = None, their
        elif my.verdict() != their.verdict():
            conflicts.append(Conflict(j, my, their))
    who = theirs.user or "another annotator"
    change = CurationChange(MappingProxyType(before), MappingProxyType(after),
                            f"Merge {len(after)} concept{'s' if len(after) != 1 else ''} from {who}")
    return MergePlan(change, tuple(conflicts))


def merge(mine: Curation, theirs: Curation, prefer: Side | None = None) -> MergePlan:
    """Apply the non-conflicting part of merging ``theirs`` into ``mine`` (and, with ``prefer``,
    settle every conflict that way); returns the plan, whose conflicts are left to choose
    when ``prefer`` is None."""
    plan = plan_merge(mine, theirs)
    mine.apply(plan.change)
    if prefer is not None:
        mine.apply(plan.resolution(prefer))
    return plan


def _same_model(a: Curation, b: Curation) -> None:
    if a.model_identity != b.model_identity or a.n_concepts != b.n_concepts:
        raise CurationModelError(
            f"the two curations are of different concept models ({a.model_label or a.model_identity[:12]}, "
            f"{a.n_concepts} concepts; {b.model_label or b.model_identity[:12]}, {b.n_concepts} concepts)")


# -- agreement ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """Agreement of two annotators on the concepts both reviewed."""

    n_both: int            # concepts both reviewed: what the numbers are computed on
    n_only_one: int        # concepts only one of them reviewed (left out)
    percent: float         # share of ``n_both`` with the same verdict, in %; NaN when n_both is 0
    kappa: float           # Cohen's κ; NaN when undefined (no concepts, or both always gave one verdict)
    matrix: tuple[tuple[int, ...], ...]   # [mine][theirs] counts over :data:`VERDICTS`

    def __str__(self) -> str:
        if not self.n_both:
            return f"agreement: no concept reviewed by both ({self.n_only_one} by only one)"
        kappa = "undefined" if math.isnan(self.kappa) else f"{self.kappa:.3f}"
        return (f"agreement on {self.n_both} concepts reviewed by both: {self.percent:.1f} %, Cohen's κ {kappa} "
                f"({self.n_only_one} reviewed by only one, left out)")


def verdict(review: ConceptReview) -> str | None:
    """The verdict category of ``review`` (renamed → accepted), or None when unreviewed."""
    if not review.reviewed:
        return None
    return ACCEPTED if review.status == RENAMED else review.status


def agreement(a: Curation, b: Curation) -> Agreement:
    """Percent agreement and Cohen's κ = (p_o − p_e) / (1 − p_e) between ``a`` and ``b``."""
    _same_model(a, b)
    k = len(VERDICTS)
    index = {v: i for i, v in enumerate(VERDICTS)}
    matrix = [[0] * k for _ in range(k)]
    only_one = 0
    for j in sorted(set(a.records) | set(b.records)):
        va, vb = verdict(a.review(j)), verdict(b.review(j))
        if va is None or vb is None:
            only_one += (va is None) != (vb is None)
            continue
        matrix[index[va]][index[vb]] += 1
    n = sum(map(sum, matrix))
    if n == 0:
        return Agreement(0, only_one, math.nan, math.nan, tuple(map(tuple, matrix)))
    p_o = sum(matrix[i][i] for i in range(k)) / n
    rows = [sum(matrix[i]) / n for i in range(k)]
    cols = [sum(matrix[i][c] for i in range(k)) / n for c in range(k)]
    p_e = sum(r * c for r, c in zip(rows, cols))
    kappa = math.nan if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)
    return Agreement(n, only_one, 100.0 * p_o, kappa, tuple(map(tuple, matrix)))
