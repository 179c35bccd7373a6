"""Truncated images: data that holds fewer rows than the header claims raises "file is truncated"
(Pillow alone would pad such files with black or grey), unless the caller opts in."""

from __future__ import annotations

import io
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from insight_desktop.core.images import (
    ALLOW_TRUNCATED_ENV,
    ImageLoadError,
    load_image,
    load_image_bytes,
)


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def short_png(width: int, height: int, rows: int, interlace: int = 0) -> bytes:
    """A valid PNG stream (complete zlib data, IEND) whose header claims ``height`` rows but whose
    data holds ``rows`` (grey 200)."""
    raw = b"".join(b"\x00" + bytes([200]) * (width * 3) for _ in range(rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def taller_jpeg(rows: int, claimed: int, **kw) -> bytes:
    data = bytearray(encode(noise(rows, 64), "JPEG", **kw))
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5:sof + 7] = struct.pack(">H", claimed)
    return bytes(data)


def tiff_with_fewer_strips(rows: int, claimed: int) -> bytes:
    """An uncompressed TIFF whose ImageLength says ``claimed`` while its strips hold ``rows``."""
    data = bytearray(encode(noise(rows, 48), "TIFF", tiffinfo={278: 16}))
    ifd = struct.unpack("<I", data[4:8])[0]
    for e in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        p = ifd + 2 + 12 * e
        tag, kind = struct.unpack("<HH", data[p:p + 4])
        if tag == 257:  # ImageLength
            data[p + 8:p + 12] = struct.pack("<I", claimed) if kind == 4 else struct.pack("<HH", claimed, 0)
    return bytes(data)


def gif_descriptor(data: bytes) -> int:
    """Offset of a GIF's first image descriptor (after the colour table and any extensions)."""
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[pos] == 0x21:
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C
    return pos


def taller_header(data: bytes, fmt: str, claimed: int) -> bytes:
    """GIF (screen and first frame) / BMP with the header's height raised above what the data holds."""
    out = bytearray(data)
    if fmt == "GIF":
        out[8:10] = struct.pack("<H", claimed)
        desc = gif_descriptor(out)
        out[desc + 7:desc + 9] = struct.pack("<H", claimed)
    else:  # BMP: biHeight at 22
        out[22:26] = struct.pack("<i", claimed)
    return bytes(out)


def test_png_with_fewer_rows_than_its_header_is_truncated(tmp_path):
    path = tmp_path / "short.png"
    path.write_bytes(short_png(128, 100_000, 85))
    assert Image.open(path).size == (128, 100_000)
    with pytest.raises(ImageLoadError, match="file is truncated") as info:
        load_image(path, max_pixels=20_000_000)
    assert "about 85 rows" in info.value.reason and ALLOW_TRUNCATED_ENV in info.value.reason


def test_interlaced_png_with_missing_passes_is_truncated():
    """An Adam7 PNG of 64 rows whose header (CRC fixed) claims 200: the later passes are missing."""
    data = bytearray(encode(noise(64, 64), "PNG", interlace=1))
    data[20:24] = struct.pack(">I", 200)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    with pytest.raises(ImageLoadError, match="file is truncated"):
        load_image_bytes(bytes(data))


def test_complete_pngs_of_every_kind_still_load():
    for rgb in (noise(37, 53), noise(1, 1), noise(300, 7)):
        for kw in ({}, {"optimize": True}, {"interlace": 1}):
            assert np.array_equal(load_image_bytes(encode(rgb, "PNG", **kw)), rgb)
    for mode in ("1", "L", "P", "LA", "RGBA", "I;16"):
        im = Image.fromarray(noise(20, 30)).convert(mode if mode != "I;16" else "L")
        if mode == "I;16":
            im = Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        assert load_image_bytes(buf.getvalue()).shape == (20, 30, 3)
    # several IDAT chunks
    rgb = noise(64, 64, seed=3)
    buf = io.BytesIO()
    from PIL import PngImagePlugin

    old = PngImagePlugin.ImageFile.MAXBLOCK
    Image.fromarray(rgb).save(buf, format="PNG")
    assert PngImagePlugin.ImageFile.MAXBLOCK == old
    assert np.array_equal(load_image_bytes(buf.getvalue()), rgb)


@pytest.mark.parametrize("kw", [{}, {"progressive": True}, {"subsampling": 0}])
def test_jpeg_claiming_far_more_rows_than_its_data_is_truncated(kw):
    data = taller_jpeg(64, 60_000, **kw)
    assert Image.open(io.BytesIO(data)).size == (64, 60_000)
    with pytest.raises(ImageLoadError, match="file is truncated.*needs at least"):
        load_image_bytes(data)
    assert load_image_bytes(encode(noise(64, 64), "JPEG", **kw)).shape == (64, 64, 3)


def test_tiff_whose_strips_do_not_cover_the_image_is_truncated():
    data = tiff_with_fewer_strips(64, 200)
    with pytest.raises(ImageLoadError, match="file is truncated.*136 of 200 rows"):
        load_image_bytes(data)
    assert np.array_equal(load_image_bytes(encode(noise(64, 48), "TIFF", tiffinfo={278: 16})), noise(64, 48))


@pytest.mark.parametrize("fmt, kw", [("GIF", {}), ("GIF", {"interlace": True}), ("GIF", {"transparency": 0}),
                                     ("BMP", {})])
def test_gif_and_bmp_claiming_more_rows_are_truncated(fmt, kw):
    rgb = noise(64, 48)
    data = encode(rgb if fmt == "BMP" else rgb[..., 0], fmt, **kw)
    with pytest.raises(ImageLoadError, match="file is truncated"):
        load_image_bytes(taller_header(data, fmt, 200))


def test_a_gif_frame_smaller_than_its_screen_is_not_truncated():
    data = bytearray(encode(noise(64, 48)[..., 0], "GIF"))
    data[8:10] = struct.pack("<H", 200)  # the logical screen only: the frame stays 48x64
    assert load_image_bytes(bytes(data)).shape == (200, 48, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "BMP"])
def test_cut_files_are_truncated_and_load_when_allowed(tmp_path, fmt, monkeypatch):
    data = encode(noise(64, 48), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(ImageLoadError, match="file is truncated"):
        load_image(path)
    a = load_image(path, allow_truncated=True)
    assert a.shape == (64, 48, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # switched back after the load
    monkeypatch.setenv(ALLOW_TRUNCATED_ENV, "1")
    assert np.array_equal(load_image(path), a)
    with pytest.raises(ImageLoadError):
        load_image(path, allow_truncated=False)


def test_header_lies_load_padded_when_allowed():
    a = load_image_bytes(short_png(16, 10, 4), allow_truncated=True)
    assert a.shape == (10, 16, 3) and (a[:4] == 200).all() and (a[4:] == 0).all()
    assert load_image_bytes(tiff_with_fewer_strips(64, 200), allow_truncated=True).shape == (200, 48, 3)


def test_strict_loads_never_see_the_switched_global():
    """While allowed loads run in other threads, strict loads still refuse truncated files."""
    cut = encode(noise(64, 48), "PNG")
    cut = cut[: len(cut) // 2]
    errors, stop = [], threading.Event()

    def allowed():
        while not stop.is_set():
            load_image_bytes(cut, allow_truncated=True)

    threads = [threading.Thread(target=allowed) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(200):
            try:
                load_image_bytes(cut)
            except ImageLoadError as exc:
                errors.append(exc)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(errors) == 200
