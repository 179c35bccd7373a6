"""Tests for insight_desktop.core.images: every odd image is made here, in tmp_path."""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image

from insight_desktop.core.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    FolderScan,
    ImageLoadError,
    find_images,
    iter_images,
    load_image,
    load_image_bytes,
    scan_folder,
    tile_boxes,
)

RED, GREEN, BLUE, YELLOW = (220, 20, 30), (20, 200, 40), (30, 40, 210), (230, 220, 20)


def quadrants(width: int = 16, height: int = 12) -> Image.Image:
    """An RGB image with four differently coloured quadrants, to catch flips and transposes."""
    a = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    a[:h, :w], a[:h, w:], a[h:, :w], a[h:, w:] = RED, GREEN, BLUE, YELLOW
    return Image.fromarray(a)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def hand_png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG built byte by byte, for what Pillow will not write (16-bit RGB, lying headers)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def check_rgb(a: np.ndarray, shape: tuple[int, int]) -> None:
    assert a.dtype == np.uint8 and a.shape == (*shape, 3) and a.flags.c_contiguous


# --- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, suffix, kw, tol",
    [
        ("PNG", ".png", {}, 0),
        ("BMP", ".bmp", {}, 0),
        ("TIFF", ".tif", {}, 0),
        ("TIFF", ".tiff", {"compression": "tiff_deflate"}, 0),
        ("WEBP", ".webp", {"lossless": True}, 0),
        ("WEBP", ".webp", {"quality": 95}, 40),
        ("GIF", ".gif", {}, 0),
        ("JPEG", ".jpg", {"quality": 95}, 40),
    ],
)
def test_each_format_loads(tmp_path, fmt, suffix, kw, tol):
    im = quadrants()
    a = load_image(write(tmp_path / f"x{suffix}", encode(im, fmt, **kw)))
    check_rgb(a, (12, 16))
    diff = np.abs(a.astype(int) - np.asarray(im, dtype=int))
    # Lossy formats blur the colour edges; compare quadrant centres there.
    assert diff.max() <= tol if tol == 0 else diff[[2, 2, 9, 9], [3, 12, 3, 12]].max() <= tol


def test_mislabelled_suffix_still_loads(tmp_path):
    a = load_image(write(tmp_path / "really_a_png.jpg", encode(quadrants(), "PNG")))
    assert tuple(a[0, 0]) == RED


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), RED), Image.new("RGB", (8, 6), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    a = load_image(path)
    check_rgb(a, (6, 8))
    assert (a == RED).all()


@pytest.mark.parametrize("orientation, k", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, orientation, k):
    # Stored image 40 wide, 20 tall, red block in its top-left corner.
    stored = np.full((20, 40, 3), 128, np.uint8)
    stored[:8, :8] = RED
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    path = write(tmp_path / "o.jpg", encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    a = load_image(path)
    expected = np.rot90(stored, k)  # k=-1: 90° clockwise (tag 6), k=1: counter-clockwise (tag 8)
    check_rgb(a, expected.shape[:2])
    assert np.abs(a.astype(int) - expected).mean() < 3  # JPEG only blurs the block's edges
    h, w = a.shape[:2]
    corner = {6: (2, w - 3), 8: (h - 3, 2), 3: (h - 3, w - 3)}[orientation]  # where red must end up
    assert np.abs(a[corner].astype(int) - RED).max() < 40
    assert np.abs(a[2, 2].astype(int) - 128).max() < 40  # and the top-left is no longer red


# --- modes ---------------------------------------------------------------------------------


def test_mode_1(tmp_path):
    im = Image.fromarray(np.array([[0, 1], [1, 0]], bool))
    assert im.mode == "1"
    a = load_image(write(tmp_path / "b.png", encode(im, "PNG")))
    assert a[..., 0].tolist() == [[0, 255], [255, 0]] and (a[..., 0] == a[..., 2]).all()


def test_mode_L(tmp_path):
    im = Image.fromarray(np.array([[0, 17, 255]], np.uint8))
    a = load_image(write(tmp_path / "l.png", encode(im, "PNG")))
    assert a.tolist() == [[[0] * 3, [17] * 3, [255] * 3]]


def test_mode_LA_over_white(tmp_path):
    im = Image.fromarray(np.array([[[50, 255], [50, 0]]], np.uint8), "LA")
    a = load_image(write(tmp_path / "la.png", encode(im, "PNG")))
    assert a.tolist() == [[[50] * 3, [255] * 3]]


def test_mode_P(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([*RED, *BLUE])
    im.putpixel((1, 0), 1)
    a = load_image(write(tmp_path / "p.png", encode(im, "PNG")))
    assert a.tolist() == [[list(RED), list(BLUE)]]


def test_mode_P_with_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([*RED, *BLUE])
    im.putpixel((1, 0), 1)
    for fmt, name in (("PNG", "t.png"), ("GIF", "t.gif")):
        a = load_image(write(tmp_path / name, encode(im, fmt, transparency=0)))
        assert a.tolist() == [[[255] * 3, list(BLUE)]], fmt


def test_rgba_composited_over_white(tmp_path):
    px = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128], [200, 100, 0, 0]]], np.uint8)
    a = load_image(write(tmp_path / "rgba.png", encode(Image.fromarray(px, "RGBA"), "PNG")))
    assert a.tolist() == [[[10, 20, 30], [255] * 3, [127] * 3, [255] * 3]]


def test_cmyk(tmp_path):
    px = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], np.uint8)
    im = Image.fromarray(px, "CMYK")
    a = load_image(write(tmp_path / "c.tif", encode(im, "TIFF")))
    assert a.tolist() == [[[255] * 3, [0, 255, 255], [0] * 3]]
    j = load_image(write(tmp_path / "c.jpg", encode(im, "JPEG", quality=95)))
    check_rgb(j, (1, 3))


I16 = np.array([[0, 257, 385, 386, 32896, 65535]], np.uint16)
I16_EXPECTED = [0, 1, 1, 2, 128, 255]  # round(v / 257)


@pytest.mark.parametrize("mode, fmt", [("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF")])
def test_16bit_grey_divides_by_257(tmp_path, mode, fmt):
    dtype = ">u2" if mode == "I;16B" else "<u2"  # (convert("I;16B") would clamp to 0..255)
    im = Image.frombytes(mode, (6, 1), I16.astype(dtype).tobytes())
    assert im.mode == mode
    path = write(tmp_path / f"g16.{fmt.lower()}", encode(im, fmt))
    with Image.open(path) as check:
        assert check.mode.startswith("I;16")
    a = load_image(path)
    check_rgb(a, (1, 6))
    assert a[0, :, 0].tolist() == I16_EXPECTED and (a[..., 0] == a[..., 1]).all()


def test_32bit_int_grey(tmp_path):
    # In 0..65535: treated as 16-bit data; otherwise the range is stretched to 0..255.
    in16 = Image.fromarray(I16.astype(np.int32), "I")
    assert load_image_bytes(encode(in16, "TIFF"))[0, :, 0].tolist() == I16_EXPECTED
    wide = Image.fromarray(np.array([[-1000, 0, 1000]], np.int32), "I")
    assert load_image_bytes(encode(wide, "TIFF"))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0.0, 0.5, 1.0], [0, 128, 255]),  # 0..1 → × 255
        ([0.0, 17.0, 200.0], [0, 17, 200]),  # 0..255 kept
        ([-2.0, 0.0, 2.0], [0, 128, 255]),  # anything else stretched
        ([float("nan"), 0.5, 1.0], [0, 128, 255]),  # NaN → 0
        ([3.0, 3.0, 3.0], [3, 3, 3]),  # flat
    ],
)
def test_float_grey(values, expected):
    im = Image.fromarray(np.array([values], np.float32), "F")
    a = load_image_bytes(encode(im, "TIFF"))
    check_rgb(a, (1, 3))
    assert a[0, :, 0].tolist() == expected


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])
def test_other_colour_spaces_become_rgb(mode):
    im = Image.new("RGB", (4, 3), RED).convert(mode)
    try:
        data = encode(im, "TIFF")
    except OSError:
        pytest.skip(f"this Pillow cannot write {mode} TIFF")
    check_rgb(load_image_bytes(data), (3, 4))


def test_16bit_per_channel_rgb_png():
    px = np.array([[[65535, 0, 32896], [257, 51400, 65535]]], ">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in px)  # filter byte 0 per scanline
    data = hand_png(2, 1, 16, 2, raw)
    a = load_image_bytes(data)
    check_rgb(a, (1, 2))
    assert np.abs(a.astype(int) - np.rint(px / 257)).max() <= 1


def test_16bit_rgba_png_over_white():
    px = np.array([[[65535, 0, 0, 65535], [0, 0, 65535, 0]]], ">u2")
    data = hand_png(2, 1, 16, 6, b"\x00" + px.tobytes())
    assert load_image_bytes(data).tolist() == [[[255, 0, 0], [255, 255, 255]]]


# --- bombs and broken files ----------------------------------------------------------------


def test_max_pixels_rejects_before_decoding(tmp_path):
    path = write(tmp_path / "20.png", encode(quadrants(20, 20), "PNG"))
    with pytest.raises(ImageLoadError, match=r"20x20 = 400 pixels exceeds the limit of 100"):
        load_image(path, max_pixels=100)
    check_rgb(load_image(path, max_pixels=400), (20, 20))


def test_declared_giant_png_is_a_bomb(tmp_path):
    # 100 000 × 100 000 declared in a ~60-byte file: Pillow's own bomb error, wrapped.
    path = write(tmp_path / "bomb.png", hand_png(100_000, 100_000, 8, 0, b"\x00"))
    with pytest.raises(ImageLoadError, match="too large") as info:
        load_image(path)
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)
    assert DEFAULT_MAX_PIXELS == 2 * 89_478_485


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_warning_zone_still_rejected_by_max_pixels():
    # 10 000² pixels is past Pillow's warning threshold but under its error one.
    with pytest.raises(ImageLoadError, match="10000x10000"):
        load_image_bytes(hand_png(10_000, 10_000, 8, 0, b"\x00"), max_pixels=50_000_000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "BMP", "WEBP"])
def test_truncated_files(tmp_path, fmt):
    data = encode(quadrants(64, 48), fmt)
    path = write(tmp_path / f"half.{fmt.lower()}", data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.path == path and str(path) in str(info.value)
    if fmt in ("JPEG", "PNG"):
        assert "truncated" in info.value.reason


def test_zero_byte_file(tmp_path):
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(write(tmp_path / "empty.png", b""))
    with pytest.raises(ImageLoadError, match="empty"):
        load_image_bytes(b"")


def test_text_file_named_jpg(tmp_path):
    path = write(tmp_path / "notes.jpg", b"just some text, not a picture\n" * 10)
    with pytest.raises(ImageLoadError, match="not a supported image") as info:
        load_image(path)
    assert str(info.value).startswith(f"cannot load image '{path}': ")


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(write(tmp_path / "f.png", b"x") / "child.png")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError):
        load_image("bad\0name.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX and a non-root user")
def test_permission_denied(tmp_path):
    path = write(tmp_path / "locked.png", encode(quadrants(), "PNG"))
    path.chmod(0)
    try:
        with pytest.raises(ImageLoadError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_permission_error_from_open_is_wrapped(tmp_path, monkeypatch):
    # Root ignores file modes, so also simulate the failure at open().
    import insight_desktop.core.images as images

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = write(tmp_path / "locked.png", encode(quadrants(), "PNG"))
    monkeypatch.setattr(images, "open", deny, raising=False)
    with pytest.raises(ImageLoadError, match="permission denied") as info:
        load_image(path)
    assert isinstance(info.value.__cause__, PermissionError)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path / "pipe.png")


def test_error_message_and_pickling():
    err = ImageLoadError("/x/y.png", "file is truncated")
    assert str(err) == "cannot load image '/x/y.png': file is truncated"
    assert err.path == Path("/x/y.png") and err.reason == "file is truncated"
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.path == err.path


def test_bytes_loader_matches_file_loader(tmp_path):
    data = encode(quadrants(), "PNG")
    assert np.array_equal(load_image_bytes(data), load_image(write(tmp_path / "q.png", data)))
    with pytest.raises(ImageLoadError, match="cannot load image 'dropped.png'"):
        load_image_bytes(b"garbage", name="dropped.png")
    with pytest.raises(ValueError):
        load_image_bytes(data, max_pixels=0)


# --- fuzzing: whatever the bytes, an RGB array or ImageLoadError ----------------------------

SEEDS = [
    encode(quadrants(), "PNG"),
    encode(quadrants(), "JPEG", quality=80),
    encode(quadrants(), "GIF"),
    encode(quadrants(), "BMP"),
    encode(quadrants(), "TIFF"),
    encode(quadrants(), "WEBP", lossless=True),
]
FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def assert_rgb_or_load_error(data: bytes, path: Path | None = None) -> None:
    try:
        # Small max_pixels: a flipped bit in a header must not make the test allocate gigabytes.
        if path is None:
            a = load_image_bytes(data, max_pixels=1_000_000)
        else:
            a = load_image(write(path, data), max_pixels=1_000_000)
    except ImageLoadError:
        return
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.flags.c_contiguous


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(tmp_path_factory, data):
    assert_rgb_or_load_error(data, tmp_path_factory.getbasetemp() / "fuzz.png")


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=4),
    st.integers(0, 10**6),
)
def test_fuzz_corrupted_images(seed, flips, cut):
    data = bytearray(seed)
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    assert_rgb_or_load_error(bytes(data[: max(1, cut % (len(data) + 1))]))
    assert_rgb_or_load_error(bytes(data))


# --- finding images ------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "photos"
    for rel in [
        "b.png", "a10.jpg", "a2.JPG", "notes.txt", ".hidden.png", ".cache/x.png",
        "sub/c.TIFF", "sub/readme.md", "sub/deeper/d.webp", "sub/deeper/e.Jpeg", "Makefile",
    ]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    return root


def rels(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def test_find_images_recursive(tree):
    found = find_images(tree)
    assert rels(found, tree) == ["a2.JPG", "a10.jpg", "b.png", "sub/c.TIFF", "sub/deeper/d.webp", "sub/deeper/e.Jpeg"]
    assert all(p.parent == tree or tree in p.parents for p in found)


def test_find_images_flat_and_scan(tree):
    assert rels(find_images(tree, recursive=False), tree) == ["a2.JPG", "a10.jpg", "b.png"]
    scan = scan_folder(tree)
    assert isinstance(scan, FolderScan)
    assert rels(scan.skipped, tree) == ["Makefile", "notes.txt", "sub/readme.md"]
    with pytest.raises(AttributeError):
        scan.images = ()  # frozen


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loops_end(tree, tmp_path):
    try:
        (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)
    except OSError:
        pytest.skip("cannot create symlinks here")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "z.png").write_bytes(b"")
    (tree / "linked").symlink_to(outside, target_is_directory=True)
    (tree / "broken.png").symlink_to(tmp_path / "missing.png")
    assert rels(find_images(tree), tree) == [
        "a2.JPG", "a10.jpg", "b.png", "linked/z.png", "sub/c.TIFF", "sub/deeper/d.webp", "sub/deeper/e.Jpeg",
    ]  # fmt: skip


def test_find_images_bad_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        find_images(tmp_path / "missing")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        find_images(write(tmp_path / "file.png", b""))


def test_natural_sort_is_deterministic(tmp_path):
    for name in ["img10.png", "img2.png", "IMG1.png", "img1.png", "img_3.png", "Img2.png"]:
        (tmp_path / name).write_bytes(b"")
    order = [p.name for p in find_images(tmp_path)]
    assert order == ["IMG1.png", "img1.png", "Img2.png", "img2.png", "img10.png", "img_3.png"]


def test_suffixes_are_lowercase():
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"} <= IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)


# --- iterating -----------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path):
    good1 = write(tmp_path / "1.png", encode(Image.new("RGB", (4, 3), RED), "PNG"))
    bad = write(tmp_path / "2.png", b"not an image")
    good2 = write(tmp_path / "3.jpg", encode(Image.new("RGB", (5, 2), BLUE), "JPEG"))
    return tmp_path, [good1, bad, good2]


def test_iter_images_reports_and_continues(mixed):
    folder, (good1, bad, good2) = mixed
    errors = []
    out = list(iter_images([good1, bad, str(good2)], on_error=lambda p, e: errors.append((p, e))))
    assert [p for p, _ in out] == [good1, good2]
    assert out[0][1].shape == (3, 4, 3) and out[1][1].shape == (2, 5, 3)
    assert [p for p, _ in errors] == [bad] and isinstance(errors[0][1], ImageLoadError)
    assert [p for p, _ in iter_images(folder, on_error=lambda p, e: None)] == [good1, good2]
    assert [p for p, _ in iter_images(good2)] == [good2]


def test_iter_images_logs_without_callback(mixed, caplog):
    _, paths = mixed
    with caplog.at_level(logging.WARNING, logger="insight_desktop.core.images"):
        assert len(list(iter_images(paths))) == 2
    assert "skipped 1 unreadable image" in caplog.text and str(paths[1]) in caplog.text


def test_iter_images_is_lazy(mixed):
    _, paths = mixed

    def gen():
        yield paths[0]
        raise AssertionError("read too far")

    it = iter_images(gen())
    assert next(it)[0] == paths[0]
    it.close()


# --- sliding-window tiles ------------------------------------------------------------------


def test_tile_boxes_known_values():
    assert tile_boxes(448, 672, 448, 224) == [(0, 0, 448, 448), (0, 224, 448, 672)]
    assert tile_boxes(448, 448, 448, 224) == [(0, 0, 448, 448)]
    assert tile_boxes(100, 300, 448, 224) == [(0, 0, 100, 300)]
    boxes = tile_boxes(1000, 700, 448, 224)  # tops 0, 224, 448, 552; lefts 0, 224, 252
    assert len(boxes) == 12 and boxes[-1] == (552, 252, 1000, 700)
    assert tile_boxes(500, 448, 448, 448) == [(0, 0, 448, 448), (52, 0, 500, 448)]


@pytest.mark.parametrize("args", [(0, 10, 4, 2), (10, 10, 0, 1), (10, 10, 4, 0), (10, 10, 4, 5)])
def test_tile_boxes_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        tile_boxes(*args)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(1, 120), st.integers(1, 120), st.integers(1, 64), st.data())
def test_tile_boxes_cover_every_pixel(height, width, window, data):
    stride = data.draw(st.integers(1, window))
    boxes = tile_boxes(height, width, window, stride)
    covered = np.zeros((height, width), bool)
    for top, left, bottom, right in boxes:
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        assert bottom - top == min(window, height) and right - left == min(window, width)
        covered[top:bottom, left:right] = True
    assert covered.all()
    assert len(set(boxes)) == len(boxes)
    rows = 1 if height <= window else -(-(height - window) // stride) + 1
    cols = 1 if width <= window else -(-(width - window) // stride) + 1
    assert len(boxes) == rows * cols
