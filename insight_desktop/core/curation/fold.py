"""Rejected concepts folded into one bar, so an explanation stays exact while they are hidden.

A class's (or segment's) logit is exactly the sum of its concepts' contributions plus the bias
(docs/method.md). Hiding the rejected concepts' bars would make the bars no longer add up;
:func:`fold_rejected` sums them into one "rejected concepts" bar instead. The bar is a
:class:`~..tasks.codes.ConceptContribution` with the id :data:`REJECTED_BAR` (−1, no concept's id),
so a chart that draws ``ConceptContribution`` bars draws it unchanged; :func:`name_with_rejected`
gives its label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Collection, Iterable

from ..tasks.codes import ConceptContribution

#: the id of the folded bar (concept ids are ≥ 0)
REJECTED_BAR = -1
REJECTED_LABEL = "rejected concepts"


@dataclass(frozen=True)
class FoldedContributions:
    """Contributions with the rejected concepts summed into one value."""

    kept: tuple[ConceptContribution, ...]   # the others, in the order given
    rejected_value: float                    # the rejected concepts' contributions, summed
    n_rejected: int                          # how many rejected concepts contributed

    def bars(self) -> tuple[ConceptContribution, ...]:
        """``kept`` plus the "rejected concepts" bar (:data:`REJECTED_BAR`) if any was folded,
        largest value first (ties: lower id first), as :func:`..tasks.codes.ranked_contributions`."""
        bars = list(self.kept)
        if self.n_rejected:
            bars.append(ConceptContribution(REJECTED_BAR, self.rejected_value))
        return tuple(sorted(bars, key=lambda c: (-c.value, c.concept)))

    @property
    def total(self) -> float:
        """The sum of every bar (equal to the sum of the contributions given, up to rounding)."""
        return math.fsum([self.rejected_value, *(c.value for c in self.kept)])


def fold_rejected(contributions: Iterable[ConceptContribution], rejected: Collection[int]) -> FoldedContributions:
    """``contributions`` (anything with ``.concept`` and ``.value``) with every concept in
    ``rejected`` summed into one value (:func:`math.fsum`: correctly rounded, whatever the order)."""
    kept, folded = [], []
    rejected = rejected if isinstance(rejected, (set, frozenset)) else frozenset(int(j) for j in rejected)
    for c in contributions:
        if int(c.concept) in rejected:
            folded.append(float(c.value))
        else:
            kept.append(c if isinstance(c, ConceptContribution)
                        else ConceptContribution(int(c.concept), float(c.value)))
    return FoldedContributions(tuple(kept), math.fsum(folded), len(folded))


def name_with_rejected(name_of: Callable[[int], str]) -> Callable[[int], str]:
    """``name_of`` that also names the folded bar (for a chart's labels)."""
    def name(concept: int) -> str:
        return REJECTED_LABEL if concept == REJECTED_BAR else name_of(concept)
    return name
