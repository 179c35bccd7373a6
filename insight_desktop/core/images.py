"""Loading images safely and finding them on disk (numpy + Pillow only; no Qt, no torch).

Every loader returns an H×W×3 ``uint8`` C-contiguous RGB array and raises only
:class:`ImageLoadError` for a file it cannot use, so callers need a single ``except``.

Conversion rules (documented because they change what the model sees):

* EXIF/XMP orientation is applied, so the array is the image as a viewer shows it.
* Alpha (RGBA, LA, PA, P or L/RGB with a ``transparency`` key) is composited over white.
* 16-bit greyscale (``I;16*``) maps 0..65535 to 0..255 by ``round(v / 257)`` (exact at both ends).
  32-bit ``I`` uses the same rule when every value lies in 0..65535 (how Pillow stores 16-bit
  data), else its min..max range is stretched to 0..255.  ``F`` (float): values in 0..1 are
  scaled by 255, values in 0..255 are kept, anything else is min..max stretched; NaN/inf → 0.
  16-bit-per-channel RGB(A) PNGs are reduced to 8 bits by Pillow itself (high byte).
* GIF, WebP, TIFF and MPO files with several frames give their first frame.

Truncated files: data that ends before the image does raises ImageLoadError ("file is
truncated"), including files whose header claims more rows than the data holds, which Pillow
would otherwise decode black- or grey-padded without a word: a PNG whose compressed data ends
early (its inflated size is counted against the header), a TIFF whose strips or tiles do not
cover the image, a JPEG whose scans are too short for its header's size (a sound lower bound:
every block costs at least 2 bits in a sequential scan and 1 in a progressive one; a JPEG
missing only a few blocks still decodes padded, as libjpeg's warnings do not reach Python);
the checks are in :mod:`.image_truncation`. Pillow itself reports GIF and BMP data that runs
out before the header's rows (a GIF frame smaller than its logical screen is not truncation:
the rest is background).
With ``allow_truncated=True`` (or ``INSIGHT_ALLOW_TRUNCATED_IMAGES=1`` in the environment, the
setting the app reads) such files load with the missing part filled; Pillow's process-global
``LOAD_TRUNCATED_IMAGES`` is switched on for that load only, while no other load of this
module runs (a readers–writer lock).

Decompression bombs: the size in the header is checked against ``max_pixels`` right after
``Image.open`` (which reads only the header), before any pixel is decoded; anything larger
raises ImageLoadError.  ``PIL.Image.MAX_IMAGE_PIXELS`` and the warnings filters are never
changed per call (both are process-global; swapping them is not thread-safe), so Pillow's own
check still runs first: its DecompressionBombError (over 2 × its global) is wrapped, and its
DecompressionBombWarning is not relied on, since our check decides either way.  A ``max_pixels``
above 2 × ``Image.MAX_IMAGE_PIXELS`` only helps if the application raises Pillow's global too.
Memory: the conversion to RGB runs in bands of rows (:mod:`.image_rgb`), so a load holds Pillow's decoded pixels
(1 byte a pixel for L and P, 4 for RGB, RGBA, CMYK, I and F) plus the output (3), and no
whole-image temporaries (a 13 000² GIF screen from a 40-byte file peaks at ~0.7 GB, not 4 GB).
What a load will take is also estimated from the header, before decoding, and over
``MAX_LOAD_BYTES`` (1 GiB) it raises ImageLoadError: under ``max_pixels`` that still refuses
RGB(A) images over ~150 MP and WebP over ~70 MP (libwebp holds two more RGBA copies).
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from . import image_rgb
from .image_rgb import to_rgb
from .image_truncation import missing_rows

log = logging.getLogger(__name__)

#: Pillow's default MAX_IMAGE_PIXELS × 2 (= where Pillow itself raises): ~179 MP, e.g. 16k × 11k.
DEFAULT_MAX_PIXELS = 178_956_970
#: the memory one load may take, estimated from the header before decoding (see _load_bytes): 1 GiB,
#: the budget Pillow's own limit assumes (its MAX_IMAGE_PIXELS is 1 GiB / 4 bytes / 3 channels)
MAX_LOAD_BYTES = 1 << 30

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
# Only these decoders may run, whatever the suffix says: fewer attack surfaces (no EPS →
# Ghostscript, no exotic plugins), and content decides the format, so a mislabelled file still loads.
# (Pillow's JPEG opener also returns MPO images, the multi-picture JPEGs of many cameras.)
_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")
_DIGITS = re.compile(r"(\d+)")
#: the environment setting that makes truncated files load (the app has no other switch for it)
ALLOW_TRUNCATED_ENV = "INSIGHT_ALLOW_TRUNCATED_IMAGES"
TRUNCATED = "file is truncated"
TRUNCATED_HINT = (f"to load such files anyway (the missing part filled), set {ALLOW_TRUNCATED_ENV}=1 "
                  "or pass --allow-truncated to insight analyze")


class ImageLoadError(Exception):
    """An image file could not be read or decoded; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(path, reason)  # args stay (path, reason) so the error pickles
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot load image '{self.path}': {self.reason}"


def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               allow_truncated: bool | None = None) -> np.ndarray:
    """Decode the image file at ``path`` into an H×W×3 uint8 RGB array, or raise ImageLoadError.

    ``allow_truncated``: load a file whose data ends early (the rest filled) instead of raising;
    None reads the ``INSIGHT_ALLOW_TRUNCATED_IMAGES`` environment setting."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ImageLoadError(path, "is a directory")
        if not stat.S_ISREG(mode):  # opening a FIFO or a device could block forever
            raise ImageLoadError(path, "not a regular file")
        with open(path, "rb") as fh:
            return _decode(fh, path, max_pixels, allow_truncated)
    except ImageLoadError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
        raise ImageLoadError(path, _os_reason(exc)) from exc


def load_image_bytes(data: bytes, name: str = "<memory>", *, max_pixels: int = DEFAULT_MAX_PIXELS,
                     allow_truncated: bool | None = None) -> np.ndarray:
    """Like :func:`load_image`, from encoded bytes (drag and drop, clipboard); ``name`` labels errors."""
    return _decode(io.BytesIO(data), Path(name), max_pixels, allow_truncated)


def truncated_allowed() -> bool:
    """The environment setting: ``INSIGHT_ALLOW_TRUNCATED_IMAGES`` set to 1, true or yes."""
    return os.environ.get(ALLOW_TRUNCATED_ENV, "").strip().lower() in ("1", "true", "yes")


class _SharedExclusive:
    """Many shared holders or one exclusive one: strict loads share, a load that switches
    Pillow's global LOAD_TRUNCATED_IMAGES on holds it alone. Shared holders that wait go first:
    without that, loads that allow truncation, one after another, could starve a strict load
    for ever (each release handed the lock to the next exclusive waiter)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._shared_waiting = 0
        self._exclusive = False

    @contextmanager
    def shared(self):
        with self._cond:
            self._shared_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._exclusive)
            finally:
                self._shared_waiting -= 1
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and self._shared == 0 and self._shared_waiting == 0)
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


_PILLOW_GLOBALS = _SharedExclusive()


def _decode(fh: BinaryIO, path: Path, max_pixels: int, allow_truncated: bool | None = None) -> np.ndarray:
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if allow_truncated is None:
        allow_truncated = truncated_allowed()
    if not allow_truncated:
        with _PILLOW_GLOBALS.shared():
            return _decode_file(fh, path, max_pixels, check=True)
    with _PILLOW_GLOBALS.exclusive():
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return _decode_file(fh, path, max_pixels, check=False)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before


def _decode_file(fh: BinaryIO, path: Path, max_pixels: int, *, check: bool) -> np.ndarray:
    try:
        if fh.seek(0, os.SEEK_END) == 0:
            raise ImageLoadError(path, "file is empty")
        fh.seek(0)
        with Image.open(fh, formats=_FORMATS) as opened:
            width, height = opened.size
            if width * height > max_pixels:  # checked on the header, before decoding anything
                limit = f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}"
                raise ImageLoadError(path, f"image is too large: {limit}")
            if width == 0 or height == 0:
                raise ImageLoadError(path, f"image has no pixels ({width}x{height})")
            need = _load_bytes(opened)
            if need > MAX_LOAD_BYTES:  # e.g. a WebP canvas or an RGBA PNG just under max_pixels
                raise ImageLoadError(path, f"image is too large: {width}x{height} {opened.mode} {opened.format} "
                                           f"needs about {need / 2**20:,.0f} MiB to load, over the limit of "
                                           f"{MAX_LOAD_BYTES / 2**20:,.0f} MiB")
            tiles, stored = list(opened.tile), _stored_size(opened)
            opened.load()  # full decode here, so truncated or corrupt data fails inside the try
            if check:
                missing = missing_rows(opened.format, stored, tiles, fh)
                if missing:
                    raise ImageLoadError(path, f"{TRUNCATED}: {missing}; {TRUNCATED_HINT}")
            return to_rgb(_oriented(opened, path))
    except ImageLoadError:
        raise
    except Exception as exc:  # any decoder failure, whatever Pillow or a plugin raises
        raise ImageLoadError(path, _reason(exc)) from exc


def _load_bytes(im: Image.Image) -> int:
    """The memory a load will take, from the header: Pillow's decoded pixels (1 byte a pixel for
    1, L and P, 2 for 16-bit grey, 4 for everything else, RGB included), a second copy when EXIF
    orientation turns it, libwebp's RGBA canvas, its copy as bytes and its buffers (WebP), the RGB
    output and the conversion's band temporaries (measured peaks are within a few % of this)."""
    decoded = 1 if im.mode in ("1", "L", "P") else 2 if im.mode.startswith("I;16") else 4
    per_pixel = decoded + 3 + (9 if im.format == "WEBP" else 0)
    # Pillow turns a TIFF while decoding it, and a PNG's getexif() decodes the image when no eXIf
    # chunk came before the pixels: no EXIF is read here for those (a late eXIf is not counted).
    if im.format != "TIFF" and (im.format != "PNG" or "exif" in im.info):
        try:
            if im.getexif().get(ExifTags.Base.Orientation, 1) in (2, 3, 4, 5, 6, 7, 8):
                per_pixel += decoded  # exif_transpose's copy
        except Exception:  # unreadable EXIF: _oriented will ignore it too
            pass
    return im.size[0] * im.size[1] * per_pixel + 16 * image_rgb.BAND_PIXELS


def _stored_size(im: Image.Image) -> tuple[int, int]:
    """The size the tiles are laid out in. Pillow gives a TIFF with EXIF orientation 5–8 its turned
    size (and turns it while loading), but its strips still cover the stored width × height."""
    tags = getattr(im, "tag_v2", None)
    if im.format == "TIFF" and tags is not None:
        width, height = tags.get(256), tags.get(257)  # ImageWidth, ImageLength
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return im.size


def _oriented(im: Image.Image, path: Path) -> Image.Image:
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(im)
    except Exception as exc:  # broken metadata must not cost the user a readable image
        log.debug("ignoring unreadable EXIF orientation in %s: %s", path, exc)
    return im


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"image is too large (possible decompression bomb): {exc}"
    if isinstance(exc, UnidentifiedImageError):
        return "not a supported image file (JPEG, PNG, TIFF, WebP, BMP or GIF expected)"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode the image"
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():  # Pillow's many wordings ("Truncated File Read", ...) → one
        detail = "" if "image file is truncated" in text.lower() else f" ({text})"
        return f"{TRUNCATED}{detail}; {TRUNCATED_HINT}"
    return f"corrupt or unsupported image data ({type(exc).__name__}: {text})"


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return "file not found"
    return "permission denied" if isinstance(exc, PermissionError) else (str(exc) or type(exc).__name__)


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds: image files, and the non-image files that were passed over."""

    images: tuple[Path, ...]
    skipped: tuple[Path, ...]


def scan_folder(folder: str | os.PathLike, *, recursive: bool = True) -> FolderScan:
    """Image files under ``folder`` by suffix (any case), in natural order of their relative paths.

    Hidden names ('.' first) are ignored, files and folders alike, and not listed in ``skipped``.
    Symlinked folders are followed once each, so loops end; unreadable sub-folders are logged and
    skipped.  A missing ``folder`` raises FileNotFoundError, a file NotADirectoryError (OSErrors).
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: '{root}'")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: '{root}'")
    images: list[Path] = []
    skipped: list[Path] = []  # non-image files
    seen: set[tuple[int, int]] = set()  # (device, inode) of each folder visited: no loops, no repeats
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            st = current.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as exc:
            if current == root:
                raise
            log.warning("skipping unreadable folder %s: %s", current, exc)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = current / entry.name
            try:
                if entry.is_dir():
                    if recursive:
                        stack.append(path)
                elif entry.is_file():
                    (images if path.suffix.lower() in IMAGE_SUFFIXES else skipped).append(path)
            except OSError:  # vanished or unreadable entry: nothing to list
                continue

    def key(p: Path) -> tuple:
        rel = p.relative_to(root)
        # "img2" before "img10"; re.split puts the digit runs at odd indices, so types line up.
        split = (_DIGITS.split(part.casefold()) for part in rel.parts)
        parts = tuple(tuple(int(t) if i % 2 else t for i, t in enumerate(chunks)) for chunks in split)
        return parts, rel.as_posix()  # the exact string breaks ties, so the order is total

    return FolderScan(tuple(sorted(images, key=key)), tuple(sorted(skipped, key=key)))


def find_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """The image files of :func:`scan_folder`, as a list."""
    return list(scan_folder(folder, recursive=recursive).images)


def iter_images(
    paths_or_folder: str | os.PathLike | Iterable[str | os.PathLike], *,
    on_error: Callable[[Path, ImageLoadError], None] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield ``(path, image)`` for a folder (searched recursively) or for the given paths, in order.

    A file that cannot be loaded is passed to ``on_error`` and skipped; without ``on_error`` the
    failures are collected and logged as one warning when iteration ends.  A bad file never
    stops the iteration (an exception raised by ``on_error`` itself does).
    """
    paths = paths_or_folder
    if isinstance(paths, (str, os.PathLike)):  # one folder (searched recursively) or one file
        paths = find_images(paths) if Path(paths).is_dir() else [paths]
    failures: list[ImageLoadError] = []
    try:
        for item in paths:
            path = Path(item)
            try:
                image = load_image(path, max_pixels=max_pixels)
            except ImageLoadError as err:
                if on_error is None:
                    failures.append(err)
                else:
                    on_error(path, err)
                continue
            yield path, image
    finally:  # also runs when the consumer stops early
        if failures:
            log.warning("skipped %d unreadable image(s):\n%s", len(failures), "\n".join(map(str, failures)))


def tile_boxes(height: int, width: int, window: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Boxes ``(top, left, bottom, right)`` of ``window``-sized tiles every ``stride`` pixels, row-major.

    The last tile of each row/column is aligned to the border so every pixel is covered; a side
    shorter than ``window`` gets one tile clipped to the image.  ``stride`` may not exceed
    ``window`` (that would leave gaps).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got window={window}, stride={stride}")

    def starts(size: int) -> list[int]:  # every stride, plus one flush with the far border
        last = max(size - window, 0)
        return sorted({*range(0, last + 1, stride), last})

    return [(top, left, min(top + window, height), min(left + window, width))
            for top in starts(height) for left in starts(width)]
