"""Sliding windows: the two window modes, running the backbone over windows, and the reference
mode's averaging — every window segmented on its own, class probabilities averaged (docs/method.md §6).

``"fast"`` (the engine's grid: features of overlapping windows averaged, encoded once) is
described in :mod:`..engine`; :class:`WindowRunner` runs the windows of both modes. The rest of
this module is ``"reference"``.

The reference evaluation (CLIP-DINOiser's and the Insight authors' code: mmseg's "slide" mode,
448-px windows every 224 px) runs the whole model on each window separately — backbone, SAE,
class scores — turns the window's scores into class probabilities (softmax of 100·cos, FOUND
background applied within the window), pastes them onto the image and divides by the number of
windows covering each pixel. The label is the argmax of that average.

**Placement** is the reference's, on the analysed image *before* padding (H' × W'):
``top = i·stride``, ``bottom = min(top + window, H')``, ``top = max(bottom − window, 0)`` (the
same rule as :func:`..images.tile_boxes`), so the last window is flush with the image border and
padding only enters a window when the image is smaller than the window; then the window is padded
on its own, with black (docs/method.md §1.1).

**Pixels.** Output pixel (y, x) (usually of the original image, H × W) lies at the analysed
position ((y + ½)·H'/H, (x + ½)·W'/W); it belongs to every window whose pixel range contains
that point, and each such window reads its own patch grid there bilinearly — concept maps
upsampled, then decoded, exactly as :func:`.segmentation.segment` does on one grid. The reference
averages at the analysed image's pixels and then resizes the averaged probabilities to H × W;
when H × W is the analysed size the two are the same.

**FOUND background.** With background on, each window marks a pixel as background when its
sigmoid(logit) ≤ 0.5 and the window's largest class probability is below δ; the reference sets
the probability of its background class to 1 there, so here an extra "background" channel gets 1
(0 elsewhere) and is averaged like the classes. The reported ``max_probability`` is the largest
*averaged class* probability.

Memory: per window only grid-level maps (C numerators and a neighbour Gram per path); per-pixel
work runs in blocks of rows, so no ``[C, H, W]`` array is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .resample import CHUNK_PIXELS, AxisTaps, GridSampler, NeighbourGram
from .segmentation import BACKGROUND_DELTA, BACKGROUND_NAME, PixelLogits

FAST = "fast"
REFERENCE = "reference"
#: sliding-window modes: features averaged then encoded once (the engine's grid), or this module's
#: per-window probabilities averaged
WINDOW_MODES = (FAST, REFERENCE)
#: windows per backbone call
WINDOW_BATCH = 4


def check_window_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`WINDOW_MODES`, else ValueError."""
    if mode not in WINDOW_MODES:
        raise ValueError(f"unknown window mode {mode!r}; use one of {', '.join(WINDOW_MODES)}")
    return mode


def describe_windows(mode: str, windows: int) -> str:
    """One line for the CLI and the app: which sliding-window mode produced an analysis."""
    if windows == 1:
        return f"{mode} (one window: both modes agree)"
    if mode == REFERENCE:
        return (f"reference (segmentation: each of {windows} windows encoded separately, class probabilities "
                "averaged, as in the reference code; concept maps: features averaged)")
    return f"fast (features averaged over {windows} overlapping windows, encoded once)"




@dataclass(frozen=True, eq=False)
class WindowScores:
    """One window's class scores on its own patch grid, for the concept path and the opaque path."""

    box: tuple[int, int, int, int]   # (top, left, bottom, right) in pixels of the analysed image
    grid: tuple[int, int]            # (gh, gw): the window padded to whole patches
    concept_numerators: np.ndarray   # [C, gh, gw]: ⟨x̂(q), t_c⟩
    concept_gram: NeighbourGram
    opaque_numerators: np.ndarray    # [C, gh, gw]: ⟨x(q), t_c⟩
    opaque_gram: NeighbourGram
    background: np.ndarray | None    # [gh, gw] FOUND logits, or None

    @classmethod
    def of(cls, box: Sequence[int], x_hat: np.ndarray, features: np.ndarray, text: np.ndarray,
           background: np.ndarray | None = None) -> "WindowScores":
        """``x_hat``, ``features``: [gh, gw, d]; ``text``: unit class embeddings [C, d]."""
        x_hat = np.asarray(x_hat, dtype=np.float64)
        features = np.asarray(features, dtype=np.float64)
        text = np.asarray(text, dtype=np.float64)
        bg = None if background is None else np.asarray(background, np.float32).reshape(x_hat.shape[:2])
        return cls(tuple(int(v) for v in box), x_hat.shape[:2],
                   (x_hat @ text.T).transpose(2, 0, 1).astype(np.float32), NeighbourGram.of(x_hat),
                   (features @ text.T).transpose(2, 0, 1).astype(np.float32), NeighbourGram.of(features), bg)


@dataclass(frozen=True, eq=False)
class WindowSegmentation:
    """Labels ``[H, W]`` from per-window probabilities averaged over overlapping windows
    (``background_label`` = C if FOUND was used), the largest averaged class probability, the
    opaque path's labels, and how many windows ran."""

    class_names: tuple[str, ...]
    background_label: int | None
    labels: np.ndarray
    max_probability: np.ndarray
    opaque_labels: np.ndarray
    windows: int
    window_mode: str = REFERENCE

    @property
    def agreement(self) -> float:
        """Share of pixels where the concept path and the opaque path give the same label."""
        return float(np.count_nonzero(self.labels == self.opaque_labels)) / max(self.labels.size, 1)


def window_segmentation(scores: Sequence[WindowScores], class_names: Sequence[str], analysed: tuple[int, int],
                        out: tuple[int, int], patch: int, *, background: bool = False,
                        delta: float = BACKGROUND_DELTA, chunk_pixels: int = CHUNK_PIXELS) -> WindowSegmentation:
    """Average the windows' class probabilities at the ``out`` pixels (see the module docstring).

    ``analysed``: (H', W') of the image the windows lie on; ``background``: apply FOUND (only if
    every window has background logits)."""
    if not scores:
        raise ValueError("no windows to average")
    n_classes = scores[0].concept_numerators.shape[0]
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} class scores")
    background = bool(background) and all(s.background is not None for s in scores)
    placed = [p for p in (_Placed(s, analysed, out, patch, background) for s in scores) if p.sampler is not None]
    n_labels = n_classes + background
    dtype = np.uint8 if n_labels <= 256 else np.uint16
    labels, opaque = np.empty(out, dtype=dtype), np.empty(out, dtype=dtype)
    max_prob = np.empty(out, dtype=np.float32)
    for rows in _row_chunks(out, chunk_pixels):
        acc = np.zeros((2, n_labels, rows.stop - rows.start, out[1]), np.float32)  # concept, opaque
        count = np.zeros((rows.stop - rows.start, out[1]), np.float32)
        for p in placed:
            p.add(rows, acc, count, n_classes, delta)
        acc /= count
        labels[rows] = np.argmax(acc[0], axis=0)
        opaque[rows] = np.argmax(acc[1], axis=0)
        max_prob[rows] = acc[0, :n_classes].max(axis=0)
    for a in (labels, opaque, max_prob):
        a.flags.writeable = False
    names = tuple(class_names) + ((BACKGROUND_NAME,) if background else ())
    return WindowSegmentation(names, n_classes if background else None, labels, max_prob, opaque, len(scores))


class WindowRunner:
    """The backbone over windows a few at a time: stop checks between calls, progress over every
    window of every pass. A window more than one pass uses (same box, so the same pixels: the box
    lies inside the image) runs once and is kept only until its second use."""

    def __init__(self, backbone: Any, passes: Sequence[Sequence[tuple[int, int, int, int]]],
                 check_stop: Callable[[], None], progress: Callable[[float], None]):
        self.backbone = backbone
        seen: dict[tuple[int, int, int, int], int] = {}
        for boxes in passes:
            for box in set(boxes):
                seen[box] = seen.get(box, 0) + 1
        self.total = len(seen)
        self.shared = {box for box, n in seen.items() if n > 1}
        self.kept: dict[tuple[int, int, int, int], tuple[Any, Any]] = {}
        self.done = 0
        self.check_stop, self.progress = check_stop, progress

    def run(self, boxes: Sequence[tuple[int, int, int, int]], crop: Callable[[tuple[int, int, int, int]], Any]):
        """Run the backbone on ``crop(box)`` (a normalised [3, H, W] tensor, the same size for every
        box), ``WINDOW_BATCH`` boxes per call; yield ``(box, features [d, gh, gw], background
        logits [gh, gw] or None)`` per box, in order."""
        import torch

        for i in range(0, len(boxes), WINDOW_BATCH):
            batch = boxes[i:i + WINDOW_BATCH]
            todo = [b for b in batch if b not in self.kept]
            fresh = {}
            if todo:
                self.check_stop()  # raises to stop between backbone calls
                out = self.backbone.dense(torch.stack([crop(b) for b in todo]).to(self.backbone.device))
                for k, b in enumerate(todo):
                    bg = out.background_logits
                    fresh[b] = (out.features[k].float(), None if bg is None else bg[k, 0].float())
                    if b in self.shared:
                        self.kept[b] = fresh[b]
                self.done += len(todo)
                self.progress(self.done / self.total)
            for b in batch:
                yield (b, *(fresh[b] if b in fresh else self.kept.pop(b)))


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the first axis (classes)."""
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


class _Placed:
    """A window's pixel ranges in the output and its per-pixel logits there."""

    def __init__(self, s: WindowScores, analysed: tuple[int, int], out: tuple[int, int], patch: int, background: bool):
        top, left, bottom, right = s.box
        self.rows, ys = _axis(out[0], analysed[0], top, bottom, patch, s.grid[0])
        self.cols, xs = _axis(out[1], analysed[1], left, right, patch, s.grid[1])
        self.sampler = None
        if ys.n_out and xs.n_out:  # a tiny output may have no pixel centre inside a window
            self.sampler = GridSampler(s.grid, (ys.n_out, xs.n_out), ys, xs)
            self.paths = (PixelLogits(self.sampler, s.concept_numerators, s.concept_gram),
                          PixelLogits(self.sampler, s.opaque_numerators, s.opaque_gram))
            self.hbg = self.sampler.horizontal(s.background[None]) if background else None

    def add(self, rows: slice, acc: np.ndarray, count: np.ndarray, n_classes: int, delta: float) -> None:
        """Add this window's probabilities on output ``rows`` into ``acc`` [2, labels, r, W] and ``count``."""
        lo, hi = max(rows.start, self.rows.start), min(rows.stop, self.rows.stop)
        if lo >= hi:
            return
        local = slice(lo - self.rows.start, hi - self.rows.start)
        dst = (slice(lo - rows.start, hi - rows.start), self.cols)
        bg = self.sampler.vertical(self.hbg, local)[0] <= 0 if self.hbg is not None else None  # sigmoid ≤ 0.5
        for k, path in enumerate(self.paths):
            prob = probabilities(path.logits(local)[0])
            acc[(k, slice(0, n_classes)) + dst] += prob
            if bg is not None:
                acc[(k, n_classes) + dst] += bg & (prob.max(axis=0) < delta)
        count[dst] += 1


def _axis(n_out: int, n_analysed: int, start: int, stop: int, patch: int, n_grid: int) -> tuple[slice, AxisTaps]:
    """Output indices whose analysed-pixel centre lies in [start, stop), and where they read the window's grid."""
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_analysed / n_out)
    inside = np.flatnonzero((centres >= start) & (centres < stop))
    span = slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)
    return span, AxisTaps.at((centres[span] - start) / patch - 0.5, n_grid)


def _row_chunks(out: tuple[int, int], chunk_pixels: int) -> Iterator[slice]:
    step = max(1, int(chunk_pixels) // out[1])
    for start in range(0, out[0], step):
        yield slice(start, min(start + step, out[0]))
