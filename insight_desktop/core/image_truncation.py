"""Rows missing from an image that Pillow decodes without complaint (numpy only; no Pillow).

Pillow pads such files silently: a PNG whose compressed stream ends early (its decoder stops
where the stream ends), a TIFF whose strips do not reach the bottom, a JPEG whose scans stop
before the blocks its header announces (libjpeg fills the rest and only warns, and the warning
does not reach Python). :func:`missing_rows` checks the file itself after a successful decode:

* PNG: the IDAT data is inflated, a megabyte at a time and only counted, up to the size the
  header implies (rows × (1 + row bytes), per Adam7 pass when interlaced); less is truncation.
* TIFF (uncompressed strips or tiles): their extents must cover every row.
* JPEG (Huffman, sequential or progressive): a sound lower bound, never a false alarm: every
  block costs at least 2 bits in a sequential scan (a DC code and an end-of-block code) and 1 in
  a progressive one (its DC scan), so fewer entropy-coded bytes than that cannot hold the image.
  A JPEG missing only a small share of its blocks still passes (see :mod:`.images`).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO

import numpy as np


def missing_rows(fmt: str | None, size: tuple[int, int], tiles: list, fh: BinaryIO) -> str | None:
    """Why rows are missing from an image Pillow decoded without complaint (in words), or None.

    ``fmt`` and ``size`` are Pillow's, ``tiles`` the image's tile list taken before loading,
    ``fh`` the file (read from its start; its position is not restored)."""
    if fmt == "PNG":
        return _png_missing(fh, size)
    if fmt == "JPEG":
        return _jpeg_missing(fh)
    if fmt == "TIFF" and tiles and all(t[0] == "raw" for t in tiles):
        return _tiles_missing(tiles, size)
    return None


def _tiles_missing(tiles: list, size: tuple[int, int]) -> str | None:
    """The raw strips or tiles of a TIFF must cover the image; the rows they leave out are missing."""
    width, height = size
    covered = np.zeros(height, dtype=np.int64)  # per row: columns covered (tiles do not overlap)
    for tile in tiles:
        x0, y0, x1, y1 = tile[1]
        x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
        if x1 > x0 and y1 > y0:
            covered[y0:y1] += x1 - x0
    short = int(np.count_nonzero(covered < width))
    return f"its strips or tiles leave {short} of {height} rows without data" if short else None


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_missing(fh: BinaryIO, size: tuple[int, int]) -> str | None:
    """Inflate the IDAT data (counting bytes, a megabyte at a time) and compare with the size
    the header implies; Pillow's decoder stops quietly where the compressed stream ends."""
    fh.seek(0)
    if fh.read(8) != b"\x89PNG\r\n\x1a\n":
        return None
    head = fh.read(8)
    if len(head) < 8 or head[4:] != b"IHDR":
        return None
    ihdr = fh.read(13)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    bits = depth * _PNG_CHANNELS.get(colour, 1)

    def row_bytes(w: int) -> int:
        return 1 + (w * bits + 7) // 8

    if interlace:
        expected = 0
        for x0, y0, dx, dy in _ADAM7:
            pw, ph = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
            if pw > 0 and ph > 0:
                expected += ph * row_bytes(pw)
    else:
        expected = height * row_bytes(width)
    fh.seek(4, os.SEEK_CUR)  # IHDR's CRC
    inflate = zlib.decompressobj()
    got = 0
    while got < expected:
        head = fh.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            break
        if kind != b"IDAT":
            fh.seek(length + 4, os.SEEK_CUR)
            continue
        data = fh.read(length)
        fh.seek(4, os.SEEK_CUR)
        while data and got < expected and not inflate.eof:
            try:
                got += len(inflate.decompress(data, 1 << 20))
            except zlib.error:
                return None  # corrupt, not short: Pillow has judged it already
            data = inflate.unconsumed_tail
        if inflate.eof:
            break
    if got >= expected:
        return None
    per_row = expected / max(height, 1)
    return f"the header says {width}x{height}, the data holds about {int(got // per_row)} rows"


_SOF_SEQUENTIAL = frozenset({0xC0, 0xC1})     # Huffman, baseline and extended
_SOF_PROGRESSIVE = frozenset({0xC2})


def _jpeg_missing(fh: BinaryIO) -> str | None:
    """Count the entropy-coded bytes of every scan against the fewest the header's size needs."""
    fh.seek(0)
    data = fh.read()
    pos, n = 2, len(data)
    frame = None
    coded = 0
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xD9:
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segment = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in _SOF_SEQUENTIAL | _SOF_PROGRESSIVE or len(segment) < 6:
                return None  # lossless, hierarchical or arithmetic-coded: no bound known here
            height, width, count = struct.unpack(">HHB", segment[1:6])
            comps = [tuple(segment[6 + 3 * i:9 + 3 * i]) for i in range(count)]
            if len(comps) != count or any(len(c) < 2 for c in comps):
                return None
            frame = (marker, width, height, [(c[1] >> 4, c[1] & 15) for c in comps])
        elif marker == 0xDA:  # the scan's entropy-coded data runs to the next marker but RSTn
            end = pos
            while True:
                end = data.find(b"\xff", end)
                if end < 0 or end + 1 >= n:
                    end = n
                    break
                nxt = data[end + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    end += 2 if nxt != 0xFF else 1
                    continue
                break
            coded += end - pos
            pos = end
    if frame is None:
        return None
    marker, width, height, sampling = frame
    hmax = max(max(h for h, _ in sampling), 1)
    vmax = max(max(v for _, v in sampling), 1)
    def up(a: int, b: int) -> int:  # ceil(a / b)
        return (a + b - 1) // b

    # the blocks of each component, counted without MCU padding: a lower bound for any scan layout
    blocks = sum(up(up(width * max(h, 1), hmax), 8) * up(up(height * max(v, 1), vmax), 8) for h, v in sampling)
    need_bits = blocks * (2 if marker in _SOF_SEQUENTIAL else 1)
    if coded * 8 >= need_bits:
        return None
    return (f"the header says {width}x{height}, which needs at least {need_bits // 8:,} bytes of image data; "
            f"the file has {coded:,}")
