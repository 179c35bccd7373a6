"""Fetching model files once: resumable, verified HTTP downloads, and the progress reports and
errors of every download (Hugging Face Hub files: :mod:`.download_hub`, which reports the same).

Public API (the GUI's download dialog and ``insight models get`` use exactly this)::

    Progress(done: int, total: int | None, bytes_per_second: float, eta_seconds: float | None)
    download_url(url, dest, *, sha256=None, size=None, progress=None, should_stop=None, timeout=30.0) -> str

    DownloadError(RuntimeError)            every failure; the message is written for users
      DownloadCancelled                    should_stop() returned True (partial file kept for resume)
      ChecksumMismatch                     the bytes are not the expected ones (nothing kept)
      NetworkUnavailable                   offline, DNS, refused connection, timeout, proxy failure
        DownloadInterrupted                the connection broke mid-file (partial file kept for resume)
      RemoteFileMissing                    HTTP 404/410, or no such repository/file on the Hub

``progress`` is called with a :class:`Progress` at most every 0.2 s and once at the end;
``should_stop`` is polled between chunks. Both run on the downloading thread.

A download resumes only with ``If-Range`` (the ETag or Last-Modified of the first response, kept in
``<file>.part-version.json``), so a file that changed on the server in between is fetched again
from the start instead of being stitched from two versions. Only ``https://`` addresses are
accepted, redirects included (:mod:`.urls`).

``download_url`` uses only the standard library. ``urllib.request.urlopen`` builds its opener
with the default ``ProxyHandler``, which reads ``http_proxy``/``https_proxy``/``no_proxy`` (and
the upper-case forms) from the environment: a proxy works without any setting in the app.
The opener built here (``build_opener``, for the https-only redirect rule) keeps that default
``ProxyHandler`` and is not installed globally, so that stays true.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import StoppedByUser

CHUNK = 1 << 16  # small enough that Cancel reacts within milliseconds on a slow line
REPORT_EVERY = 0.2  # seconds between progress reports
USER_AGENT = "insight-desktop-model-store"
#: next to ``<file>.part``: the version (ETag or Last-Modified) its bytes belong to
VERSION_SUFFIX = ".part-version.json"


class DownloadError(RuntimeError):
    """A download failed; the message says what happened and what the user can do."""


class DownloadCancelled(DownloadError, StoppedByUser):
    """The user cancelled. A partial file stays next to the destination so the next try resumes."""


class ChecksumMismatch(DownloadError):
    """The downloaded bytes do not have the expected sha256; they were deleted."""


class NetworkUnavailable(DownloadError):
    """The server cannot be reached (offline, DNS, refused, timeout, proxy)."""


class DownloadInterrupted(NetworkUnavailable):
    """The connection broke in the middle of the file; the partial file is kept for resuming."""


class RemoteFileMissing(DownloadError):
    """The server says the file does not exist (HTTP 404/410, or no such Hub repository/file)."""


@dataclass(frozen=True)
class Progress:
    done: int  # bytes on disk, including a resumed prefix
    total: int | None  # None when the server does not say
    bytes_per_second: float  # over this session's transfer only
    eta_seconds: float | None

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


ProgressCallback = Callable[[Progress], None]
StopCallback = Callable[[], bool]


class _Reporter:
    """Throttled progress reports plus speed/ETA over the bytes transferred in this session."""

    def __init__(self, callback: ProgressCallback | None, done: int, total: int | None):
        self.callback, self.done, self.total = callback, done, total
        self._start_done, self._start, self._last = done, time.monotonic(), 0.0

    def add(self, n: int, *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if self.callback is None or (not force and now - self._last < REPORT_EVERY):
            return
        self._last = now
        elapsed = max(now - self._start, 1e-6)
        speed = (self.done - self._start_done) / elapsed
        eta = (self.total - self.done) / speed if self.total and speed > 0 else None
        self.callback(Progress(self.done, self.total, speed, max(eta, 0.0) if eta is not None else None))


def _hash_file(path: Path) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h


def _reason(exc: BaseException) -> str:
    """A short reason: 'Connection refused' rather than '<urlopen error [Errno 111] ...>'."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"name lookup failed ({exc.strerror or exc})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _unreachable(url: str, exc: BaseException) -> NetworkUnavailable:
    host = urllib.parse.urlsplit(url).hostname or url
    return NetworkUnavailable(f"cannot reach {host}: {_reason(exc)}. Check the network or proxy settings "
                              f"(HTTPS_PROXY), or import the file instead")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def download_url(url: str, dest: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
                 progress: ProgressCallback | None = None, should_stop: StopCallback | None = None,
                 timeout: float = 30.0) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, return its sha256.

    ``dest`` already there (with the right sha256 when one is given) → returned without any
    request. ``size`` is only a hint for the progress total when the server sends no length.
    Never leaves unverified bytes under ``dest``. Only ``https://`` addresses (:mod:`.urls`).

    A partial file is resumed only when the server can say it still has the same version: the
    first response's ETag (or, without one, its Last-Modified) is kept next to the ``.part`` and
    sent as ``If-Range``. A server with a new version answers 200 with the whole file, which
    replaces the partial one; a 206 whose validator differs, or a partial file whose version is
    unknown, also starts over — so bytes of two versions are never stitched together.
    """
    _refuse_insecure(url)
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        actual = _hash_file(dest).hexdigest()
        if expected is None or actual == expected:
            return actual
    part = dest.with_name(dest.name + ".part")
    version_file = dest.with_name(dest.name + VERSION_SUFFIX)
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    validator = _read_version(version_file, url) if offset else None
    if offset and validator is None:  # no way to ask whether it is still the same file: start over
        offset = _discard(part, version_file)
    while True:
        response = _request(url, offset, validator, timeout)
        if isinstance(response, int):  # 416: the range starts at the end of the server's file
            if response == offset:  # …and it is as long as the part, same version: the part is whole
                return _finish(url, part, dest, _hash_file(part), expected, offset, progress, version_file)
            offset = _discard(part, version_file)  # the file on the server is shorter now
            continue
        with response:
            if response.status == 206 and _range_start(response) != offset:
                _discard(part, version_file)
                raise DownloadError(f"the server sent the wrong part of {url}; the partial file was deleted: "
                                    "try again")
            resumed = bool(offset and validator and response.status == 206)
            if resumed and validator and _validator(response.headers, validator[0]) != validator:
                # a server that ignores If-Range sent part of another version: start over
                offset = _discard(part, version_file)
                continue  # once at most: the next request has no Range
            if resumed:
                h, mode = _hash_file(part), "ab"
            else:  # 200: a new version (If-Range did not match) or a server without ranges — start over
                h, mode, offset = hashlib.sha256(), "wb", 0
                _write_version(version_file, url, _validator(response.headers))
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else size
            reporter = _Reporter(progress, offset, total)
            _stream(url, response, part, mode, h, reporter, should_stop)
        break
    if length and length.isdigit() and reporter.done != offset + int(length):
        raise DownloadInterrupted(
            f"the connection to {urllib.parse.urlsplit(url).hostname} closed after {_mb(reporter.done)} of "
            f"{_mb(offset + int(length))}. The partial file is kept: try again to resume")
    return _finish(url, part, dest, h, expected, reporter.done, progress, version_file, reporter)


def _refuse_insecure(url: str) -> None:
    from .urls import insecure_reason

    reason = insecure_reason(url)
    if reason is not None:
        raise DownloadError(f"refusing to download {url}: {reason}")


class _HttpsRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except to an address :func:`_refuse_insecure` refuses (https → http)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _refuse_insecure(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _request(url: str, offset: int, validator: tuple[str, str] | None, timeout: float):
    """The open response, or the file length the server gave with a 416 to a ranged request."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = validator[1] if validator else ""
    # build_opener keeps the default ProxyHandler (environment proxies); it is not installed globally
    opener = urllib.request.build_opener(_HttpsRedirectsOnly)
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return _range_total(exc.headers.get("Content-Range", ""))
        if exc.code in (404, 410):
            raise RemoteFileMissing(f"the server has no file at {url} (HTTP {exc.code}); the catalogue may be "
                                    "out of date — download it by hand and import it") from None
        raise DownloadError(f"the server refused {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _unreachable(url, exc) from None


def _range_total(value: str) -> int:
    """N of ``bytes */N`` (a 416's Content-Range); -1 when absent or unreadable."""
    total = value.rpartition("/")[2].strip()
    return int(total) if total.isdigit() else -1


def _validator(headers, header: str | None = None) -> tuple[str, str] | None:
    """(header, value) that identifies this version of the file for If-Range: a strong ETag, else
    Last-Modified; with ``header``, that header's value only (to compare like with like)."""
    etag = (headers.get("ETag") or "").strip()
    # a weak ETag must not be used in If-Range (RFC 9110 13.1.5)
    if header in (None, "ETag") and etag and not etag.startswith("W/"):
        return "ETag", etag
    modified = (headers.get("Last-Modified") or "").strip()
    if header in (None, "Last-Modified") and modified:
        return "Last-Modified", modified
    return None


def _read_version(version_file: Path, url: str) -> tuple[str, str] | None:
    try:
        saved = json.loads(version_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("url") != url:
        return None
    header, value = saved.get("header"), saved.get("value")
    if header not in ("ETag", "Last-Modified") or not isinstance(value, str) or not value:
        return None
    return header, value


def _write_version(version_file: Path, url: str, validator: tuple[str, str] | None) -> None:
    if validator is None:  # nothing to resume with: a later try starts over
        version_file.unlink(missing_ok=True)
        return
    from ..fileio import atomic_write_json

    atomic_write_json(version_file, {"url": url, "header": validator[0], "value": validator[1]})


def _discard(part: Path, version_file: Path) -> int:
    part.unlink(missing_ok=True)
    version_file.unlink(missing_ok=True)
    return 0


def _range_start(response) -> int | None:
    value = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _stream(url, response, part: Path, mode: str, h, reporter: _Reporter, should_stop) -> None:
    with open(part, mode) as fh:
        while True:
            if should_stop is not None and should_stop():
                raise DownloadCancelled(f"download cancelled after {_mb(reporter.done)}; the partial file "
                                        f"{part.name} is kept and the next try resumes from there")
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadInterrupted(
                    f"the connection to {urllib.parse.urlsplit(url).hostname} broke after {_mb(reporter.done)} "
                    f"({_reason(exc)}). The partial file is kept: try again to resume") from None
            if not chunk:
                break
            try:
                fh.write(chunk)
            except OSError as exc:
                raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None
            h.update(chunk)
            reporter.add(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())


def _finish(url, part: Path, dest: Path, h, expected: str | None, done: int, progress, version_file: Path,
            reporter=None) -> str:
    actual = h.hexdigest()
    if expected is not None and actual != expected:
        _discard(part, version_file)
        raise ChecksumMismatch(f"the file from {url} is not the expected one (sha256 {actual[:12]}…, expected "
                               f"{expected[:12]}…); it was deleted. Try again later, or import a copy you trust")
    os.replace(part, dest)
    version_file.unlink(missing_ok=True)
    if reporter is not None:
        reporter.add(0, force=True)
    elif progress is not None:
        progress(Progress(done, done, 0.0, 0.0))
    return actual


__all__ = [
    "ChecksumMismatch", "DownloadCancelled", "DownloadError", "DownloadInterrupted", "NetworkUnavailable", "Progress",
    "RemoteFileMissing", "download_url",
]
