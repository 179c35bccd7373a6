"""Bounded read access to the members of a bundle folder or zip file.

Every read names a size limit, checked before a byte is inflated or copied (the zip's central
directory, or the file's ``lstat``) and enforced again while reading, since a directory can lie.
Zip members must use a compression this Python reads, without encryption; the uncompressed
total of the zip is checked at opening. Folder members must be regular files inside the
folder: no symbolic links (to ``/dev/zero``, to a private file), no ``..``, no FIFOs.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path

from . import bundle_schema as schema
from .bundle_schema import BundleIntegrityError, BundleLimitError, BundleMissingPartError, safe_member

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
            zipfile.ZIP_LZMA: "lzma"}
_METHOD_NAMES = {9: "Deflate64", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES"}
#: what a damaged zip member can raise while it is inflated (CRC, truncated stream, bad header)
_INFLATE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error,
                   NotImplementedError, RuntimeError, IndexError, OverflowError)


class Parts:
    """Uniform, bounded read access to the members of a bundle folder or zip file."""

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        self._infos: dict[str, zipfile.ZipInfo] = {}
        if path.is_file():
            self._open_zip(path)
        elif not path.is_dir():
            raise BundleMissingPartError(f"concept model '{path}' does not exist")

    def _open_zip(self, path: Path) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except _INFLATE_ERRORS as exc:
            raise BundleIntegrityError(f"'{path}' is not a readable bundle zip file: {exc}") from exc
        total = sum(i.file_size for i in infos)
        if total > schema.MAX_TOTAL_BYTES:
            self.close()
            raise BundleLimitError(f"'{path}' would unpack to {total:,} bytes, more than the "
                                   f"{schema.MAX_TOTAL_BYTES:,} a concept model may have: refused without unpacking")
        names = [i.filename for i in infos]
        # Accept zips whose members sit in one top-level folder (as made by most zip tools).
        prefixes = {n.split("/", 1)[0] + "/" for n in names if "/" in n}
        if MANIFEST not in names and len(prefixes) == 1:
            prefix = prefixes.pop()
            if prefix + MANIFEST in names:
                self._prefix = prefix
        self._infos = {i.filename[len(self._prefix):]: i for i in infos
                       if i.filename.startswith(self._prefix) and not i.is_dir()}

    @property
    def is_zip(self) -> bool:
        return self._zip is not None

    @property
    def names(self) -> list[str]:
        """Every member of a zip bundle (empty for folders)."""
        return sorted(self._infos)

    def exists(self, name: str) -> bool:
        """Whether something is stored under ``name`` (for a folder: even a link, refused on reading)."""
        if self._zip is not None:
            return name in self._infos
        try:
            self._folder_member(name)
        except BundleMissingPartError:
            return False
        return True

    def size(self, name: str) -> int:
        """The uncompressed size of member ``name`` as its directory says, before reading it."""
        if self._zip is not None:
            if name not in self._infos:
                raise self._missing(name)
            return self._infos[name].file_size
        return self._folder_member(name)[1].st_size

    def read(self, name: str, limit: int) -> bytes:
        """Member ``name``'s bytes; :class:`~.bundle_schema.BundleLimitError` when over ``limit`` bytes."""
        if self._zip is not None:
            return self._read_zip(name, limit)
        path, st = self._folder_member(name)
        self._check_size(name, st.st_size, limit)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise BundleIntegrityError(f"concept model '{self.path}': '{name}' is not a regular file")
                return self._bounded(fh, name, limit)
        except OSError as exc:
            raise BundleIntegrityError(f"concept model '{self.path}': cannot read '{name}': {exc}") from exc

    def members(self, folder: str) -> list[str]:
        """Names of the parts inside ``folder`` (e.g. ``thumbnails``), as ``folder/file``."""
        if self._zip is not None:
            return sorted(n for n in self._infos if n.startswith(folder + "/"))
        where = self.path / folder
        try:
            if where.is_symlink() or not where.is_dir():
                return []
            return sorted(f"{folder}/{p.name}" for p in where.iterdir() if p.is_file() and not p.is_symlink())
        except OSError:
            return []

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    # -- internals ---------------------------------------------------------------------------
    def _missing(self, name: str) -> BundleMissingPartError:
        return BundleMissingPartError(f"concept model '{self.path}' lacks its part '{name}'")

    def _check_size(self, name: str, size: int, limit: int) -> None:
        if size > limit:
            raise BundleLimitError(f"concept model '{self.path}': '{name}' is {size:,} bytes, more than the "
                                   f"{limit:,} this part may have: refused without reading it")

    def _bounded(self, fh, name: str, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = fh.read(min(_CHUNK, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise BundleLimitError(f"concept model '{self.path}': '{name}' holds more than the {limit:,} bytes "
                                       "this part may have (its recorded size was wrong)")

    def _read_zip(self, name: str, limit: int) -> bytes:
        info = self._infos.get(name)
        if info is None:
            raise self._missing(name)
        self._check_size(name, info.file_size, limit)
        if info.flag_bits & 0x41:  # bit 0: encrypted, bit 6: strong encryption
            raise BundleIntegrityError(f"concept model '{self.path}': '{name}' is encrypted; Insight Desktop reads "
                                       "only unencrypted bundles")
        if info.compress_type not in _METHODS or info.flag_bits & 0x20:
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise BundleIntegrityError(f"concept model '{self.path}': '{name}' is compressed with {method}, which "
                                       "Insight Desktop cannot read: zip the bundle again with ordinary Deflate")
        assert self._zip is not None
        try:
            with self._zip.open(info) as fh:
                return self._bounded(fh, name, limit)
        except BundleLimitError:
            raise
        except _INFLATE_ERRORS as exc:
            raise BundleIntegrityError(f"concept model '{self.path}': cannot read '{name}': {exc}") from exc

    def _folder_member(self, name: str) -> tuple[Path, os.stat_result]:
        """The path and ``lstat`` of a folder member: a regular file, reached without links."""
        safe_member(name, f"concept model '{self.path}'")
        path = self.path
        pieces = name.split("/")
        for i, piece in enumerate(pieces):
            path = path / piece
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                raise self._missing(name) from None
            except OSError as exc:
                raise BundleIntegrityError(f"concept model '{self.path}': cannot read '{name}': {exc}") from exc
            if stat.S_ISLNK(st.st_mode):
                raise BundleIntegrityError(f"concept model '{self.path}': '{'/'.join(pieces[:i + 1])}' is a symbolic "
                                           "link; a bundle's parts must be files inside its folder")
        if stat.S_ISDIR(st.st_mode):
            raise self._missing(name)
        if not stat.S_ISREG(st.st_mode):
            raise BundleIntegrityError(f"concept model '{self.path}': '{name}' is not a regular file")
        return path, st
