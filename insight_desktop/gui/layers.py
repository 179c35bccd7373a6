"""The image view's layers as plain numpy RGBA arrays, their composite, the export figure, and
the patch geometry that clicks and hovers use.

Everything here is numpy + Pillow (pyqtgraph only to read its colour tables), so what the
screen shows and what an exported PNG holds come from the same arrays, and tests can check the
pixels without a screen.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from .document import Region

#: residual layer colours: a good reconstruction shows grey, a poor one red
RESIDUAL_LOW = np.array((150, 150, 150), dtype=np.float32)
RESIDUAL_HIGH = np.array((230, 20, 20), dtype=np.float32)
#: concept maps kept per analysis, so switching back to a recent concept is instant
MAP_CACHE_SIZE = 8
#: longest side, in pixels, of the photo copy and the layers drawn on screen (see :func:`display_size`)
DISPLAY_CAP = 2048


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """256 RGB entries (uint8 [256, 3]) of pyqtgraph's colormap ``name``; unknown names fall back
    to "inferno", and to core's own ramp if pyqtgraph ships no colour tables at all."""
    import pyqtgraph as pg

    for candidate in (name, "inferno"):
        try:
            lut = pg.colormap.get(candidate).getLookupTable(0.0, 1.0, 256, alpha=False)
        except Exception:  # pyqtgraph raises different errors for missing files and bad names
            continue
        lut = np.ascontiguousarray(lut[:, :3], dtype=np.uint8)
        lut.flags.writeable = False
        return lut
    from ..core.tasks.render import colour_ramp

    return colour_ramp(np.linspace(0.0, 1.0, 256))


def heat_rgba(heat: np.ndarray, lut: np.ndarray, threshold: float) -> np.ndarray:
    """Concept heat (float [H, W] in 0..1) → RGBA uint8 [H, W, 4].

    Alpha is proportional to the heat, so cold areas show the photo; heat that does not exceed
    ``threshold`` is fully transparent (so threshold 1 hides everything, 0 hides only zero heat).
    One gather from a 256-entry table of whole RGBA pixels (viewed as uint32), not three: this
    runs on every concept switch, at display size.
    """
    idx = np.clip(heat, 0.0, 1.0).astype(np.float32, copy=False)
    idx *= 255.0
    idx += 0.5
    index = idx.astype(np.uint8)
    out = np.take(_rgba_table(lut), index)
    if threshold > 0:
        out *= heat > threshold  # heat at or below it: all zero (colour under a zero alpha is never seen);
        # a multiply is several times faster than assigning through a boolean mask
    return out.view(np.uint8).reshape(*heat.shape, 4)


def _rgba_table(lut: np.ndarray) -> np.ndarray:
    """``lut`` [256, 3] with alpha = index, as 256 uint32 (one RGBA pixel each)."""
    table = np.empty((256, 4), dtype=np.uint8)
    table[:, :3] = lut
    table[:, 3] = np.arange(256, dtype=np.uint8)
    return table.view(np.uint32).ravel()


def label_rgba(labels: np.ndarray, colours: Sequence[tuple[int, int, int]], hidden: Iterable[int] = ()) -> np.ndarray:
    """Segmentation labels [H, W] → RGBA uint8 [H, W, 4] in the class colours; hidden labels are transparent."""
    table = np.zeros((max(len(colours), 1), 4), dtype=np.uint8)
    table[: len(colours), :3] = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    table[: len(colours), 3] = 255
    for label in hidden:
        if 0 <= label < len(table):
            table[label, 3] = 0
    # one gather of whole RGBA pixels (uint32), several times faster than gathering rows of four bytes
    out = np.take(table.view(np.uint32).ravel(), labels, mode="clip")
    return out.view(np.uint8).reshape(*labels.shape, 4)


def residual_lut(n: int = 256) -> np.ndarray:
    """The residual layer's colours, grey → red with rising opacity, as an [n, 4] uint8 table (for its colour bar)."""
    v = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    out = np.empty((n, 4), dtype=np.uint8)
    out[:, :3] = np.rint(RESIDUAL_LOW + (RESIDUAL_HIGH - RESIDUAL_LOW) * v)
    out[:, 3] = np.rint(v[:, 0] * 255)
    return out


def residual_rgba(residual: np.ndarray) -> np.ndarray:
    """Upsampled reconstruction error [H, W] → RGBA: grey → red and more opaque as it grows (relative to its max)."""
    top = float(residual.max()) if residual.size else 0.0
    v = (residual / top if top > 0 else np.zeros_like(residual)).astype(np.float32)[..., None]
    out = np.empty((*residual.shape, 4), dtype=np.uint8)
    out[..., :3] = np.rint(RESIDUAL_LOW + (RESIDUAL_HIGH - RESIDUAL_LOW) * v)
    out[..., 3] = np.rint(v[..., 0] * 255)
    return out


def composite(photo: np.ndarray, layers: Iterable[tuple[np.ndarray, float]]) -> np.ndarray:
    """``photo`` (RGB uint8) with each ``(rgba, opacity)`` drawn over it in order, as Qt paints them."""
    out = photo.astype(np.float32)
    for rgba, opacity in layers:
        alpha = rgba[..., 3:4].astype(np.float32) * (float(opacity) / 255.0)
        out += (rgba[..., :3].astype(np.float32) - out) * alpha
    return np.rint(out).astype(np.uint8)


def display_size(image_size: tuple[int, int], cap: int = DISPLAY_CAP) -> tuple[int, int]:
    """(H, W) at which the photo and its layers are drawn: the image's own size, or less so that
    the long side is at most ``cap`` pixels.

    Why a fixed cap rather than the view's size: 2048 px is at least as many device pixels as a
    fitted image gets on a screen up to 2560 px wide (the docks take the rest), the layers come
    from a grid of some 30–60 patches a side (30+ display pixels per patch, smooth at any zoom),
    and one size per image keeps the layers valid through zooming, panning and resizing. At this
    size a layer costs ~20 ms to make, against ~1 s at 8000 × 6000.
    """
    h, w = (int(v) for v in image_size)
    scale = min(1.0, cap / max(h, w, 1))
    return max(1, round(h * scale)), max(1, round(w * scale))


def nearest_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``labels`` [H, W] sampled at the centres of an ``size`` (h, w) grid of display pixels (nearest)."""
    h, w = labels.shape[:2]
    if (h, w) == tuple(size):
        return labels
    ys = np.minimum(((np.arange(size[0]) + 0.5) * (h / size[0])).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * (w / size[1])).astype(np.int64), w - 1)
    return labels[ys][:, xs]


def photo_preview(rgb: np.ndarray, cap: int = DISPLAY_CAP) -> np.ndarray:
    """The photo at :func:`display_size` (itself when it is small enough), read-only. Pillow's
    reducing resize (box-filter reduction, then bilinear) keeps it sharp and takes ~0.3 s at
    48 Mpx, so the window makes it on the thread that decoded the image."""
    size = display_size(rgb.shape[:2], cap)
    if size == rgb.shape[:2]:
        return rgb
    from PIL import Image

    out = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(
        (size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=2.0))
    out.flags.writeable = False
    return out


def training_max(catalog, concept: int) -> float | None:
    """The concept's strongest activation in the model's training data (the top entry of the
    bundle's top-token table), or None when the bundle has no finite, positive one for it."""
    if catalog is None or not 0 <= concept < catalog.n_concepts:
        return None
    top = getattr(catalog.relations, "top_values", None)
    if top is None or top.ndim != 2 or top.shape[1] == 0:
        return None
    value = float(top[concept, 0])
    return value if math.isfinite(value) and value > 0 else None


class DisplayMapCache:
    """Squared concept maps of the current analysis upsampled to a display size, for the last
    few concepts (LRU), and the heat made from them on either scale.

    A new analysis or size empties it, so no old analysis is kept alive by the cache. Safe to use
    from one pool thread and the GUI thread (the maps are made outside the lock).
    """

    def __init__(self, size: int = MAP_CACHE_SIZE):
        self.size = size
        self._lock = threading.Lock()
        self._owner: tuple | None = None       # (analysis, display size) the maps belong to
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()

    def squared(self, analysis, concept: int, out: tuple[int, int]) -> np.ndarray:
        """``z_j²`` upsampled bilinearly to ``out`` (docs/method.md §3 display), not yet divided."""
        with self._lock:
            if self._owner is None or self._owner[0] is not analysis or self._owner[1] != tuple(out):
                self._owner, self._maps = (analysis, tuple(out)), OrderedDict()
            found = self._maps.get(concept)
            if found is not None:
                self._maps.move_to_end(concept)
                return found
            maps = self._maps
        m = analysis.concept_map(concept)
        found = analysis.sampler(tuple(out)).upsample_full((m * m)[None])[0]
        found.flags.writeable = False
        with self._lock:
            if maps is self._maps:  # still the same analysis and size
                maps[concept] = found
                while len(maps) > self.size:
                    maps.popitem(last=False)
        return found

    def heat(self, analysis, concept: int, out: tuple[int, int], scale: float | None = None) -> np.ndarray:
        """Heat in 0..1 at ``out``: divided by its own max (``scale`` None, as
        :meth:`Analysis.display_map`), else by ``scale²`` (``scale``: an activation) and clipped."""
        raw = self.squared(analysis, concept, out)
        top = float(raw.max()) if scale is None else float(scale) ** 2
        if top <= 0:
            return np.zeros(raw.shape, dtype=np.float32)
        heat = raw / np.float32(top) if scale is None else np.minimum(raw / np.float32(top), 1.0)
        return heat.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------- patch geometry
def patch_region(a, y: int, x: int) -> Region:
    """The pixels of the patch under (y, x) of Analysis ``a``, naming that patch. Patch borders fall
    between pixels, so the rectangle is rounded inwards but always keeps the clicked pixel."""
    r, c = a.patch_at(y, x)
    top, left, bottom, right = a.patch_box(r, c)
    height, width = a.image_size
    return Region(min(y, math.ceil(top)), min(x, math.ceil(left)),
                  max(y + 1, min(height, math.floor(bottom))), max(x + 1, min(width, math.floor(right))), patch=(r, c))


def patch_activation(a, r: int, c: int, concept: int) -> float:
    """``z_concept`` at patch (r, c), read from the sparse codes."""
    codes = a.codes
    q = r * codes.grid[1] + c
    lo, hi = int(codes.indptr[q]), int(codes.indptr[q + 1])
    k = int(np.searchsorted(codes.indices[lo:hi], concept))
    return float(codes.values[lo + k]) if k < hi - lo and codes.indices[lo + k] == concept else 0.0


# ---------------------------------------------------------------------------- export figure
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def colorbar_image(lut: np.ndarray, height: int, title: str, subtitle: str = "relative activation"):
    """A vertical colour bar (1 at the top) with ticks, titled ``title`` and ``subtitle`` (what 1 is)."""
    from PIL import Image, ImageDraw

    font, small = _font(14), _font(12)
    lines = [title, subtitle]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(probe.textlength(s, font=font if i == 0 else small) for i, s in enumerate(lines))
    pad, bar_w, head = 10, 22, 48
    width = int(max(text_w, bar_w + 50)) + 2 * pad
    height = max(int(height), head + 120)
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.text((pad, pad), lines[0], fill=(0, 0, 0), font=font)
    draw.text((pad, pad + 20), lines[1], fill=(80, 80, 80), font=small)
    top, bottom = head, height - pad
    ramp = np.linspace(1.0, 0.0, bottom - top)
    strip = np.repeat(lut[np.rint(ramp * 255).astype(np.int64)][:, None, :], bar_w, axis=1)
    im.paste(Image.fromarray(np.ascontiguousarray(strip)), (pad, top))
    draw.rectangle([pad - 1, top - 1, pad + bar_w, bottom], outline=(0, 0, 0))  # around the strip, not over it
    for value in (1.0, 0.5, 0.0):
        y = round(top + (1.0 - value) * (bottom - top - 1))
        draw.line([pad + bar_w, y, pad + bar_w + 4, y], fill=(0, 0, 0))
        draw.text((pad + bar_w + 7, min(max(y - 7, top), bottom - 14)), f"{value:.1f}", fill=(0, 0, 0), font=small)
    return im


def figure(rgb: np.ndarray, panels: Sequence):
    """The composited image with ``panels`` (PIL images: colour bar, legend) side by side on its right."""
    from PIL import Image

    gap = 8
    h, w = rgb.shape[:2]
    width = w + sum(gap + p.width for p in panels)
    height = max([h] + [p.height for p in panels])
    out = Image.new("RGB", (width, height), (255, 255, 255))
    out.paste(Image.fromarray(np.ascontiguousarray(rgb)), (0, 0))
    x = w
    for p in panels:
        out.paste(p.convert("RGB"), (x + gap, 0))
        x += gap + p.width
    return out
