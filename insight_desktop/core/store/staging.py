"""Copying files into the model store: regular files only, within size limits, in a locked staging folder.

An import is copied into ``root/.incoming/tmp…`` first and renamed into place when complete, so
nothing half-copied ever has a final name. Three rules keep a crafted source from doing harm:

* **Regular files only.** A folder's members are walked without following links; a symbolic
  link (to ``/dev/zero``, to a private file elsewhere), a device, a pipe or a socket is refused
  with a :class:`StoreError` naming the member — before anything is read. Each file is then
  opened with ``O_NOFOLLOW`` and checked again with ``fstat``, so a member swapped for a link in
  between is refused too. (The top-level path the user names may itself be a link — the Hugging
  Face cache is made of them — it is resolved first.)
* **Size limits**, :data:`MAX_IMPORT_FILE_BYTES` per file and :data:`MAX_IMPORT_TOTAL_BYTES` in
  all, checked on the sizes before copying and enforced again while copying, chunk by chunk.
* **No leftovers.** Next to each staging folder ``tmp…`` is a lock file ``tmp….lock``, locked by
  the importing process for the whole import (``flock``/``msvcrt.locking``: the operating system
  drops it when the process dies). :func:`clean_stale_staging`, run when a
  :class:`~.model_store.ModelStore` is opened, deletes every staging folder whose lock is free —
  what a killed import left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from .index import StoreError

#: the largest single file an import copies (the reference ViT-B/16 checkpoint is 0.6 GB; ViT-H 3.9 GB)
MAX_IMPORT_FILE_BYTES = 8 * 2**30
#: the most an import copies in all (a folder bundle: every member together)
MAX_IMPORT_TOTAL_BYTES = 16 * 2**30
COPY_CHUNK = 1 << 20
INCOMING = ".incoming"
LOCK_SUFFIX = ".lock"
_STAGING_PREFIX = "tmp"
_STARTED = time.time()  # staging folders without a lock older than this belong to an earlier run

CopyProgress = Callable[[int, int], None]  # (bytes copied, bytes in all)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


# -------------------------------------------------------------------------------- what to copy
def source_files(src: Path) -> list[tuple[Path, int]]:
    """The regular files of ``src`` (a file, or a folder walked without following links) and their sizes.

    StoreError for a link, device, pipe or socket among the members, and for sizes over the limits.
    """
    if src.is_file():
        size = src.stat().st_size
        _check_size(src.name, size, size)
        return [(Path(), size)]
    if not src.is_dir():
        raise StoreError(f"{src} is neither a regular file nor a folder: only those can be imported")
    found: list[tuple[Path, int]] = []
    total = 0
    stack = [Path()]
    while stack:
        rel = stack.pop()
        with os.scandir(src / rel) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                member = rel / entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise StoreError(f"{src.name}: member {member.as_posix()} is a symbolic link (to "
                                     f"{os.readlink(entry.path)}); the store copies regular files only — put the "
                                     "file itself into the folder")
                if stat.S_ISDIR(st.st_mode):
                    stack.append(member)
                elif stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    _check_size(f"{src.name}: member {member.as_posix()}", st.st_size, total)
                    found.append((member, st.st_size))
                else:
                    raise StoreError(f"{src.name}: member {member.as_posix()} is not a regular file (a device, "
                                     "pipe or socket); the store copies regular files only")
    return found


def _check_size(what: str, size: int, total: int) -> None:
    if size > MAX_IMPORT_FILE_BYTES:
        raise StoreError(f"{what} is {_gib(size)}, more than the {_gib(MAX_IMPORT_FILE_BYTES)} a model file may "
                         "have: refusing to import it")
    if total > MAX_IMPORT_TOTAL_BYTES:
        raise StoreError(f"{what}: the import would be more than {_gib(MAX_IMPORT_TOTAL_BYTES)} in all; refusing "
                         "to import it")


def file_sha256_capped(path: Path) -> str:
    """sha256 of a regular file read (without following links) at most up to the per-file limit."""
    h = hashlib.sha256()
    with _open_regular(path, path.name) as fh:
        _read_capped(fh, path.name, MAX_IMPORT_FILE_BYTES, h.update)
    return h.hexdigest()


# ------------------------------------------------------------------------------------- copying
def copy_in(src: Path, staging: Path, *, name: str | None = None,
            progress: CopyProgress | None = None) -> tuple[Path, str | None]:
    """Copy a file or folder into ``staging`` as ``name`` (default: its own); return it and a file's sha256.

    Regular files only, fsynced. The caller renames the staged copy into place, so nothing
    half-copied ever has a final name.
    """
    files = source_files(src)
    target = staging / (name or src.name)
    total, done = sum(size for _, size in files), 0
    left = MAX_IMPORT_TOTAL_BYTES

    def copied(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if src.is_file():
        sha = _copy_file(src, target, src.name, left, copied)
        return target, sha
    target.mkdir()
    for rel, _ in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        before = done
        _copy_file(src / rel, target / rel, f"{src.name}: member {rel.as_posix()}", left, copied)
        left -= done - before
    return target, None


def _copy_file(src: Path, dst: Path, what: str, left: int, copied: Callable[[int], None]) -> str:
    h = hashlib.sha256()
    with _open_regular(src, what) as fin, open(dst, "xb") as fout:
        def take(block: bytes) -> None:
            fout.write(block)
            h.update(block)
            copied(len(block))

        _read_capped(fin, what, min(MAX_IMPORT_FILE_BYTES, left), take)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


@contextlib.contextmanager
def _open_regular(path: Path, what: str) -> Iterator:
    """``path`` opened for reading if it is a regular file (not a link, device, pipe or socket)."""
    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a pipe must not block
             | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise StoreError(f"cannot read {what}: {exc.strerror or exc} (links are not followed)") from None
    fh = os.fdopen(fd, "rb")
    with fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"{what} is not a regular file; the store copies regular files only")
        yield fh


def _read_capped(fh, what: str, limit: int, sink: Callable[[bytes], None]) -> None:
    """Feed ``fh`` to ``sink`` in chunks; StoreError as soon as more than ``limit`` bytes came."""
    seen = 0
    while block := fh.read(COPY_CHUNK):
        seen += len(block)
        if seen > limit:
            raise StoreError(f"{what} grew past {_gib(limit)} while it was being read (the import limit); "
                             "refusing to import it")
        sink(block)


# ----------------------------------------------------------------------------- staging folders
@contextlib.contextmanager
def staging_area(root: Path) -> Iterator[Path]:
    """A fresh, locked folder under ``root/.incoming`` (same disk as the store: the final rename is atomic).

    ``tmp….lock`` is created and locked first, then the folder ``tmp…`` next to it: a staging
    folder is locked from the moment it exists until its import ends, so another process never
    mistakes it for a leftover. Both are deleted when the block ends, however it ends.
    """
    base = root / INCOMING
    base.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=base, prefix=_STAGING_PREFIX, suffix=LOCK_SUFFIX)
    lock = Path(name)
    try:
        if not _try_lock(fd):  # nobody else can know this file yet
            raise StoreError(f"cannot lock {lock}")
        folder = lock.with_name(lock.name[: -len(LOCK_SUFFIX)])
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)  # releases the lock
        lock.unlink(missing_ok=True)


def clean_stale_staging(root: Path) -> list[Path]:
    """Delete what killed imports left in ``root/.incoming``; return what was deleted.

    A ``tmp…`` folder whose ``tmp….lock`` is free belongs to no running import. One without a lock
    file (from an app version before locks), and a lock file alone, count only when older than
    this process, so an import that is just starting is never touched.
    """
    base = root / INCOMING
    removed: list[Path] = []
    try:
        entries = sorted(base.iterdir())
    except OSError:  # no .incoming yet, or unreadable: nothing to do
        return removed
    for path in entries:
        try:
            if path.name.startswith(_STAGING_PREFIX) and not path.is_symlink() and _clean(path):
                removed.append(path)
        except OSError:  # not ours to delete (permissions): leave it, the store still opens
            continue
    return removed


def _clean(path: Path) -> bool:
    """Delete the staging folder (or lone lock file) ``path`` if no running import owns it."""
    folder = path.with_name(path.name.removesuffix(LOCK_SUFFIX))
    lock = folder.with_name(folder.name + LOCK_SUFFIX)
    if path == lock and folder.exists():
        return False  # handled with its folder
    if lock.is_file():
        if not _free(lock) or (not folder.exists() and not _older_than_this_process(lock)):
            return False  # a running import holds it, or one is just starting
    elif not _older_than_this_process(folder):
        return False
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    lock.unlink(missing_ok=True)
    return not folder.exists() and not lock.exists()


def _older_than_this_process(path: Path) -> bool:
    try:
        return path.stat().st_mtime < _STARTED
    except OSError:
        return False


def _free(lock: Path) -> bool:
    """True when nobody holds ``lock`` (checked by taking and dropping it)."""
    try:
        fd = os.open(lock, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` without waiting; False when another holder has it.

    The operating system drops it when the descriptor is closed or the process dies (even by SIGKILL).
    """
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
