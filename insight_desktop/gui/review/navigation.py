"""The order concepts are reviewed in, the filters, and where "next" goes (no Qt).

Two orders: the display tree depth-first (a parent, then its children: what the tree shows), or
by firing frequency, most frequent first (the concepts that explain the most first). Filters by
status and level narrow what next / previous visit; "next" from a concept the filters hide (it
was just judged and no longer passes "unreviewed") goes on from its place in the order, so
auto-advance never jumps back to the start. Everything per key press is a few array look-ups
and one pass over the statuses of the concepts after the current one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TREE_ORDER = "Tree order"
FREQUENCY_ORDER = "By frequency"
ORDERS = (TREE_ORDER, FREQUENCY_ORDER)
ALL = "all"


def tree_order(display_parent: np.ndarray) -> np.ndarray:
    """Concept ids depth-first through the display tree (roots and siblings ascending)."""
    dp = np.asarray(display_parent, dtype=np.int64)
    m = dp.size
    children: list[list[int]] = [[] for _ in range(m + 1)]   # slot 0: the roots
    for j in range(m):
        p = int(dp[j])
        children[p + 1 if 0 <= p < m and p != j else 0].append(j)
    out, seen, stack = [], np.zeros(m, dtype=bool), list(reversed(children[0]))
    while stack:
        j = stack.pop()
        if seen[j]:
            continue
        seen[j] = True
        out.append(j)
        stack.extend(reversed(children[j + 1]))
    out.extend(int(j) for j in np.flatnonzero(~seen))  # a cycle in a malformed file: still reviewable
    return np.asarray(out, dtype=np.int64)


def frequency_order(frequency: np.ndarray) -> np.ndarray:
    """Concept ids by firing frequency, highest first (ties: lower id first)."""
    f = np.asarray(frequency, dtype=np.float64)
    return np.lexsort((np.arange(f.size), -f)).astype(np.int64)


@dataclass(frozen=True)
class ReviewFilter:
    status: str = ALL      # a curation status, or ALL
    level: int = -1        # a hierarchy level, or −1 for every level


class ReviewNavigator:
    """Next / previous / next unreviewed over one catalog's concepts, as the curation says now."""

    def __init__(self, catalog, curation):
        self.catalog, self.curation = catalog, curation
        rel = catalog.relations
        self.level = np.asarray(rel.level, dtype=np.int64)
        self._orders = {TREE_ORDER: tree_order(rel.display_parent), FREQUENCY_ORDER: frequency_order(rel.frequency)}
        self._positions = {name: _positions(order) for name, order in self._orders.items()}
        self.order_name = TREE_ORDER
        self.filter = ReviewFilter()

    @property
    def order(self) -> np.ndarray:
        return self._orders[self.order_name]

    def levels(self) -> list[int]:
        return sorted(int(v) for v in np.unique(self.level))

    def passes(self, concept: int, flt: ReviewFilter | None = None) -> bool:
        flt = flt or self.filter
        if flt.level >= 0 and int(self.level[concept]) != flt.level:
            return False
        return flt.status == ALL or self.curation.status(concept) == flt.status

    def first(self) -> int:
        """The first concept the filters let through, −1 when none does."""
        return self._scan(-1, +1, self.filter)

    def step(self, current: int, step: int) -> int:
        """The next (+1) or previous (−1) concept after ``current`` that passes the filters, wrapping
        round; −1 when none does (``current`` itself counts when it is the only one)."""
        return self._scan(current, step, self.filter)

    def next_unreviewed(self, current: int) -> int:
        """The next unreviewed concept after ``current`` (level filter kept, status filter ignored)."""
        return self._scan(current, +1, ReviewFilter("unreviewed", self.filter.level))

    def _scan(self, current: int, step: int, flt: ReviewFilter) -> int:
        order, n = self.order, self.order.size
        if n == 0:
            return -1
        pos = self._positions[self.order_name]
        start = int(pos[current]) if 0 <= current < n else (-1 if step > 0 else 0)
        level_ok = None if flt.level < 0 else self.level[order] == flt.level
        for k in range(1, n + 1):
            i = (start + step * k) % n
            if level_ok is not None and not level_ok[i]:
                continue
            j = int(order[i])
            if flt.status == ALL or self.curation.status(j) == flt.status:
                return j
        return -1

    def count(self) -> int:
        """How many concepts pass the filters (for the panel's "n shown")."""
        return sum(1 for j in self.order if self.passes(int(j)))


def _positions(order: np.ndarray) -> np.ndarray:
    pos = np.empty(order.size, dtype=np.int64)
    pos[order] = np.arange(order.size)
    return pos
