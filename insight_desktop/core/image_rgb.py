"""Pillow images to H×W×3 uint8 RGB arrays, in bands of rows (numpy + Pillow; no Qt).

The rules (alpha over white, 16-bit and float grey) are documented in :mod:`.images`, which
calls :func:`to_rgb` after decoding. Working in bands keeps the temporaries of a conversion at
a few tens of MB whatever the image size, so a load costs Pillow's decoded pixels plus the
output, not whole-image copies (~25 bytes a pixel before: 4 GB for a 13 000² GIF screen).
"""

from __future__ import annotations

from typing import Iterator, cast

import numpy as np
from PIL import Image

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa"})

#: pixels converted at a time (the band temporaries take up to ~16 bytes a pixel of a band)
BAND_PIXELS = 1 << 21


def bands(im: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    """(first row, band) over ``im`` in bands of whole rows (crops keep mode, palette and info)."""
    width, height = im.size
    rows = max(1, BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        yield top, im.crop((0, top, width, min(top + rows, height)))


def to_rgb(im: Image.Image) -> np.ndarray:
    """``im`` (any mode) as a C-contiguous H×W×3 uint8 array, by the rules of :mod:`.images`."""
    width, height = im.size
    out = np.empty((height, width, 3), np.uint8)
    if im.mode.startswith("I") or im.mode == "F":
        lo, hi = _numeric_range(im)
        for top, band in bands(im):
            grey = _numeric_to_uint8(np.asarray(band), im.mode, lo, hi)
            out[top:top + band.height] = grey[:, :, None]
    elif im.mode == "P" and "transparency" in im.info:  # most GIFs: one lookup per pixel
        colours = np.asarray(over_white(_every_index(im).convert("RGBA")))[0]
        for top, band in bands(im):
            np.take(colours, np.asarray(band), axis=0, out=out[top:top + band.height])  # take: 2.5× indexing
    elif im.mode in _ALPHA_MODES or "transparency" in im.info:
        for top, band in bands(im):
            out[top:top + band.height] = np.asarray(over_white(band.convert("RGBA")))
    else:
        for top, band in bands(im):
            out[top:top + band.height] = np.asarray(band if band.mode == "RGB" else band.convert("RGB"))
    return out


def over_white(rgba: Image.Image) -> Image.Image:
    """An RGBA image composited over white, as RGB: (c·a + 255·(255 − a) + 127) // 255, i.e. c·a/255
    rounded, exact for a = 0 and 255. Pillow's paste through the alpha computes exactly that (the
    tests check every a and c), four times as fast as the same integers in numpy."""
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, (0, 0), rgba)
    return white


def _every_index(im: Image.Image) -> Image.Image:
    """A 256×1 "P" image holding the indices 0..255, with ``im``'s palette and transparency."""
    strip = im.crop((0, 0, 256, 1))  # keeps palette and info; outside the image is filled with 0
    strip.putdata(list(range(256)))
    return strip


def _numeric_range(im: Image.Image) -> tuple[float, float]:
    """min and max of an I/F image, NaN and ±inf counted as 0 (as the conversion treats them)."""
    if im.mode.startswith("I;16"):
        return 0.0, 65535.0  # the 16-bit rule needs no range
    if im.mode == "I":
        least, most = cast("tuple[int, int]", im.getextrema())  # one pass in C; integers have no NaN
        return float(least), float(most)
    lo, hi = np.inf, -np.inf
    for _, band in bands(im):
        f = np.nan_to_num(np.asarray(band), nan=0.0, posinf=0.0, neginf=0.0)
        if f.size:
            lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def _numeric_to_uint8(a: np.ndarray, mode: str, lo: float, hi: float) -> np.ndarray:
    """One band of an I/F image to 0..255; ``lo``/``hi``: the whole image's range."""
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        # round(v / 257) in integers: v / 257 == v·255 / 65535 and never ends in exactly .5.
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    f = np.nan_to_num(a.astype(np.float64), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        f *= 255
    elif not (mode == "F" and lo >= 0 and hi <= 255):
        if hi > lo:
            f -= lo
            f *= 255 / (hi - lo)
        else:
            f[...] = 0
    return np.clip(np.rint(f, out=f), 0, 255, out=f).astype(np.uint8)  # in place: one band-sized buffer
