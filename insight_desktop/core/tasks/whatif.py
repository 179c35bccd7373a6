"""What if: switch concepts off (``z_j = 0``) and recompute the prediction from an Analysis alone —
no model, no worker: segmentation labels and class shares, zero-shot classification, the
explanation through the first L Matryoshka levels (deletion curves: :mod:`.deletion`).

**What happens to the reconstruction error.** Two modes, named in every result:

* ``"concepts only"``: the prediction reads ``x̂' = z' W_dec + b_dec`` — the concept path of
  :mod:`.segmentation` and :mod:`.classification` with the concepts removed.
* ``"concepts + residual"``: it reads ``x − Σ_{j off} z_j W_dec[j] = x̂' + (x − x̂)``, with the
  per-patch ``x − x̂`` the Analysis keeps (``faithfulness.residual_vectors``): the opaque
  path's input with the concepts taken out, so what the SAE fails to explain stays in. The
  zero-shot classifier's opaque reference reads the mean patch feature, so here it reads
  ``mean_q x̂'(q) + mean_q (x − x̂)(q)``: the mean feature minus the removed concepts' mean
  decoded contribution.

"Before" is the same computation with nothing switched off (in the first mode the Analysis'
own concept-path labels and logits; in the second the opaque reference, to the float32 rounding
of the stored residual), made by the same code on the same grid, so ``changed`` shows only what
the switch did. Labels are this grid's (the fast window mode's), as
:meth:`.analysis.Analysis.segmentation_inputs` explains.

**Cost.** Only labels are recomputed (the per-segment explanations' adjoint pass is skipped),
so a 448-px image with 8 classes takes under 100 ms (``benchmarks/bench_whatif.py``);
:func:`explain` gives the full explained results for any codes when a view needs them.

The Analysis is read through :class:`Explained` (structurally), so this task module does not
import :mod:`..analysis`, which sits above the tasks.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

import numpy as np

from .classification import ClassificationResult, zero_shot
from .codes import PatchCodes
from .decoder import ActiveDecoder, without_concepts
from .resample import CHUNK_PIXELS, NeighbourGram
from .segmentation import (
    BACKGROUND_DELTA,
    LOGIT_SCALE,
    PixelLogits,
    SegmentationInputs,
    SegmentationResult,
    _labels,
    segment,
)

CONCEPTS_ONLY = "concepts only"
CONCEPTS_AND_RESIDUAL = "concepts + residual"


class Explained(Protocol):
    """What this module reads of an Analysis (:class:`..analysis.Analysis` has all of it)."""

    @property
    def codes(self) -> PatchCodes: ...
    @property
    def decoder(self) -> ActiveDecoder: ...
    @property
    def concepts(self) -> Sequence[Any]: ...            # records with .concept and .level
    @property
    def faithfulness(self) -> Any: ...                  # .residual_vectors: x − x̂ [h·w, d] or None
    @property
    def segmentation(self) -> SegmentationResult | None: ...
    @property
    def classification(self) -> ClassificationResult | None: ...
    @property
    def class_embeddings(self) -> np.ndarray | None: ...
    def segmentation_inputs(self, codes: PatchCodes | None = None) -> SegmentationInputs: ...


# ----------------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class SegmentationChange:
    """Labels [H, W] before and after (index into ``class_names``, background included), the
    pixels whose label changed, and each label's share of the pixels [n_labels] before → after."""

    class_names: tuple[str, ...]
    labels_before: np.ndarray
    labels_after: np.ndarray
    changed: np.ndarray
    shares_before: np.ndarray
    shares_after: np.ndarray

    @property
    def changed_share(self) -> float:
        return float(np.count_nonzero(self.changed)) / max(self.changed.size, 1)


@dataclass(frozen=True, eq=False)
class ClassificationChange:
    """Zero-shot logits and probabilities [C] before → after."""

    class_names: tuple[str, ...]
    logits_before: np.ndarray
    logits_after: np.ndarray
    probabilities_before: np.ndarray
    probabilities_after: np.ndarray

    @property
    def predicted_before(self) -> int:
        return int(np.argmax(self.logits_before))

    @property
    def predicted_after(self) -> int:
        return int(np.argmax(self.logits_after))


@dataclass(frozen=True, eq=False)
class WhatIf:
    """The prediction with ``switched_off`` removed (``z_j = 0``), in ``mode``; ``codes`` are the
    codes after. ``segmentation`` / ``classification`` are None when the Analysis has none."""

    mode: str
    switched_off: tuple[int, ...]   # as asked, ascending; concepts not active here change nothing
    codes: PatchCodes
    segmentation: SegmentationChange | None
    classification: ClassificationChange | None


@dataclass(frozen=True, eq=False)
class LevelPrefix:
    """The explanation through the first ``level`` Matryoshka levels (``"concepts only"``): codes of
    concepts of deeper levels set to 0, segmented and classified again with their explanations."""

    level: int
    codes: PatchCodes
    segmentation: SegmentationResult | None
    classification: ClassificationResult | None


@dataclass(frozen=True, eq=False)
class LevelCurve:
    """For each level L: mIoU of the level-L labels against the full model's, and the FVU of the
    prefix reconstruction against ``fvu_against`` ("features": x = x̂ + the stored residual, the
    Analysis' own FVU at the last level; "reconstruction": the full x̂, when no residual is kept)."""

    levels: tuple[int, ...]
    miou: np.ndarray       # float64 [n]; NaN without a segmentation
    fvu: np.ndarray        # float64 [n]
    fvu_against: str


# ----------------------------------------------------------------------------------- switching off
def switch_off(analysis: Explained, concepts: Iterable[int], *, keep_residual: bool = False) -> WhatIf:
    """Segmentation and classification recomputed with ``z_j = 0`` for every ``j`` in ``concepts``."""
    grid = recomputer(analysis, keep_residual)
    off = tuple(sorted({int(c) for c in concepts}))
    codes = without_concepts(analysis.codes, np.asarray(off, dtype=np.int64))
    base = grid.baseline()
    seg = cls = None
    if grid.inputs is not None and base.labels is not None:
        after = base.labels if not off else grid.labels(codes)
        seg = SegmentationChange(grid.label_names, base.labels, after, _ro(after != base.labels),
                                 _ro(grid.shares(base.labels)), _ro(grid.shares(after)))
    if base.logits is not None:
        logits = base.logits if not off else grid.logits(codes)
        cls = ClassificationChange(grid.class_names, base.logits, logits, _softmax(base.logits), _softmax(logits))
    return WhatIf(grid.mode, off, codes, seg, cls)


def subtree(model_or_catalog: Any, concept: int) -> tuple[int, ...]:
    """``concept`` and everything below it in the display tree, ascending. Reads ``children(j)``
    (a :class:`..concepts.concept_catalog.ConceptCatalog`) or ``relations.children_of(j)`` (a
    concept model, or :class:`..concepts.relations.Relations` itself)."""
    children = getattr(model_or_catalog, "children", None)
    if not callable(children):
        relations = getattr(model_or_catalog, "relations", model_or_catalog)
        children = relations.children_of
    seen, todo = {int(concept)}, [int(concept)]
    while todo:
        for child in children(todo.pop()):
            if int(child) not in seen:  # the display tree has no cycles; guard hand-made data anyway
                seen.add(int(child))
                todo.append(int(child))
    return tuple(sorted(seen))


def explain(analysis: Explained, codes: PatchCodes) -> tuple[SegmentationResult | None, ClassificationResult | None]:
    """The full explained segmentation and zero-shot classification of ``codes`` ("concepts
    only"): what the Analysis would hold had its codes been these."""
    seg = None
    if analysis.segmentation is not None and analysis.class_embeddings is not None:
        seg = segment(analysis.segmentation_inputs(codes))
    cls = None
    if analysis.classification is not None and analysis.class_embeddings is not None:
        cls = _zero_shot(analysis.decoder, analysis.class_embeddings, analysis.classification.class_names, codes)
    return seg, cls


# ----------------------------------------------------------------------------------- levels
def level_prefix(analysis: Explained, level: int) -> LevelPrefix:
    """The explanation through levels 1..``level`` only (docs/method.md §2: nested prefixes)."""
    codes = without_concepts(analysis.codes, _deeper_than(analysis, level))
    seg, cls = explain(analysis, codes)
    return LevelPrefix(int(level), codes, seg, cls)


def level_curve(analysis: Explained, n_levels: int | None = None) -> LevelCurve:
    """mIoU against the full model and FVU of the prefix for L = 1..``n_levels`` (default: the
    deepest level active in the image; deeper prefixes are the full model)."""
    n = int(n_levels or max((int(c.level) for c in analysis.concepts), default=1))
    grid = recomputer(analysis, False)
    full = grid.baseline().labels
    decoder, codes = analysis.decoder, analysis.codes
    x_hat = decoder.decode(codes)
    residual = analysis.faithfulness.residual_vectors
    x = x_hat + residual.astype(np.float64) if residual is not None else x_hat
    total = float(((x - x.mean(axis=0)) ** 2).sum())
    miou, fvu = np.full(n, np.nan), np.full(n, np.nan)
    for i, level in enumerate(range(1, n + 1)):
        prefix = without_concepts(codes, _deeper_than(analysis, level))
        x_level = decoder.decode(prefix)
        fvu[i] = float(((x - x_level) ** 2).sum()) / total if total > 0 else np.nan
        if full is not None:
            miou[i] = mean_iou(grid.labels(prefix, x_level), full)
    return LevelCurve(tuple(range(1, n + 1)), _ro(miou), _ro(fvu),
                      "features" if residual is not None else "reconstruction")


def mean_iou(labels: np.ndarray, reference: np.ndarray) -> float:
    """Mean over the labels present in either map of |A ∩ B| / |A ∪ B|."""
    n = int(max(labels.max(initial=0), reference.max(initial=0))) + 1
    inter = np.bincount(labels[labels == reference].ravel(), minlength=n)
    union = np.bincount(labels.ravel(), minlength=n) + np.bincount(reference.ravel(), minlength=n) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 1.0


def _deeper_than(analysis: Explained, level: int) -> np.ndarray:
    return np.asarray([c.concept for c in analysis.concepts if int(c.level) > int(level)], dtype=np.int64)


# ----------------------------------------------------------------------------------- the recomputation
@dataclass(frozen=True, eq=False)
class _Baseline:
    labels: np.ndarray | None
    logits: np.ndarray | None


class Recomputer:
    """What recomputing one Analysis's labels and logits needs, in one mode; holds its baseline.
    It keeps parts of the Analysis, never the Analysis itself (the key of :data:`_GRIDS`)."""

    def __init__(self, analysis: Explained, keep_residual: bool):
        self.codes, self.decoder = analysis.codes, analysis.decoder
        self.mode = CONCEPTS_AND_RESIDUAL if keep_residual else CONCEPTS_ONLY
        self.residual: np.ndarray | None = None
        if keep_residual:
            kept = analysis.faithfulness.residual_vectors
            if kept is None:
                raise ValueError("this analysis keeps no residual vectors (made by an older version): "
                                 "analyse the image again for \"concepts + residual\"")
            self.residual = np.asarray(kept, dtype=np.float64)
        seg, text = analysis.segmentation, analysis.class_embeddings
        self.inputs = analysis.segmentation_inputs() if seg is not None and text is not None else None
        self.label_names = seg.class_names if seg is not None else ()
        cls = analysis.classification
        self.class_names = cls.class_names if cls is not None else ()
        self.text = None if text is None else np.asarray(text, dtype=np.float64)
        self._baseline: _Baseline | None = None
        self._lock = threading.Lock()

    def baseline(self) -> _Baseline:
        with self._lock:
            if self._baseline is None:
                codes = self.codes
                labels = None if self.inputs is None else _ro(self.labels(codes))
                logits = None if self.text is None or not self.class_names else self.logits(codes)
                self._baseline = _Baseline(labels, logits)
            return self._baseline

    def vectors(self, codes: PatchCodes) -> np.ndarray:
        x = self.decoder.decode(codes)
        return x + self.residual if self.residual is not None else x

    def labels(self, codes: PatchCodes, x_hat: np.ndarray | None = None) -> np.ndarray:
        """Labels [H, W] exactly as :func:`.segmentation.segment` makes them (the same float32 logits,
        row by row). ``codes`` are the Analysis' with some entries removed, so only output rows that
        read a patch whose codes changed are computed; the others keep the baseline's labels (the
        computation is row by row, so they would come out bit-identical)."""
        inputs = self.inputs
        assert inputs is not None and self.text is not None
        h, w = codes.grid
        v = (self.vectors(codes) if x_hat is None else x_hat).reshape(h, w, -1)
        sampler, n_classes = inputs.sampler, self.text.shape[0]
        rows = self._rows_reading(np.diff(codes.indptr) != np.diff(self.codes.indptr))
        if self._baseline is not None and self._baseline.labels is not None:
            labels = self._baseline.labels.copy()
            if not rows.size:
                return labels
        else:
            labels = np.empty(sampler.out, dtype=np.uint8 if n_classes + 1 <= 256 else np.uint16)
            rows = np.arange(sampler.out[0])
        path = PixelLogits(sampler, (v @ self.text.T).transpose(2, 0, 1), NeighbourGram.of(v))
        hbg = None
        if inputs.background_logits is not None:
            hbg = sampler.horizontal(np.asarray(inputs.background_logits, np.float32).reshape(1, h, w))
        step = max(1, CHUNK_PIXELS // sampler.out[1])
        for start in range(int(rows[0]), int(rows[-1]) + 1, step):
            block = slice(start, min(start + step, int(rows[-1]) + 1))
            logits = path.logits(block)[0]
            if hbg is None:  # what _labels does without background, minus the probabilities nobody reads
                labels[block] = np.argmax(logits, axis=0)
            else:
                bg = sampler.vertical(hbg, block)[0] <= 0
                labels[block] = _labels(logits, bg, BACKGROUND_DELTA, n_classes)[0]
        return labels

    def _rows_reading(self, patches: np.ndarray) -> np.ndarray:
        """Output rows whose bilinear taps read a grid row holding one of ``patches`` (bool [h·w])."""
        assert self.inputs is not None
        sampler = self.inputs.sampler
        per_row = np.asarray(np.asarray(patches).reshape(sampler.grid).any(axis=1), dtype=bool)
        touched = np.r_[per_row, per_row[-1]]  # the pad row below the grid repeats the last row
        lo = sampler.ys.lo
        return np.flatnonzero(touched[lo] | touched[lo + 1])

    def shares(self, labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels.ravel(), minlength=len(self.label_names)) / max(labels.size, 1)

    def logits(self, codes: PatchCodes) -> np.ndarray:
        """Zero-shot logits [C]: the concept path's, or (with the residual) of the mean feature."""
        assert self.text is not None
        if self.residual is None:
            return _zero_shot(self.decoder, self.text, self.class_names, codes).logits
        f = self.vectors(codes).mean(axis=0)
        return _ro(LOGIT_SCALE * (self.text @ f) / max(float(np.linalg.norm(f)), 1e-12))


#: one Recomputer per (Analysis, mode), alive as long as the Analysis: the baseline is computed once
_GRIDS: "weakref.WeakKeyDictionary[Any, dict[bool, Recomputer]]" = weakref.WeakKeyDictionary()
_GRIDS_LOCK = threading.Lock()


def recomputer(analysis: Explained, keep_residual: bool) -> Recomputer:
    """The :class:`Recomputer` of ``analysis`` in one mode (made once per Analysis, then reused)."""
    with _GRIDS_LOCK:
        try:
            per_mode = _GRIDS.setdefault(analysis, {})
        except TypeError:  # not weakly referenceable: no reuse
            per_mode = {}
        found = per_mode.get(bool(keep_residual))
    if found is None:
        found = Recomputer(analysis, keep_residual)
        with _GRIDS_LOCK:
            found = per_mode.setdefault(bool(keep_residual), found)
    return found


def _zero_shot(decoder: ActiveDecoder, text: Any, class_names: Sequence[str], codes: PatchCodes,
               ) -> ClassificationResult:
    """As the engine classifies: the max-pooled codes decoded (the bias included) against the class texts."""
    ids, values = codes.pooled_max()
    return zero_shot(ids, values, decoder.rows_of(ids), decoder.bias.astype(np.float64), text, class_names)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return _ro(e / e.sum())


def _ro(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    arr.flags.writeable = False
    return arr
