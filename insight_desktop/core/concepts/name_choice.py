"""Two rules for choosing concept names well (docs/method.md §5), used by :mod:`.naming`.

* **Hubness correction** (CSLS, Conneau et al. 2018, "Word translation without parallel data"):
  in high-dimensional embedding spaces some words ("hubs") sit close to almost every concept
  and would win everywhere. Each (word, family) embedding gets a penalty r_w, its mean cosine to
  its k nearest concepts, and candidates are ranked by cos(c, w) − r_w. (Full CSLS is
  2·cos − r_c − r_w; r_c is the same for every word of one concept, so it cannot change that
  concept's ranking and is left out.)
* **Distinct names**: charts, trees and exports label concepts by name, so two concepts must
  never share one. Among concepts whose best term is the same, the best-scoring one keeps it;
  each other one takes its best *unused* candidate if that scores within a small relative margin
  of its own best, else the shared name numbered: "cat (2)", "cat (3)" in order of score.

Torch-free; pure numpy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: CSLS neighbourhood: the k nearest concepts whose mean cosine is a word's hubness.
HUBNESS_K = 10
#: A duplicate concept takes an unused candidate only if it scores at most this fraction of its
#: best score below it; further down, the candidates stop describing the concept and a number is
#: clearer. Relative, because cosine scales differ by backbone (CLIP ≈ 0.3, the demo ≈ 0.1).
#: Default 0 (numbers only, alternatives only on exact ties): on the demo model even 2 % swapped
#: in runner-up words that fitted the photos less often (benchmarks/naming_quality.py).
ALTERNATIVE_MARGIN = 0.0


def word_hubness(C: np.ndarray, flat: np.ndarray, k: int, chunk_elements: int) -> np.ndarray:
    """Per column of ``flat`` ``[N, d]`` (unit word embeddings), the mean cosine to its ``k``
    nearest rows of ``C`` ``[m, d]`` (unit concept embeddings): ``[N]`` float32.

    Concepts are visited in chunks of at most ``chunk_elements`` cosines, keeping a running
    top-k per word, so memory stays O(k·N) for any m.
    """
    m = C.shape[0]
    k = max(1, min(int(k), m))
    n = flat.shape[0]
    rows = max(1, int(chunk_elements) // max(n, 1))
    best = np.full((k, n), -np.inf, np.float32)
    for a in range(0, m, rows):
        S = np.concatenate([best, (C[a:a + rows] @ flat.T).astype(np.float32)], axis=0)
        best = -np.partition(-S, k - 1, axis=0)[:k] if S.shape[0] > k else S
    return best.mean(axis=0).astype(np.float32)


def _numbered(base: str, n: int, taken: set[str]) -> tuple[str, int]:
    """``base (n)`` with the first n at or after ``n`` whose name is unused, and that n."""
    while f"{base} ({n})".casefold() in taken:
        n += 1
    return f"{base} ({n})", n


def distinct_names(candidates: Sequence[Sequence[tuple[str, float]]],
                   margin: float = ALTERNATIVE_MARGIN) -> list[str]:
    """One name per concept, no two alike (compared case-insensitively).

    ``candidates[i]`` is concept i's ranked list of (term, score), best first, non-empty, terms
    distinct within the list. A concept whose best term no other concept has keeps it. In a
    group sharing a best term, the highest score keeps it (ties: lower index); the others, best
    score first, take their first candidate that no concept uses yet and that scores at least
    ``best − margin·|best|``, else "term (2)", "term (3)" … Deterministic for a given input.
    """
    best = [cs[0][0] for cs in candidates]
    keys = [t.casefold() for t in best]
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    names = list(best)
    # Every concept's own best term is reserved: an alternative must not steal a unique name.
    taken = set(keys)
    losers: list[tuple[float, int]] = []
    for members in groups.values():
        if len(members) > 1:
            ranked = sorted(members, key=lambda i: (-candidates[i][0][1], i))
            losers += [(-candidates[i][0][1], i) for i in ranked[1:]]
    counters: dict[str, int] = {}
    for _, i in sorted(losers):
        alternative = _alternative(candidates[i], margin, taken)
        if alternative is not None:
            names[i] = alternative
        else:
            names[i], n = _numbered(best[i], counters.get(keys[i], 2), taken)
            counters[keys[i]] = n + 1
        taken.add(names[i].casefold())
    return names


def _alternative(cands: Sequence[tuple[str, float]], margin: float, taken: set[str]) -> str | None:
    """The first unused candidate after the best within ``margin``·|best| of it, or None."""
    floor = cands[0][1] - margin * abs(cands[0][1])
    for term, score in cands[1:]:
        if score < floor:
            return None
        if term.casefold() not in taken:
            return term
    return None
