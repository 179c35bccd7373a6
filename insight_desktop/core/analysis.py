"""What one analysed image is: an :class:`Analysis`, an immutable value of read-only numpy arrays
that crosses from the worker to the GUI (made by :class:`.engine.Analyzer`).

It holds sparse codes on the patch grid (CSR, never ``[m, h, w]``), the concepts ranked by their
image-level activation (max over patches, docs/method.md §3), faithfulness (FVU, mean
cosine(x, x̂), residual map), optionally segmentation and classification with exact concept
contributions (:mod:`.tasks`) — and what changing the active concepts needs: the decoder rows of
the concepts active in the image, ``b_dec`` and the class text embeddings, so that switching a
concept off (``z_j = 0``) is recomputed from the Analysis alone (:meth:`Analysis.segmentation_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .tasks.classification import ClassificationResult
from .tasks.codes import PatchCodes
from .tasks.decoder import ActiveDecoder
from .tasks.resample import GridSampler
from .tasks.segmentation import SegmentationInputs, SegmentationResult
from .tasks.windows import FAST, describe_windows


def grid_sampler(grid: tuple[int, int], size: tuple[int, int], patch: int, out: tuple[int, int]) -> GridSampler:
    """Bilinear map from the patch grid of an image analysed at ``size`` (H', W') to an ``out``
    (H, W) rendering of the whole image (the grid also covers the padding below/right of it)."""
    out_h, out_w = (int(v) for v in out)
    return GridSampler.make(grid, (out_h, out_w), (size[0] / (out_h * patch), size[1] / (out_w * patch)))


@dataclass(frozen=True)
class ConceptActivation:
    """A concept active in the image: its image-level activation (max over patches) and context.
    No name: views look it up (:class:`.concepts.names.NameBook`), so a rename needs no new analysis."""

    concept: int
    activation: float
    level: int
    parents: tuple[int, ...]
    patches: int  # patches where it fires


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """How well the concepts reconstruct the features they explain (docs/method.md §6, ours).

    ``fvu`` = Σ‖x − x̂‖² / Σ‖x − x̄‖² over the image's patches (NaN if the features do not vary
    at all); ``cosine`` = mean over patches of cos(x, x̂); ``residual`` = ‖x − x̂‖ per patch [h, w];
    ``residual_vectors`` = x − x̂ per patch, float32 [h·w, d] (x̂ the SAE's own decode), so that
    "concepts + residual" (x minus the contributions of concepts switched off, :mod:`.tasks.whatif`)
    needs only the Analysis; None in analyses made without it.
    """

    fvu: float
    cosine: float
    residual: np.ndarray
    residual_vectors: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything computed for one image; read-only numpy, safe to hand to another thread."""

    image_size: tuple[int, int]        # (H, W) of the image as given
    analysis_size: tuple[int, int]     # (H', W') the backbone saw, before padding to whole patches
    patch_size: int
    windows: int
    codes: PatchCodes
    concepts: tuple[ConceptActivation, ...]   # ranked by activation, largest first
    faithfulness: Faithfulness
    background_logits: np.ndarray | None      # [h, w] FOUND logits (background where ≤ 0), if any
    segmentation: SegmentationResult | None
    classification: ClassificationResult | None
    probe: ClassificationResult | None
    notices: tuple[str, ...]
    timings: Mapping[str, float]              # seconds per stage
    decoder: ActiveDecoder                    # W_dec rows of the concepts active here, and b_dec
    class_embeddings: np.ndarray | None       # [C, d] unit text embeddings of the classes, if any were given
    window_mode: str = FAST                   # which sliding-window mode produced it (.tasks.windows)

    @property
    def window_description(self) -> str:
        return describe_windows(self.window_mode, self.windows)

    @property
    def grid(self) -> tuple[int, int]:
        return self.codes.grid

    def concept(self, j: int) -> ConceptActivation | None:
        return next((c for c in self.concepts if c.concept == j), None)

    def concept_map(self, j: int) -> np.ndarray:
        """``z_j`` on the patch grid, float32 [h, w]."""
        return self.codes.concept_map(j)

    def sampler(self, size: tuple[int, int] | None = None) -> GridSampler:
        """Bilinear grid → pixels map for an output of ``size`` (H, W) covering the whole image."""
        return grid_sampler(self.grid, self.analysis_size, self.patch_size, size or self.image_size)

    # Pixel → patch geometry, the one place for it. A patch is image_size / analysis_size · patch_size
    # pixels: fractional, so its borders fall between pixels. Integers are multiplied before the one
    # division, so a border that falls exactly on a pixel edge is exact.
    def patch_at(self, y: float, x: float) -> tuple[int, int]:
        """Grid (row, column) of the patch over image pixel (y, x), clamped to the grid."""
        (h, w), (ih, iw), (ah, aw), p = self.grid, self.image_size, self.analysis_size, self.patch_size
        return min(max(int(y * ah // (ih * p)), 0), h - 1), min(max(int(x * aw // (iw * p)), 0), w - 1)

    def patch_box(self, r: int, c: int) -> tuple[float, float, float, float]:
        """Pixel borders (top, left, bottom, right) of patch (r, c); the last ones may pass the image's edge."""
        (ih, iw), (ah, aw), p = self.image_size, self.analysis_size, self.patch_size
        return r * ih * p / ah, c * iw * p / aw, (r + 1) * ih * p / ah, (c + 1) * iw * p / aw

    def patches_under(self, top: float, left: float, bottom: float, right: float) -> tuple[slice, slice]:
        """Patch rows and columns that the pixels [top, bottom) × [left, right) touch (at least one each)."""
        (h, w), (ih, iw), (ah, aw), p = self.grid, self.image_size, self.analysis_size, self.patch_size
        r0, c0 = self.patch_at(top, left)
        r1 = min(h, max(r0 + 1, -int(-bottom * ah // (ih * p))))   # ceil
        c1 = min(w, max(c0 + 1, -int(-right * aw // (iw * p))))
        return slice(r0, r1), slice(c0, c1)

    def display_map(self, j: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """docs/method.md §3 display: square the map, upsample bilinearly to ``size`` (default: the image size),
        divide by its max; float32 [H, W] in 0..1 (all zero where the concept does not fire)."""
        m = self.concept_map(j)
        out = self.sampler(size).upsample_full((m * m)[None])[0]
        top = float(out.max())
        if top > 0:
            out /= top
        out.flags.writeable = False
        return out

    def segmentation_inputs(self, codes: PatchCodes | None = None) -> SegmentationInputs:
        """What :func:`.tasks.segmentation.segment` needs to segment this image again from this
        Analysis alone, with ``codes`` instead of the analysed ones (e.g. a concept switched off:
        :func:`.tasks.decoder.without_concepts`). The labels are then this grid's (the fast
        mode's, whichever mode ran); the opaque path's labels do not depend on the codes and are
        kept."""
        seg = self.segmentation
        if seg is None or self.class_embeddings is None:
            raise ValueError("this analysis has no segmentation: no classes were given")
        n_classes = self.class_embeddings.shape[0]
        background = self.background_logits if seg.background_label is not None else None
        return SegmentationInputs(self.codes if codes is None else codes, self.decoder, self.class_embeddings,
                                  seg.class_names[:n_classes], seg.sampler, background_logits=background,
                                  opaque_labels=seg.opaque_labels)
