"""Deletion curves, to measure how faithful an explanation is: switch off the concepts that
contribute most to a segment or a class, one by one (``z_j = 0``, recomputed from the Analysis alone
by :mod:`.whatif`), and follow how its pixel share or logit falls; compare with concepts switched
off in a random order. ``insight faithfulness`` prints the area between the two curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .codes import PatchCodes
from .decoder import without_concepts
from .whatif import Explained, Recomputer, recomputer

SEGMENTATION, CLASSIFICATION = "segmentation", "classification"
TOP, RANDOM = "top", "random"


@dataclass(frozen=True)
class Target:
    """What a deletion curve follows: the pixel share of segmentation class ``class_index`` or
    the zero-shot logit of classification class ``class_index``."""

    task: str
    class_index: int


@dataclass(frozen=True, eq=False)
class DeletionCurve:
    """``values[k]``: the target's value with the first ``k`` of ``concepts`` switched off
    (k = 0..steps); for ``order="random"`` the mean over ``seeds`` random orders (``concepts``: the first)."""

    target: Target
    order: str
    mode: str
    concepts: tuple[int, ...]
    values: np.ndarray
    seeds: int = 1


def deletion_curve(analysis: Explained, target: Target, *, order: str = TOP, seed: int = 0, steps: int | None = None,
                   seeds: int = 3, keep_residual: bool = False) -> DeletionCurve:
    """Switch off concepts one by one and follow the target's value: ``"top"`` = by contribution to
    the target class, largest first (the concept-path explanation: the segment's summed contributions,
    or the class's logit contributions); ``"random"`` = the active concepts in a random order
    (``seeds`` orders from ``seed``, values averaged). ``steps`` defaults to min(20, active concepts)."""
    if order not in (TOP, RANDOM):
        raise ValueError(f"order must be {TOP!r} or {RANDOM!r}, not {order!r}")
    grid = recomputer(analysis, keep_residual)
    value = _value_of(grid, target)
    active = analysis.codes.active_concepts()
    n = min(int(steps) if steps is not None else 20, active.size)
    if order == TOP:
        orders = [_by_contribution(analysis, target, active)[:n]]
    else:
        orders = [np.random.default_rng(seed + i).permutation(active)[:n] for i in range(max(int(seeds), 1))]
    values = np.zeros((len(orders), n + 1))
    for r, chosen in enumerate(orders):
        for k in range(n + 1):
            values[r, k] = value(without_concepts(analysis.codes, chosen[:k]))
    return DeletionCurve(target, order, grid.mode, tuple(int(c) for c in orders[0]), _read_only(values.mean(axis=0)),
                         len(orders))


def area_between(top: DeletionCurve, random: DeletionCurve) -> float:
    """∫ (random − top) over the fraction of steps done (trapezoids, x from 0 to 1), in the target's
    units (share of pixels, or logit): positive when the top concepts make the value fall faster."""
    if top.values.shape != random.values.shape:
        raise ValueError("the two curves have different numbers of steps")
    diff = random.values - top.values
    if diff.size < 2:
        return 0.0
    return float((diff[1:] + diff[:-1]).sum() / (2 * (diff.size - 1)))


def _by_contribution(analysis: Explained, target: Target, active: np.ndarray) -> np.ndarray:
    """The active concepts by their contribution to the target class, largest first (ties: lower id);
    concepts that do not contribute count as 0."""
    if target.task == SEGMENTATION:
        seg = analysis.segmentation
        found = seg.segment(target.class_index) if seg is not None else None
        contributions = found.contributions if found is not None else ()
    else:
        if analysis.classification is None:
            raise ValueError("this analysis has no classification: no classes were given")
        contributions = analysis.classification.explain(target.class_index).contributions
    value = dict.fromkeys(active.tolist(), 0.0)
    value.update((c.concept, c.value) for c in contributions)
    return np.asarray(sorted(value, key=lambda j: (-value[j], j)), dtype=np.int64)


def _value_of(grid: Recomputer, target: Target) -> Callable[[PatchCodes], float]:
    """``codes → value`` for a deletion curve."""
    if target.task == SEGMENTATION:
        if grid.inputs is None:
            raise ValueError("this analysis has no segmentation: no classes were given")
        if not 0 <= target.class_index < len(grid.label_names):
            raise ValueError(f"no segmentation class {target.class_index}")
        return lambda codes: float(grid.shares(grid.labels(codes))[target.class_index])
    if target.task == CLASSIFICATION:
        if grid.text is None or not grid.class_names:
            raise ValueError("this analysis has no classification: no classes were given")
        if not 0 <= target.class_index < len(grid.class_names):
            raise ValueError(f"no classification class {target.class_index}")
        return lambda codes: float(grid.logits(codes)[target.class_index])
    raise ValueError(f"a target's task is {SEGMENTATION!r} or {CLASSIFICATION!r}, not {target.task!r}")


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr
