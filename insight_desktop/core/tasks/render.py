"""Pictures of analysis results for files (numpy + Pillow; the GUI draws its own).

Heatmaps use a perceptually ordered dark-to-bright colour ramp (an "inferno"-like table) and are
blended with the photo in proportion to the heat, so cold regions show the photo unchanged.
Label masks are palette PNGs whose pixel values are the label indices, so they double as
machine-readable masks; the palette makes them viewable.
"""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np

# Anchor colours of the ramp, evenly spaced from 0 to 1 (close to matplotlib's "inferno").
_RAMP = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                  (245, 125, 21), (250, 193, 39), (252, 255, 164)], dtype=np.float64)
# Distinct, readable colours for the first classes (Tableau 10), then evenly spaced hues.
_CLASS_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                  (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
BACKGROUND_COLOUR = (0, 0, 0)


def colour_ramp(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 → RGB uint8 [..., 3]."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.minimum(np.floor(v).astype(np.int64), len(_RAMP) - 2)
    f = (v - lo)[..., None]
    return np.rint(_RAMP[lo] * (1 - f) + _RAMP[lo + 1] * f).astype(np.uint8)


def heat_overlay(rgb: np.ndarray, heat: np.ndarray, strength: float = 0.75) -> np.ndarray:
    """Blend ``colour_ramp(heat)`` over ``rgb`` with opacity ``strength · heat`` (heat in 0..1)."""
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if heat.shape != rgb.shape[:2]:
        raise ValueError(f"heat map {heat.shape} does not match the image {rgb.shape[:2]}")
    alpha = (strength * heat)[..., None]
    out = rgb.astype(np.float32) * (1 - alpha) + colour_ramp(heat).astype(np.float32) * alpha
    return np.rint(out).astype(np.uint8)


def class_colours(n: int, background: bool = False) -> list[tuple[int, int, int]]:
    """``n`` class colours; with ``background`` the last one is black (the background label)."""
    n_classes = n - 1 if background else n
    colours = list(_CLASS_COLOURS[:n_classes])
    extra = n_classes - len(colours)
    for i in range(max(extra, 0)):  # golden-ratio hue steps keep neighbours apart
        r, g, b = colorsys.hsv_to_rgb((0.11 + i * 0.618034) % 1.0, 0.65, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours + ([BACKGROUND_COLOUR] if background else [])


def label_png(labels: np.ndarray, colours: Sequence[tuple[int, int, int]]):
    """A palette ("P") PIL image whose pixel values are ``labels`` (at most 256 labels)."""
    from PIL import Image

    if len(colours) > 256:
        raise ValueError(f"{len(colours)} labels do not fit a palette image (at most 256)")
    im = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="L").convert("P")
    im.putpalette([v for c in colours for v in c] + [0, 0, 0] * (256 - len(colours)))
    return im


def label_overlay(rgb: np.ndarray, labels: np.ndarray, colours: Sequence[tuple[int, int, int]],
                  opacity: float = 0.5) -> np.ndarray:
    """Class colours blended over the photo."""
    lut = np.asarray(colours, dtype=np.float32)
    out = rgb.astype(np.float32) * (1 - opacity) + lut[np.asarray(labels, dtype=np.int64)] * opacity
    return np.rint(out).astype(np.uint8)


def legend_png(names: Sequence[str], colours: Sequence[tuple[int, int, int]], counts: Sequence[int] | None = None):
    """A small RGB PIL image: one colour swatch and name (and pixel share) per label."""
    from PIL import Image, ImageDraw

    row, pad = 22, 6
    total = max(sum(counts), 1) if counts is not None else 0
    lines = [f"{name}" + (f"  {100 * counts[i] / total:.1f} %" if counts is not None else "")
             for i, name in enumerate(names)]
    width = pad * 3 + 16 + 7 * max((len(s) for s in lines), default=1)
    im = Image.new("RGB", (width, pad * 2 + row * len(lines)), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for i, (text, colour) in enumerate(zip(lines, colours)):
        y = pad + i * row
        draw.rectangle([pad, y + 2, pad + 16, y + 18], fill=tuple(colour), outline=(0, 0, 0))
        draw.text((pad * 2 + 16, y + 4), text, fill=(0, 0, 0))
    return im
