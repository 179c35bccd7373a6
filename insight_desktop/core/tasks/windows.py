"""Sliding windows: where they lie, running the backbone over them, and the two window modes —
``"fast"`` (features of overlapping windows averaged on one grid, :func:`averaged_features`) and
``"reference"`` (every window segmented on its own, class probabilities averaged, docs/method.md §6).

**Image geometry (ours).** The image is resized (bicubic) so its short side equals the window
(448 px, docs/method.md §6), unless that makes the long side exceed ``MAX_ASPECT`` windows, in
which case the long side is ``MAX_ASPECT · window`` instead (:func:`analysis_size`); the fast
mode's windows lie on that image normalised and padded with black to whole patches, every
``stride`` px and flush with the border, so they start on patch boundaries and overlapping
windows give features for the *same* patches (:func:`window_geometry`). :class:`WindowRunner`
runs the windows of both modes. The rest of this module is ``"reference"``.

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
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from .resample import CHUNK_PIXELS, AxisTaps, GridSampler, NeighbourGram
from .segmentation import BACKGROUND_DELTA, BACKGROUND_NAME, PixelLogits

if TYPE_CHECKING:
    import torch

WINDOW = 448
STRIDE = 224
#: the long side of the analysed image is at most this many windows
MAX_ASPECT = 4
FAST = "fast"
REFERENCE = "reference"
#: sliding-window modes: features averaged then encoded once (the engine's grid), or this module's
#: per-window probabilities averaged
WINDOW_MODES = (FAST, REFERENCE)
#: windows per backbone call (on a GPU; on the CPU one at a time, which costs no throughput there
#: and lets the progress bar move per window: :func:`window_batch`)
WINDOW_BATCH = 4


def window_batch(device: Any) -> int:
    """Windows per backbone call on ``device`` (a torch.device or its name)."""
    return 1 if str(getattr(device, "type", device)) == "cpu" else WINDOW_BATCH


def check_window_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`WINDOW_MODES`, else ValueError."""
    if mode not in WINDOW_MODES:
        raise ValueError(f"unknown window mode {mode!r}; use one of {', '.join(WINDOW_MODES)}")
    return mode


#: what each mode does, in one phrase (the CLI says it before a run; :func:`describe_windows` after)
MODE_MEANING = {
    REFERENCE: "each window encoded separately, class probabilities averaged, as in the reference code",
    FAST: "features averaged over overlapping windows, encoded once; not the reference's protocol",
}


def describe_windows(mode: str, windows: int) -> str:
    """One line for the CLI and the app: which sliding-window mode produced an analysis."""
    if windows == 1:
        return f"{mode} (one window: both modes agree)"
    if mode == REFERENCE:
        return (f"reference (segmentation: each of {windows} windows encoded separately, class probabilities "
                "averaged, as in the reference code; concept maps: features averaged)")
    return f"fast (features averaged over {windows} overlapping windows, encoded once)"


def analysis_size(height: int, width: int, window: int = WINDOW) -> tuple[int, int]:
    """Size (H', W') the backbone sees: short side = ``window``, long side ≤ ``MAX_ASPECT · window``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    scale = window / min(height, width)
    if max(height, width) * scale > MAX_ASPECT * window:
        scale = MAX_ASPECT * window / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True, eq=False)
class WindowGeometry:
    """Where the windows of both modes lie on one image."""

    size: tuple[int, int]                   # (H', W') the image is resized to
    image: np.ndarray                       # that image, uint8
    canvas: torch.Tensor                    # it normalised and black-padded to whole patches [3, h·p, w·p]
    grid: tuple[int, int]                   # (h, w) patches of the canvas
    canvas_boxes: list[tuple[int, int, int, int]]  # fast-mode windows, on the padded canvas
    image_boxes: list[tuple[int, int, int, int]]   # reference windows, on the image before padding


def window_geometry(rgb: np.ndarray, preprocessing: Any, window: int = WINDOW, stride: int = STRIDE) -> WindowGeometry:
    """Resize ``rgb`` for the backbone and place both modes' windows (``window``, ``stride`` in px)."""
    from ..images import tile_boxes

    p = preprocessing.patch_size
    if window <= 0 or stride <= 0 or window % p or stride % p or stride > window:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive multiples of the patch size "
                         f"{p}, with stride ≤ window")
    size = analysis_size(rgb.shape[0], rgb.shape[1], window)
    image = _resize(rgb, size)
    canvas = preprocessing.to_tensor(image, mode="full")  # [3, h·p, w·p], black padding
    return WindowGeometry(size, image, canvas, (canvas.shape[1] // p, canvas.shape[2] // p),
                          tile_boxes(canvas.shape[1], canvas.shape[2], window, stride),
                          tile_boxes(size[0], size[1], window, stride))


def averaged_features(runner: WindowRunner, geo: WindowGeometry) -> tuple[torch.Tensor, np.ndarray | None]:
    """Fast mode: every patch's features averaged over the windows that cover it, [h·w, d] float32
    on the backbone's device, and FOUND background logits averaged the same way, read-only
    [h, w] (None if the backbone has no FOUND head)."""
    import torch

    backbone = runner.backbone
    p, (h, w), device = backbone.preprocessing.patch_size, geo.grid, backbone.device
    feats = torch.zeros(backbone.feature_dim, h, w, device=device)
    bg = torch.zeros(h, w, device=device)
    count = torch.zeros(h, w, device=device)
    has_bg = True
    for (top, left, bottom, right), f, g in runner.run(geo.canvas_boxes,
                                                       lambda box: geo.canvas[:, box[0]:box[2], box[1]:box[3]]):
        cell = (slice(top // p, bottom // p), slice(left // p, right // p))
        channels = (slice(None), *cell)  # named: mypy reads an inline starred index as 3.11-only syntax
        feats[channels] += f
        count[cell] += 1
        if g is None:
            has_bg = False
        else:
            bg[cell] += g
    x = (feats / count).flatten(1).T.contiguous()
    if not has_bg:
        return x, None
    background = np.ascontiguousarray((bg / count).cpu().numpy())
    background.flags.writeable = False
    return x, background


def reference_segmentation(runner: WindowRunner, geo: WindowGeometry,
                           reconstruct: Callable[[torch.Tensor], torch.Tensor], text: np.ndarray,
                           classes: Sequence[str], background: bool, out: tuple[int, int]) -> WindowSegmentation:
    """Reference mode: each window of the unpadded image through the backbone and the SAE on its
    own (``reconstruct``: features [n, d] → x̂ [n, d], float32), then :func:`window_segmentation`."""
    pre = runner.backbone.preprocessing
    scores = []

    def crop(b):  # each window is padded on its own, as the reference pads each crop
        return pre.to_tensor(geo.image[b[0]:b[2], b[1]:b[3]], mode="full")

    for box, f, g in runner.run(geo.image_boxes, crop):
        d, gh, gw = f.shape
        x = f.flatten(1).T.contiguous()
        scores.append(WindowScores.of(box, reconstruct(x).double().cpu().numpy().reshape(gh, gw, d),
                                      x.double().cpu().numpy().reshape(gh, gw, d), text,
                                      None if g is None else g.cpu().numpy()))
    return window_segmentation(scores, classes, geo.size, out, pre.patch_size, background=background)


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
        top, left, bottom, right = (int(v) for v in box)
        return cls((top, left, bottom, right), x_hat.shape[:2],
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
                 check_stop: Callable[[], None], progress: Callable[[float], None], batch: int = WINDOW_BATCH):
        self.backbone = backbone
        self.batch = max(1, int(batch))
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
        box), ``batch`` boxes per call; yield ``(box, features [d, gh, gw], background
        logits [gh, gw] or None)`` per box, in order."""
        import torch

        for i in range(0, len(boxes), self.batch):
            batch = boxes[i:i + self.batch]
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
            self.hbg = self.sampler.horizontal(s.background[None]) if background and s.background is not None else None

    def add(self, rows: slice, acc: np.ndarray, count: np.ndarray, n_classes: int, delta: float) -> None:
        """Add this window's probabilities on output ``rows`` into ``acc`` [2, labels, r, W] and ``count``."""
        lo, hi = max(rows.start, self.rows.start), min(rows.stop, self.rows.stop)
        if lo >= hi or self.sampler is None:
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


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == tuple(size):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BICUBIC))


def _row_chunks(out: tuple[int, int], chunk_pixels: int) -> Iterator[slice]:
    step = max(1, int(chunk_pixels) // out[1])
    for start in range(0, out[0], step):
        yield slice(start, min(start + step, out[0]))
