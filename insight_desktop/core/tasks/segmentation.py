"""Open-vocabulary segmentation explained concept by concept (docs/method.md §6).

Per pixel ``p`` (after bilinear upsampling of the patch codes):
``x̂(p) = z(p) W_dec + b_dec``, ``logit_c(p) = 100 · ⟨x̂(p)/‖x̂(p)‖, t_c⟩``, softmax over classes.

**Cheap and exact.** Bilinear weights sum to 1 and decoding is linear, so upsampling ``z`` and
then decoding equals decoding on the grid and then upsampling ``x̂``. The numerator
``⟨x̂(p), t_c⟩`` is therefore the upsampled grid map ``A_c = x̂ t_cᵀ`` (C maps, not m), and
``‖x̂(p)‖²`` is an exact quadratic form in the four bilinear weights over the grid's neighbour
Gram matrix (:class:`.resample.NeighbourGram`). Nothing of size ``m`` or ``d`` is ever made per
pixel; per-pixel work runs in blocks of rows.

**Exact explanations.** With ``S_jc = ⟨W_dec[j], t_c⟩``, ``⟨x̂(p), t_c⟩ = Σ_j z_j(p) S_jc +
⟨b_dec, t_c⟩``, so concept ``j`` contributes ``100 · z_j(p) S_jc / ‖x̂(p)‖`` to ``logit_c(p)``
and the bias ``100 ⟨b_dec, t_c⟩ / ‖x̂(p)‖`` the rest. A segment's contribution is the sum over
its pixels; ``z_j(p)`` is linear in the grid codes, so that sum is ``100 · S_jc · Σ_q z_j(q) U_c(q)``
with ``U_c`` the adjoint upsampling of ``1[p ∈ segment] / ‖x̂(p)‖`` — one sparse product per
class. Contributions plus bias add up to the summed logit.

**Background (FOUND, docs/method.md §1.4).** With the backbone's background logits (upsampled the same
way), a pixel is background when ``sigmoid(logit) ≤ 0.5`` and its largest class probability is
below δ = 0.99; background gets the extra label ``C``.

**Opaque reference.** The same prediction from the raw backbone features ``x(p)`` instead of
``x̂(p)``, for comparison (with a lossless SAE the two agree).

**Window modes.** Labels come either from this one grid (``window_mode="fast"``: the engine
averaged the features of overlapping windows, then encoded once) or are given from the reference
per-window path (``"reference"``, :mod:`.windows`: each window encoded, class probabilities
averaged). In the second case the explanations still decompose this grid's logits, summed over
the given segments: per-window probabilities averaged over windows have no exact linear
decomposition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .codes import ConceptContribution, PatchCodes, ranked_contributions
from .decoder import ActiveDecoder
from .resample import CHUNK_PIXELS, GridSampler, NeighbourGram

#: CLIP's logit scale
LOGIT_SCALE = 100.0
#: FOUND: background only where no class is at least this sure
BACKGROUND_DELTA = 0.99
BACKGROUND_NAME = "background"
_TINY = 1e-12


@dataclass(frozen=True, eq=False)
class Segment:
    """One predicted region (all pixels with one label) and why it got that label.

    ``logit_sum`` = Σ over its pixels of ``logit_c(p)`` (concept path) = Σ ``contributions`` +
    ``bias``. The background segment has no concept explanation (the FOUND head is opaque).
    """

    label: int
    name: str
    pixels: int
    logit_sum: float
    bias: float
    contributions: tuple[ConceptContribution, ...]

    @property
    def mean_logit(self) -> float:
        return self.logit_sum / self.pixels if self.pixels else 0.0


@dataclass(frozen=True)
class PixelExplanation:
    """``logit`` of class ``class_index`` at pixel (y, x) = Σ ``contributions`` + ``bias``."""

    y: int
    x: int
    label: int
    class_index: int
    logit: float
    bias: float
    contributions: tuple[ConceptContribution, ...]


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """Labels ``[H, W]`` (index into ``class_names``; ``background_label`` if FOUND was used),
    the largest class probability per pixel, the opaque path's labels, and per-segment
    explanations. Grid-level data (codes, Gram, ``S``) is kept so that pixels can be explained
    and contribution maps drawn later without the model."""

    class_names: tuple[str, ...]
    background_label: int | None
    labels: np.ndarray
    max_probability: np.ndarray
    opaque_labels: np.ndarray
    segments: tuple[Segment, ...]
    codes: PatchCodes
    concepts: np.ndarray          # int64 [n]: the concepts active in the image, ascending
    similarity: np.ndarray        # float64 [n, C]: S_jc = ⟨W_dec[j], t_c⟩
    bias_similarity: np.ndarray   # float64 [C]: ⟨b_dec, t_c⟩
    gram: NeighbourGram
    sampler: GridSampler
    #: "fast" (labels from this grid) or "reference" (per-window probabilities averaged; see the module docstring)
    window_mode: str = "fast"

    @property
    def n_classes(self) -> int:
        return self.similarity.shape[1]

    @cached_property
    def agreement(self) -> float:
        """Share of pixels where the concept path and the opaque path give the same label.
        Counted in blocks of rows (no full-size boolean array: twice as fast at 48 Mpx, where
        the segmentation panel asks for it on the GUI thread), once per result."""
        a, b = self.labels, self.opaque_labels
        step = max(1, CHUNK_PIXELS // max(a.shape[1], 1)) if a.ndim == 2 else max(a.shape[0], 1)
        same = sum(int(np.count_nonzero(a[r:r + step] == b[r:r + step])) for r in range(0, a.shape[0], step))
        return float(same) / max(a.size, 1)

    def segment(self, label: int) -> Segment | None:
        return next((s for s in self.segments if s.label == label), None)

    def explain_pixel(self, y: int, x: int, class_index: int | None = None, top: int | None = None) -> PixelExplanation:
        """Exact decomposition of ``logit_c(p)``; ``c`` defaults to the pixel's label (or the best
        class if the pixel is background)."""
        if not (0 <= y < self.labels.shape[0] and 0 <= x < self.labels.shape[1]):
            raise IndexError(f"pixel ({y}, {x}) lies outside the {self.labels.shape[0]}×{self.labels.shape[1]} image")
        corners = _corners(self.sampler, y, x)
        z = np.zeros(self.concepts.size)
        for q, weight in corners:
            lo, hi = self.codes.indptr[q], self.codes.indptr[q + 1]
            np.add.at(z, np.searchsorted(self.concepts, self.codes.indices[lo:hi]), weight * self.codes.values[lo:hi])
        norm = max(np.sqrt(_norm_sq_at(self.sampler, self.gram, y, x)), _TINY)
        logits = (z @ self.similarity + self.bias_similarity) * LOGIT_SCALE / norm
        label = int(self.labels[y, x])
        c = int(class_index) if class_index is not None else (
            label if label < self.n_classes else int(np.argmax(logits)))
        contrib = LOGIT_SCALE * z * self.similarity[:, c] / norm
        bias = LOGIT_SCALE * self.bias_similarity[c] / norm
        return PixelExplanation(y, x, label, c, float(contrib.sum() + bias), float(bias),
                                ranked_contributions(self.concepts, contrib, top))

    def contribution_map(self, concept: int, class_index: int) -> np.ndarray:
        """``100 · z_j(p) S_jc / ‖x̂(p)‖`` for every pixel, float32 [H, W] (one map, in row blocks)."""
        pos = int(np.searchsorted(self.concepts, concept))
        out = np.zeros(self.labels.shape, dtype=np.float32)
        if pos >= self.concepts.size or self.concepts[pos] != concept:
            return out  # the concept does not fire in this image: it contributes nothing
        hz = self.sampler.horizontal(self.codes.maps([concept]))
        hn = self.sampler.norm_sq_horizontal(self.gram)
        scale = LOGIT_SCALE * self.similarity[pos, class_index]
        for rows in self.sampler.row_chunks():
            norm = np.sqrt(np.maximum(self.sampler.norm_sq(hn, rows), _TINY))
            out[rows] = scale * self.sampler.vertical(hz, rows)[0] / norm
        return out


@dataclass(frozen=True, eq=False)
class SegmentationInputs:
    """Everything :func:`segment` reads, all on the patch grid (nothing per pixel).

    ``x̂`` is ``decoder``'s decode of ``codes``, so the decoder must hold every concept active in
    them (it may hold more: a concept switched off keeps its row and contributes nothing).
    ``text`` [C, d]: unit class embeddings, one per ``class_names``. The opaque path needs either
    the raw backbone ``features`` [h·w, d] or the ``opaque_labels`` [H, W] of an earlier
    segmentation of the same image (they do not depend on the codes). ``background_logits``
    [h, w]: FOUND logits, or None for no background class.
    """

    codes: PatchCodes
    decoder: ActiveDecoder
    text: np.ndarray
    class_names: tuple[str, ...]
    sampler: GridSampler
    features: np.ndarray | None = None
    background_logits: np.ndarray | None = None
    opaque_labels: np.ndarray | None = None


def segment(inputs: SegmentationInputs, *, delta: float = BACKGROUND_DELTA, chunk_pixels: int = CHUNK_PIXELS,
            given: Any = None) -> SegmentationResult:
    """Segment the output of ``inputs.sampler`` (usually the original image) into its classes.

    ``given``: labels already decided elsewhere — anything with ``labels``, ``max_probability``,
    ``opaque_labels`` [H, W], ``background_label`` and ``window_mode`` (a
    :class:`.windows.WindowSegmentation`); the segments and their explanations are then
    computed over those labels.
    """
    codes, decoder, sampler, class_names = inputs.codes, inputs.decoder, inputs.sampler, inputs.class_names
    h, w = codes.grid
    concepts = decoder.concepts
    if not np.isin(codes.active_concepts(), concepts).all():
        raise ValueError("the decoder must hold every concept active in the codes")
    if sampler.grid != (h, w):
        raise ValueError(f"sampler grid {sampler.grid} does not match the codes' grid {(h, w)}")
    text = np.asarray(inputs.text, dtype=np.float64)
    n_classes = text.shape[0]
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} text embeddings")
    d = text.shape[1]
    x_hat = decoder.decode(codes).reshape(h, w, d)
    gram = NeighbourGram.of(x_hat)
    concept_path = PixelLogits(sampler, (x_hat @ text.T).transpose(2, 0, 1), gram)
    opaque_path = None
    if given is None and inputs.features is not None:
        features = np.asarray(inputs.features, dtype=np.float64).reshape(h, w, d)
        opaque_path = PixelLogits(sampler, (features @ text.T).transpose(2, 0, 1), NeighbourGram.of(features))
    hbg = None
    if inputs.background_logits is not None:
        hbg = sampler.horizontal(np.asarray(inputs.background_logits, np.float32).reshape(1, h, w))

    n_labels = n_classes + (hbg is not None)
    dtype = np.uint8 if n_labels <= 256 else np.uint16
    if given is not None:  # shared, not copied: they are read-only and would double the peak memory of a large image
        background_label = n_classes if hbg is not None else None
        if given.labels.shape != tuple(sampler.out) or given.background_label != background_label:
            raise ValueError("the given labels do not match this image's size, classes and background")
        labels, opaque, max_prob = given.labels, given.opaque_labels, given.max_probability
    else:
        labels, max_prob = np.empty(sampler.out, dtype=dtype), np.empty(sampler.out, dtype=np.float32)
        if opaque_path is not None:
            opaque = np.empty(sampler.out, dtype=dtype)
        elif inputs.opaque_labels is not None and inputs.opaque_labels.shape == tuple(sampler.out):
            opaque = inputs.opaque_labels
        else:
            raise ValueError("segmentation needs the raw features or the opaque labels of this image's size")
    acc = np.zeros((n_classes, h + 1, sampler.out[1]))  # adjoint of 1[p ∈ segment c] / ‖x̂(p)‖
    logit_sum, inv_norm_sum = np.zeros(n_classes), np.zeros(n_classes)
    pixels = np.zeros(n_labels, dtype=np.int64)
    for rows in sampler.row_chunks(chunk_pixels):
        logits, inv_norm = concept_path.logits(rows)
        if given is None:
            bg = sampler.vertical(hbg, rows)[0] <= 0 if hbg is not None else None  # sigmoid ≤ 0.5
            lab, prob = _labels(logits, bg, delta, n_classes)
            labels[rows], max_prob[rows] = lab, prob
            if opaque_path is not None:
                opaque[rows] = _labels(opaque_path.logits(rows)[0], bg, delta, n_classes)[0]
        else:
            lab = labels[rows]
        pixels += np.bincount(lab.ravel(), minlength=n_labels)
        u = np.zeros((n_classes, *lab.shape))
        for c in range(n_classes):
            mask = lab == c
            u[c][mask] = inv_norm[mask]
            logit_sum[c] += logits[c][mask].sum(dtype=np.float64)
        inv_norm_sum += u.sum(axis=(1, 2))
        sampler.adjoint_rows(u, rows, acc)

    weights = sampler.adjoint_finish(acc).reshape(n_classes, h * w)     # [C, h·w]
    z_weighted = (codes.to_scipy().T @ weights.T)[concepts]             # [n, C]: Σ_q z_j(q) U_c(q)
    similarity = decoder.rows.astype(np.float64) @ text.T                # S [n, C]
    bias_similarity = decoder.bias.astype(np.float64) @ text.T
    contributions = LOGIT_SCALE * similarity * z_weighted
    class_names = tuple(class_names) + ((BACKGROUND_NAME,) if hbg is not None else ())
    segments = []
    for label in np.flatnonzero(pixels):
        if label == n_classes:
            segments.append(Segment(int(label), BACKGROUND_NAME, int(pixels[label]), 0.0, 0.0, ()))
            continue
        segments.append(Segment(int(label), class_names[label], int(pixels[label]), float(logit_sum[label]),
                                float(LOGIT_SCALE * bias_similarity[label] * inv_norm_sum[label]),
                                ranked_contributions(concepts, contributions[:, label])))
    for arr in (labels, opaque, max_prob, similarity, bias_similarity):
        arr.flags.writeable = False
    return SegmentationResult(class_names, n_classes if hbg is not None else None, labels, max_prob, opaque,
                              tuple(segments), codes, concepts, similarity, bias_similarity, gram, sampler,
                              "fast" if given is None else given.window_mode)


class PixelLogits:
    """Per-pixel logits from grid maps ``A_c = ⟨v(q), t_c⟩`` and the Gram of the vectors ``v``."""

    def __init__(self, sampler: GridSampler, numerators: np.ndarray, gram: NeighbourGram):
        self.sampler = sampler
        self.hnum = sampler.horizontal(numerators.astype(np.float32))
        self.hnorm = sampler.norm_sq_horizontal(gram)

    def logits(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(logits [C, r, W] float32, 1/‖v(p)‖ [r, W] float32)."""
        inv_norm = (1.0 / np.sqrt(np.maximum(self.sampler.norm_sq(self.hnorm, rows), _TINY))).astype(np.float32)
        return self.sampler.vertical(self.hnum, rows) * (LOGIT_SCALE * inv_norm), inv_norm


def _labels(logits: np.ndarray, background: np.ndarray | None, delta: float, n_classes: int,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and largest softmax probability over classes; FOUND background gets label C."""
    label = np.argmax(logits, axis=0)
    top = np.take_along_axis(logits, label[None], axis=0)[0]
    max_prob = 1.0 / np.exp(logits - top).sum(axis=0)  # softmax at the argmax
    if background is not None:
        label[background & (max_prob < delta)] = n_classes
    return label, max_prob.astype(np.float32)


def _corners(sampler: GridSampler, y: int, x: int) -> list[tuple[int, float]]:
    """(patch row id, bilinear weight) of the four taps of pixel (y, x) (the pad maps to its edge)."""
    h, w = sampler.grid
    a0, b0 = int(sampler.ys.lo[y]), int(sampler.xs.lo[x])
    out = []
    for a, wy in ((a0, sampler.ys.w_lo[y]), (min(a0 + 1, h - 1), sampler.ys.w_hi[y])):
        for b, wx in ((b0, sampler.xs.w_lo[x]), (min(b0 + 1, w - 1), sampler.xs.w_hi[x])):
            out.append((a * w + b, float(wy * wx)))
    return out


def _norm_sq_at(sampler: GridSampler, gram: NeighbourGram, y: int, x: int) -> float:
    """``‖x̂(p)‖²`` at one pixel, by the same formula as :meth:`GridSampler.norm_sq`."""
    one_col = GridSampler(sampler.grid, (1, 1), _take(sampler.ys, y), _take(sampler.xs, x))
    return float(one_col.norm_sq(one_col.norm_sq_horizontal(gram), slice(0, 1))[0, 0])


def _take(taps, i: int):
    return type(taps)(taps.lo[i:i + 1], taps.w_lo[i:i + 1], taps.w_hi[i:i + 1])

