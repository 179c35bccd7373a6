"""The image view's layers as plain numpy RGBA arrays, their composite, the export figure, and
the patch geometry that clicks and hovers use.

Everything here is numpy + Pillow (pyqtgraph only to read its colour tables), so what the
screen shows and what an exported PNG holds come from the same arrays, and tests can check the
pixels without a screen.
"""

from __future__ import annotations

import math
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
    """
    idx = np.clip(heat, 0.0, 1.0)
    idx = (idx * 255.0 + 0.5).astype(np.uint8)
    out = np.empty((*heat.shape, 4), dtype=np.uint8)
    out[..., :3] = lut[idx]
    out[..., 3] = idx
    if threshold > 0:
        out[..., 3][heat <= threshold] = 0
    return out


def label_rgba(labels: np.ndarray, colours: Sequence[tuple[int, int, int]], hidden: Iterable[int] = ()) -> np.ndarray:
    """Segmentation labels [H, W] → RGBA uint8 [H, W, 4] in the class colours; hidden labels are transparent."""
    table = np.zeros((max(len(colours), 1), 4), dtype=np.uint8)
    table[: len(colours), :3] = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    table[: len(colours), 3] = 255
    for label in hidden:
        if 0 <= label < len(table):
            table[label, 3] = 0
    return np.take(table, labels, axis=0, mode="clip")


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


class DisplayMapCache:
    """``analysis.display_map(j)`` for the last few concepts of the current analysis (LRU).

    A new analysis empties it, so no old analysis is kept alive by the cache.
    """

    def __init__(self, size: int = MAP_CACHE_SIZE):
        self.size = size
        self._analysis = None
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, analysis, concept: int) -> np.ndarray:
        if analysis is not self._analysis:
            self._analysis, self._maps = analysis, OrderedDict()
        found = self._maps.get(concept)
        if found is None:
            found = self._maps[concept] = analysis.display_map(concept)
            while len(self._maps) > self.size:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(concept)
        return found


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


def colorbar_image(lut: np.ndarray, height: int, title: str):
    """A vertical colour bar (1 at the top) with ticks, titled ``title`` and "relative activation"."""
    from PIL import Image, ImageDraw

    font, small = _font(14), _font(12)
    lines = [title, "relative activation"]
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
