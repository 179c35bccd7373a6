"""Fuzzing the image loader: mutated PNG, JPEG, GIF, TIFF, BMP and WebP files, lying headers, bombs.

The property: :func:`load_image` returns an H×W×3 C-contiguous ``uint8`` array whose size is the
one the header gives (rows and columns swapped for EXIF orientations 5–8), or raises
:class:`ImageLoadError` with a reason — never another exception type. It runs with the app's
default ``max_pixels``, so headers near the limit are decoded as the app would decode them.
``make test`` runs a few derandomised examples per strategy; ``make fuzz``
(``INSIGHT_FUZZ_EXAMPLES=N``: N random examples per strategy, ``-m fuzz``) runs thousands and
prints cases, outcomes, unexpected types, the slowest case and the largest memory peak.

Memory is each case's own peak resident size (Linux: freed heap memory is returned with
``malloc_trim``, the peak is reset through ``/proc/self/clear_refs`` before the case and read from
``VmHWM`` after it), minus the resident size before the case. RSS, not tracemalloc: Pillow and
libwebp allocate pixel buffers with C ``malloc``, which tracemalloc does not see. Elsewhere it
falls back to the rise of ``ru_maxrss`` (a lower bound: only a case that raises the process's
peak shows). The reset lowers ``ru_maxrss`` for the rest of the process, so the report gives the
process peak from before this file. Time and memory are reported, not asserted (tests never
assert on timing).
"""

from __future__ import annotations

import collections
import ctypes
import io
import resource
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from PIL import ExifTags, Image, features

from insight_desktop.core.images import ImageLoadError, load_image
from tests.fuzzing import fuzz_settings, print_report

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore")]

SETTINGS = fuzz_settings(10, HealthCheck.function_scoped_fixture)
MiB = 1 << 20


# -- measuring ---------------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))
    except (OSError, StopIteration, ValueError):
        return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux ≥ 4.0); False where that is not possible. Freed heap
    memory goes back to the system first (glibc's malloc_trim), or a case that reuses what an
    earlier one freed would not raise the resident size at all."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


class Stats:
    def __init__(self) -> None:
        self.cases = 0
        self.outcomes: collections.Counter = collections.Counter()
        self.unexpected: collections.Counter = collections.Counter()
        self.slowest = (0.0, "")
        self.peak = (0, "")
        self.over_time = self.over_memory = 0
        self.process_peak = _maxrss()  # before the first reset, which lowers ru_maxrss too
        self.per_case = None  # True: VmHWM per case; False: ru_maxrss rise

    def report(self) -> str:
        how = "peak RSS of the case over its start" if self.per_case else "rise of the process's peak RSS"
        return "\n".join([
            f"image fuzz: {self.cases} cases, {len(self.unexpected)} unexpected exception types "
            f"{dict(self.unexpected)}",
            f"  outcomes: {dict(self.outcomes.most_common())}",
            f"  slowest case {self.slowest[0]:.2f} s ({self.slowest[1]}); over 5 s: {self.over_time}",
            f"  largest {how}: {self.peak[0] / MiB:.0f} MiB ({self.peak[1]}); cases over 1 GiB: "
            f"{self.over_memory}; process peak RSS before this file {self.process_peak / MiB:.0f} MiB"])


STATS = Stats()


@pytest.fixture(scope="module", autouse=True)
def fuzz_report(request):
    yield
    print_report(request, STATS.report())


def expected_shape(path: Path) -> tuple[int, int] | None:
    """(rows, columns) as the header gives them, after EXIF orientation; None if Pillow cannot say."""
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            im.load()
            w, h = im.size
            try:
                turned = im.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
            except Exception:  # the loader ignores unreadable EXIF, and so does this check
                turned = False
            return (w, h) if turned else (h, w)
    except Exception:
        return None


def check(raw: bytes, label: str, tmp: Path, *, allow_truncated: bool = False) -> None:
    """Load ``raw`` from a file as the app does; the property, and the case's time and memory."""
    path = tmp / "fuzz.img"
    path.write_bytes(raw)
    per_case = _reset_peak()
    STATS.per_case = per_case if STATS.per_case is None else STATS.per_case and per_case
    before = (_status_kib("VmRSS") or 0) * 1024 if per_case else _maxrss()
    start = time.perf_counter()
    try:
        a = load_image(path, allow_truncated=allow_truncated)
        outcome = "loaded"
    except ImageLoadError as exc:
        assert exc.reason and exc.path == path, "an ImageLoadError without a reason or with another path"
        outcome = "ImageLoadError"
        a = None
    except Exception as exc:
        STATS.unexpected[type(exc).__name__] += 1
        raise
    finally:
        elapsed = time.perf_counter() - start
        rise = ((_status_kib("VmHWM") or 0) * 1024 if per_case else _maxrss()) - before
        STATS.cases += 1
        if elapsed > STATS.slowest[0]:
            STATS.slowest = (elapsed, label)
        STATS.over_time += elapsed > 5
        if rise > STATS.peak[0]:
            STATS.peak = (rise, label)
        STATS.over_memory += rise > 1 << 30
    STATS.outcomes[f"{label.split(':')[0]}: {outcome}"] += 1
    if a is not None:
        assert isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        assert a.flags.c_contiguous
        shape = expected_shape(path)
        assert shape is None or a.shape[:2] == shape, f"{label}: {a.shape} for a header of {shape}"


# -- the seeds: small valid files of every kind the loader accepts ----------------------------------
def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (12, 16, 4), dtype=np.uint8))
    grey = rgb.convert("L")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    frames = [Image.new("RGB", (10, 6), c) for c in ((200, 20, 30), (20, 40, 210))]
    p = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    seeds = {
        "png-rgb": _encode(rgb, "PNG"), "png-rgba": _encode(rgba, "PNG"), "png-l": _encode(grey, "PNG"),
        "png-la": _encode(rgba.convert("LA"), "PNG"), "png-1": _encode(grey.convert("1"), "PNG"),
        "png-16": _encode(Image.fromarray(rng.integers(0, 65536, (12, 16), dtype=np.uint16)), "PNG"),
        "png-p": _encode(p, "PNG", transparency=3), "png-interlaced": _encode(rgb, "PNG", interlace=1),
        "png-exif": _encode(rgb, "PNG", exif=exif),
        "jpeg": _encode(rgb, "JPEG", quality=90), "jpeg-progressive": _encode(rgb, "JPEG", progressive=True),
        "jpeg-cmyk": _encode(rgb.convert("CMYK"), "JPEG"), "jpeg-grey": _encode(grey, "JPEG"),
        "jpeg-exif": _encode(rgb, "JPEG", exif=exif), "jpeg-restart": _encode(rgb, "JPEG", restart_marker_blocks=1),
        "gif": _encode(p, "GIF", transparency=0),
        "gif-animated": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0),
        "tiff": _encode(rgb, "TIFF"), "tiff-deflate": _encode(rgba, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-lzw": _encode(grey, "TIFF", compression="tiff_lzw"), "tiff-exif": _encode(rgb, "TIFF", exif=exif),
        "tiff-16": _encode(Image.fromarray(rng.integers(0, 65536, (12, 16), dtype=np.uint16)), "TIFF"),
        "tiff-float": _encode(Image.fromarray(rng.random((12, 16), dtype=np.float32)), "TIFF"),
        "bmp": _encode(rgb, "BMP"), "bmp-p": _encode(p, "BMP"), "bmp-1": _encode(grey.convert("1"), "BMP"),
    }
    if features.check("webp"):  # a Pillow built without libwebp cannot write (or read) them
        seeds.update({
            "webp": _encode(rgb, "WEBP", quality=80), "webp-lossless": _encode(rgba, "WEBP", lossless=True),
            "webp-exif": _encode(rgb, "WEBP", exif=exif),
            "webp-animated": _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=40)})
    return seeds


SEEDS = _seeds()
NAMES = sorted(SEEDS)


def test_every_seed_loads_with_its_shape(tmp_path):
    """The seeds themselves are valid: each loads, at its header's size (6: turned a quarter)."""
    for name in NAMES:
        a = load_image(_write(tmp_path, name))
        rows, cols = (6, 10) if "animated" in name else (12, 16)
        assert a.dtype == np.uint8 and a.flags.c_contiguous, name
        assert a.shape == ((cols, rows, 3) if "exif" in name else (rows, cols, 3)), name


def _write(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.img"
    path.write_bytes(SEEDS[name])
    return path


# -- format-aware header edits -------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        out.append((kind, raw[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(_png_chunk(k, d) for k, d in chunks)


def _gif_descriptor(data: bytes) -> int | None:
    try:
        pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        while data[pos] == 0x21:
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        return pos if data[pos] == 0x2C else None
    except IndexError:
        return None


def _tiff_entries(data: bytes):
    """(offset, tag, type) of IFD0's entries of a little-endian TIFF."""
    ifd = struct.unpack("<I", data[4:8])[0]
    for e in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        p = ifd + 2 + 12 * e
        tag, kind = struct.unpack("<HH", data[p:p + 4])
        yield p, tag, kind


def set_size(data: bytes, name: str, width: int, height: int) -> bytes:
    """``data`` with the header's width and height replaced (each masked to its field's width);
    PNG's IHDR CRC is recomputed, so the lie reaches the decoder."""
    out = bytearray(data)
    fmt = name.split("-")[0]
    if fmt == "png":
        chunks = png_chunks(data)
        chunks[0] = (b"IHDR", struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF) + chunks[0][1][8:])
        return png_join(chunks)
    if fmt == "jpeg":
        sof = next(i for i in range(len(out) - 1) if out[i] == 0xFF and out[i + 1] in (0xC0, 0xC1, 0xC2))
        out[sof + 5:sof + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    elif fmt == "gif":
        out[6:10] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
        desc = _gif_descriptor(out)
        if desc is not None and (width ^ height) & 1:  # sometimes the frame too, not only the screen
            out[desc + 5:desc + 9] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    elif fmt == "bmp":
        rows = height & 0x7FFFFFFF
        out[18:26] = struct.pack("<ii", width & 0x7FFFFFFF, -rows if width & 1 else rows)  # < 0: top-down
    elif fmt == "tiff":
        for p, tag, kind in _tiff_entries(out):
            if tag in (256, 257):
                v = width if tag == 256 else height
                long = kind == 4
                out[p + 8:p + 12] = struct.pack("<I", v & 0xFFFFFFFF) if long else struct.pack("<HH", v & 0xFFFF, 0)
    elif fmt == "webp":
        kind = bytes(out[12:16])
        if kind == b"VP8X":
            out[24:30] = b"".join(((v - 1) & 0xFFFFFF).to_bytes(3, "little") for v in (width, height))
        elif kind == b"VP8L":
            bits = struct.unpack("<I", out[21:25])[0] & ~0xFFFFFFF
            out[21:25] = struct.pack("<I", bits | ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14))
        elif kind == b"VP8 ":
            out[26:30] = struct.pack("<HH", width & 0x3FFF, height & 0x3FFF)
    return bytes(out)


# Around the app's limit (~179 MP: 13 000² fits, 13 000 × 16 384 does not), a few edges, far above it.
SIDES = (st.sampled_from([0, 1, 2, 7, 8, 9, 255, 256, 1000, 4096, 9000, 13_000, 16_383, 16_384, 65_535, 65_536,
                          100_000, 2**31 - 1, 2**32 - 1])
         | st.integers(0, 5000) | st.integers(0, 2**32 - 1))


# -- the strategies --------------------------------------------------------------------------------------
def _seed(data: st.DataObject) -> tuple[str, bytes]:
    name = data.draw(st.sampled_from(NAMES))
    return name, SEEDS[name]


@SETTINGS
@given(st.data())
def test_fuzz_byte_flips(tmp_path, data):
    name, raw = _seed(data)
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        # Half of the edits in the first 64 bytes: the headers, where a change reaches a decision.
        at = data.draw(st.integers(0, min(63, len(out) - 1)) | st.integers(0, len(out) - 1))
        out[at] = data.draw(st.integers(0, 255) | st.sampled_from([0, 0xFF, out[at] ^ 0x80, out[at] ^ 1]))
    check(bytes(out), f"flip:{name}", tmp_path, allow_truncated=data.draw(st.booleans()))


@SETTINGS
@given(st.data())
def test_fuzz_truncate_insert_delete(tmp_path, data):
    name, raw = _seed(data)
    op = data.draw(st.sampled_from(["truncate", "insert", "delete", "repeat"]))
    at = data.draw(st.integers(1, len(raw) - 1))
    if op == "truncate":
        out = raw[:at]
    elif op == "insert":
        out = raw[:at] + data.draw(st.binary(min_size=1, max_size=64) | st.just(b"\xff" * 4096)) + raw[at:]
    elif op == "delete":
        out = raw[:at] + raw[at + data.draw(st.integers(1, 64)):]
    else:
        end = data.draw(st.integers(at, len(raw)))
        out = raw[:end] + raw[at:end] * data.draw(st.integers(1, 50)) + raw[end:]
    check(out, f"{op}:{name}", tmp_path, allow_truncated=data.draw(st.booleans()))


@SETTINGS
@given(st.data())
def test_fuzz_spliced_headers(tmp_path, data):
    """The head of one file on the body of another: a header that lies about the data after it."""
    (a, ra), (b, rb) = _seed(data), _seed(data)
    cut_a = data.draw(st.integers(1, len(ra)))
    cut_b = data.draw(st.integers(0, len(rb) - 1))
    check(ra[:cut_a] + rb[cut_b:], f"splice:{a}+{b}", tmp_path, allow_truncated=data.draw(st.booleans()))


@SETTINGS
@given(st.data())
def test_fuzz_header_sizes(tmp_path, data):
    """Width and height rewritten in the header (huge, zero, near the limit), checksums kept valid:
    a file far over the limit is refused from its header, before any pixel is decoded."""
    name, raw = _seed(data)
    width, height = data.draw(SIDES), data.draw(SIDES)
    allow = data.draw(st.integers(0, 3)) == 0
    out = set_size(raw, name, width, height)
    try:  # the label gives the size as read from the header (the fields are 14 to 32 bits wide)
        with Image.open(io.BytesIO(out)) as im:
            width, height = im.size
    except Exception:
        pass
    check(out, f"size:{name} {width}x{height}{' allowed' if allow else ''}", tmp_path, allow_truncated=allow)


@SETTINGS
@given(st.data())
def test_fuzz_png_chunks(tmp_path, data):
    """PNG chunks dropped, repeated, reordered or rewritten with valid CRCs (CRCs stop most flips),
    including compressed text and ICC chunks that inflate to far more than they hold."""
    name = data.draw(st.sampled_from([n for n in NAMES if n.startswith("png")]))
    chunks = png_chunks(SEEDS[name])
    op = data.draw(st.sampled_from(["drop", "repeat", "swap", "rewrite", "ihdr", "bomb-text", "bomb-iccp",
                                    "split-idat"]))
    i = data.draw(st.integers(0, len(chunks) - 1))
    j = data.draw(st.integers(0, len(chunks) - 1))
    if op == "drop":
        del chunks[i]
    elif op == "repeat":
        chunks.insert(i, chunks[j])
    elif op == "swap":
        chunks[i], chunks[j] = chunks[j], chunks[i]
    elif op == "rewrite":
        body = bytearray(chunks[i][1])
        for _ in range(data.draw(st.integers(1, 4))):
            if body:
                body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
        chunks[i] = (chunks[i][0], bytes(body) + data.draw(st.binary(max_size=8)))
    elif op == "ihdr":  # bit depth, colour type, compression, filter, interlace: any byte
        body = bytearray(chunks[0][1])
        body[data.draw(st.integers(8, 12))] = data.draw(st.integers(0, 255) | st.sampled_from([1, 2, 4, 8, 16]))
        chunks[0] = (b"IHDR", bytes(body))
    elif op == "bomb-text":  # 64 MB of text in a 64 KB zTXt chunk
        chunks.insert(1, (b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * (64 << 20), 9)))
    elif op == "bomb-iccp":
        chunks.insert(1, (b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * (64 << 20), 9)))
    else:  # the image data in many small IDAT chunks
        k = next(n for n, (kind, _) in enumerate(chunks) if kind == b"IDAT")
        body = chunks[k][1]
        step = data.draw(st.integers(1, 16))
        chunks[k:k + 1] = [(b"IDAT", body[s:s + step]) for s in range(0, len(body), step)]
    check(png_join(chunks), f"png-{op}:{name}", tmp_path, allow_truncated=data.draw(st.booleans()))


@SETTINGS
@given(st.data())
def test_fuzz_metadata(tmp_path, data):
    """EXIF orientation of any value and damaged EXIF blocks, in JPEG, PNG, TIFF and WebP."""
    name = data.draw(st.sampled_from([n for n in ("jpeg", "png-rgb", "tiff", "webp", "png-rgba", "jpeg-cmyk")
                                      if n in SEEDS]))
    with Image.open(io.BytesIO(SEEDS[name])) as im:
        im.load()
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = data.draw(st.integers(0, 0xFFFF) | st.integers(0, 9))
        fmt = name.split("-")[0].upper()
        kw = {"lossless": True} if fmt == "WEBP" else {}
        raw = exif.tobytes()
        if data.draw(st.booleans()):  # damage the EXIF block itself
            blob = bytearray(raw)
            for _ in range(data.draw(st.integers(1, 6))):
                blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
            raw = bytes(blob[:data.draw(st.integers(0, len(blob)))])
        try:
            out = _encode(im, fmt, exif=raw, **kw)
        except Exception:  # Pillow will not write this EXIF into this format: nothing to test
            return
    check(out, f"exif:{name}", tmp_path)


# -- regressions found by this fuzzing ----------------------------------------------------------------
def test_tiff_with_exif_orientation_is_not_called_truncated(tmp_path):
    """Pillow gives a TIFF with orientation 5–8 its turned size before loading; its strips still
    cover the stored size, so the truncation check must count rows there (it said 4 of 16 missing)."""
    stored = np.zeros((12, 16, 3), np.uint8)
    stored[:4, :4] = (200, 20, 30)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    path = tmp_path / "turned.tif"
    path.write_bytes(_encode(Image.fromarray(stored), "TIFF", exif=exif))
    a = load_image(path)
    assert a.tolist() == np.rot90(stored, -1).tolist()  # 6: a quarter turn clockwise, once


def test_a_gif_screen_far_larger_than_its_frame_loads_as_background(tmp_path):
    """A 40-byte GIF whose logical screen is 3000 × 2000 (a 1×1 frame): a valid file, converted in
    bands (was: ~25 bytes per pixel of whole-image copies, 4 GB for a 13 000² screen)."""
    raw = bytearray(_encode(Image.new("P", (1, 1)), "GIF", transparency=0))
    raw[6:10] = struct.pack("<HH", 3000, 2000)
    path = tmp_path / "screen.gif"
    path.write_bytes(bytes(raw))
    a = load_image(path)
    assert a.shape == (2000, 3000, 3) and (a == 255).all()  # transparent background over white


def _whole_image_rgb(im: Image.Image) -> np.ndarray:
    """The conversion as it was before bands (whole-image arrays): the reference for the rules."""
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.min() >= 0 and a.max() <= 65535):
            grey = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        else:
            f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = float(f.min()), float(f.max())
            if im.mode == "F" and lo >= 0 and hi <= 1:
                f = f * 255
            elif not (im.mode == "F" and lo >= 0 and hi <= 255):
                f = (f - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(f)
            grey = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[:, :, 3:]
        return ((rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.asarray(im.convert("RGB"))


MODES = ["RGB", "RGBA", "LA", "P", "P-trns", "P-alpha", "PA", "L", "L-trns", "1", "CMYK", "I", "I-big", "I;16",
         "F", "F-stretch"]


@pytest.mark.parametrize("mode", MODES)
def test_conversion_in_bands_keeps_the_rules(monkeypatch, mode):
    """Bands of a few rows (and the palette lookup) give the whole-image conversion's exact values."""
    from insight_desktop.core import image_rgb

    rng = np.random.default_rng(1)
    if mode in ("I", "I-big", "I;16", "F", "F-stretch"):
        values = {"I": rng.integers(0, 65536, (37, 29)).astype(np.int32),
                  "I-big": rng.integers(-70_000, 70_000, (37, 29)).astype(np.int32),
                  "I;16": rng.integers(0, 65536, (37, 29)).astype(np.uint16),
                  "F": rng.random((37, 29), dtype=np.float32),
                  "F-stretch": (rng.random((37, 29)) * 900 - 300).astype(np.float32)}[mode]
        if mode == "F-stretch":
            values[5, 5], values[30, 1] = np.nan, np.inf
        im = Image.fromarray(values)
    else:
        im = Image.fromarray(rng.integers(0, 256, (37, 29, 4), dtype=np.uint8)).convert(mode.split("-")[0])
        if mode in ("P-trns", "L-trns"):
            im.info["transparency"] = 7
        elif mode == "P-alpha":  # a PNG tRNS chunk: an alpha per palette entry
            im.info["transparency"] = bytes(rng.integers(0, 256, 200, dtype=np.uint8))
    reference = _whole_image_rgb(im)
    assert np.array_equal(image_rgb.to_rgb(im), reference)
    monkeypatch.setattr(image_rgb, "BAND_PIXELS", 29 * 5)  # 5 rows a band, the last one 2
    assert len(list(image_rgb.bands(im))) == 8
    banded = image_rgb.to_rgb(im)
    assert banded.dtype == np.uint8 and banded.flags.c_contiguous and banded.shape == (37, 29, 3)
    assert np.array_equal(banded, reference)


def test_over_white_is_the_integer_rule_for_every_alpha_and_value():
    """The loader composites with Pillow's paste; it must equal (c·a + 255·(255 − a) + 127) // 255."""
    from insight_desktop.core.image_rgb import over_white

    alpha, value = np.divmod(np.arange(1 << 16), 256)
    rgba = np.stack([value, 255 - value, value, alpha], -1).astype(np.uint8).reshape(256, 256, 4)
    got = np.asarray(over_white(Image.fromarray(rgba, "RGBA"))).astype(int)
    for channel, c in ((0, value), (1, 255 - value), (2, value)):
        assert np.array_equal(got[:, :, channel].reshape(-1), (c * alpha + 255 * (255 - alpha) + 127) // 255)


def test_a_webp_canvas_under_max_pixels_but_over_the_memory_budget_is_refused_from_its_header(tmp_path):
    """100 000 × 1 421 (142 MP, under max_pixels) in an animated WebP's header peaked at 2.2 GB:
    libwebp's canvas and its copy come on top of Pillow's pixels and the output."""
    path = tmp_path / "wide.webp"
    path.write_bytes(set_size(SEEDS["webp-animated"], "webp-animated", 100_000, 1_421))
    with pytest.raises(ImageLoadError, match=r"100000x1421 .*needs about 2,\d{3} MiB to load, over the limit"):
        load_image(path)


def test_the_memory_budget_counts_bytes_per_pixel_of_the_mode(tmp_path, monkeypatch):
    """An L image costs 1 + 3 bytes a pixel, RGB 4 + 3 (Pillow stores RGB as 4 bytes), plus the
    bands' temporaries: with the budget at exactly what the L image needs, L loads and RGB does not."""
    from insight_desktop.core import image_rgb, images

    grey, colour = tmp_path / "l.png", tmp_path / "rgb.png"
    grey.write_bytes(_encode(Image.new("L", (20, 10), 7), "PNG"))
    colour.write_bytes(_encode(Image.new("RGB", (20, 10), (1, 2, 3)), "PNG"))
    monkeypatch.setattr(images, "MAX_LOAD_BYTES", 200 * 4 + 16 * image_rgb.BAND_PIXELS)
    assert load_image(grey).shape == (10, 20, 3)
    with pytest.raises(ImageLoadError, match="needs about"):
        load_image(colour)
    monkeypatch.setattr(images, "MAX_LOAD_BYTES", 200 * 4 + 16 * image_rgb.BAND_PIXELS - 1)
    with pytest.raises(ImageLoadError, match="needs about"):
        load_image(grey)


def test_an_rgba_png_over_the_memory_budget_is_refused_before_any_pixel_is_decoded(monkeypatch):
    """13 000² RGBA (169 MP, under max_pixels) needs ~1.2 GB: refused from the header. No decode
    may happen first (a PNG's getexif() would decode the image when no eXIf chunk precedes it)."""
    from PIL import PngImagePlugin

    from insight_desktop.core.images import load_image_bytes

    decoded = []

    def no_decoding(self):
        decoded.append(self)
        raise AssertionError("decoded before the memory check")

    ihdr = struct.pack(">IIBBBBB", 13_000, 13_000, 8, 6, 0, 0, 0)
    raw = png_join([(b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\0" * 100)), (b"IEND", b"")])
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    with pytest.raises(ImageLoadError, match=r"13000x13000 RGBA PNG needs about 1,\d{3} MiB to load"):
        load_image_bytes(raw)
    assert not decoded
