"""Hugging Face Hub files for the model store, with the store's progress, cancel and errors.

``hub_download`` wraps ``huggingface_hub.hf_hub_download`` so
that the file lands in the ordinary Hugging Face cache — where open_clip looks for a pretrained
tag — and every failure becomes one of :mod:`.download`'s user-facing errors.

What works, checked against huggingface_hub 2.4 (read its ``file_download.py``):

* Progress: ``hf_hub_download(tqdm_class=…)`` builds the class once per file and calls
  ``update(n)`` for every chunk; ours turns that into :class:`~.download.Progress` reports.
* Cancel: ``update`` raises :class:`~.download.DownloadCancelled` when ``should_stop()`` is true;
  the exception leaves ``http_get`` (it only catches network errors) and huggingface_hub deletes
  its temporary file. hf_xet, when installed, transfers on its own threads and reports through a
  callback that cannot stop it, so ``_plain_http`` switches xet off for the call; the Hub serves
  xet-backed files over plain HTTP as well. The chunk size is lowered for the call, so progress
  and Cancel react every MiB rather than every 10 MiB. Both are module-level settings of
  huggingface_hub, changed under a lock and restored afterwards.
* Resume: only within one call (huggingface_hub retries a broken stream with a Range request).
  huggingface_hub ≥ 1.0 uses a per-call temporary file, so after a cancel the next call starts over.
* Offline (``HF_HUB_OFFLINE``): only the cache is consulted; a missing file fails at once. Online,
  one quick request to the Hub first: an unreachable network fails at once too, instead of after
  huggingface_hub's five retries.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .download import (
    USER_AGENT,
    DownloadCancelled,
    DownloadError,
    NetworkUnavailable,
    Progress,
    ProgressCallback,
    RemoteFileMissing,
    StopCallback,
    _unreachable,
)
from .urls import insecure_reason

_XET_LOCK = threading.Lock()
#: huggingface_hub streams in 10 MiB chunks; progress and Cancel only act between chunks, so a
#: slow line would wait seconds for either — 1 MiB keeps both responsive
HUB_CHUNK = 1 << 20
_DISK_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EACCES", "EROFS", "EDQUOT") if hasattr(errno, n)}


def hub_offline() -> bool:
    """True when the Hub is switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, now or at import)."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def hub_cached(repo_id: str, filename: str, *, revision: str | None = None,
               cache_dir: str | Path | None = None) -> Path | None:
    """The file from the local Hugging Face cache, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def _progress_class(progress: ProgressCallback | None, should_stop: StopCallback | None):
    """A tqdm subclass that reports to ``progress`` and raises DownloadCancelled on ``should_stop``."""
    from tqdm import tqdm

    class StoreProgressBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["disable"] = True  # no terminal output: the caller draws its own bar
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._start_done, self._start, self._last = self._done, time.monotonic(), 0.0
            self._total = kwargs.get("total")

        def update(self, n=1):
            self._done += int(n or 0)
            if should_stop is not None and should_stop():
                raise DownloadCancelled(f"download cancelled after {self._done / 1e6:.1f} MB")
            self._report(force=False)
            return super().update(n)

        def close(self):
            if not getattr(self, "_closed_once", False) and hasattr(self, "_done"):
                self._closed_once = True
                if self._total and self._done >= self._total:
                    self._report(force=True)
            return super().close()

        def _report(self, force: bool) -> None:
            now = time.monotonic()
            if progress is None or (not force and now - self._last < 0.2):
                return
            self._last = now
            speed = (self._done - self._start_done) / max(now - self._start, 1e-6)
            total = int(self._total) if self._total else None
            eta = (total - self._done) / speed if total and speed > 0 else None
            progress(Progress(self._done, total, speed, max(eta, 0.0) if eta is not None else None))

    return StoreProgressBar


@contextmanager
def _plain_http() -> Iterator[None]:
    """For one download: hf_xet off, and 1 MiB chunks instead of 10 MiB (see the module doc)."""
    from huggingface_hub import constants

    with _XET_LOCK:
        before = constants.HF_HUB_DISABLE_XET, constants.DOWNLOAD_CHUNK_SIZE
        constants.HF_HUB_DISABLE_XET = True
        constants.DOWNLOAD_CHUNK_SIZE = HUB_CHUNK
        try:
            yield
        finally:
            constants.HF_HUB_DISABLE_XET, constants.DOWNLOAD_CHUNK_SIZE = before


def hub_endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT`` (a mirror) or https://huggingface.co."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _check_reachable(endpoint: str, timeout: float = 10.0) -> None:
    """One quick request to the Hub endpoint (through the environment's proxy, like huggingface_hub).

    Without it an unreachable network costs half a minute: with no cached copy huggingface_hub
    retries its metadata request five times with growing pauses before giving up.
    """
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD", headers={"User-Agent": USER_AGENT}),
                               timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered: reachable
    except (urllib.error.URLError, OSError) as exc:
        raise _unreachable(endpoint, exc) from None


def _where(repo_id: str, filename: str) -> str:
    return f"{repo_id}/{filename}"


def hub_download(repo_id: str, filename: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
                 progress: ProgressCallback | None = None, should_stop: StopCallback | None = None) -> Path:
    """``filename`` of Hub repository ``repo_id`` in the Hugging Face cache (``cache_dir`` or the default).

    Offline (HF_HUB_OFFLINE) the cache is the only source: a missing file raises
    :class:`NetworkUnavailable` at once, with no retries. Online, huggingface_hub downloads it
    (its own proxy settings: ``HTTPS_PROXY`` etc. via httpx). Progress and Cancel work through
    ``hf_hub_download``'s ``tqdm_class``. Resuming: within one call huggingface_hub resumes after
    transient network errors; across calls it does not (huggingface_hub ≥ 1.0 downloads into a
    per-call temporary file and deletes it on failure), so a cancelled Hub download starts over.
    """
    from huggingface_hub import errors, hf_hub_download

    if hub_offline():
        cached = hub_cached(repo_id, filename, revision=revision, cache_dir=cache_dir)
        if cached is not None:
            return cached
        raise NetworkUnavailable(
            f"{_where(repo_id, filename)} is not in the Hugging Face cache and the Hub is switched off "
            f"(HF_HUB_OFFLINE is set): unset HF_HUB_OFFLINE to download it, or import the file instead")
    endpoint = hub_endpoint()
    reason = insecure_reason(endpoint)
    if reason is not None:
        raise DownloadError(f"refusing the Hugging Face endpoint {endpoint} (HF_ENDPOINT): {reason}")
    _check_reachable(endpoint)
    try:
        with _plain_http():
            path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                                   tqdm_class=_progress_class(progress, should_stop))
        return Path(path)
    except DownloadError:
        raise
    except (errors.RemoteEntryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise RemoteFileMissing(f"the Hugging Face Hub has no file {_where(repo_id, filename)}"
                                f"{f' at revision {revision}' if revision else ''} ({type(exc).__name__})") from None
    except errors.GatedRepoError:
        raise DownloadError(f"{repo_id} on the Hugging Face Hub needs you to accept its terms and log in "
                            "(`hf auth login`); or import the file instead") from None
    except errors.RepositoryNotFoundError:
        raise RemoteFileMissing(f"the Hugging Face Hub has no repository {repo_id} (or it is private)") from None
    except errors.HfHubHTTPError as exc:
        raise DownloadError(f"the Hugging Face Hub refused {_where(repo_id, filename)}: {_short(exc)}") from None
    except OSError as exc:
        if exc.errno in _DISK_ERRNOS:
            raise DownloadError(f"cannot write into the Hugging Face cache: {exc.strerror or exc}") from None
        # Network down (LocalEntryNotFoundError wraps the failed HEAD), proxy failure, timeouts.
        cached = hub_cached(repo_id, filename, revision=revision, cache_dir=cache_dir)
        if cached is not None:
            return cached
        cause = exc.__cause__ or exc
        if isinstance(cause, errors.HfHubHTTPError):  # it answered, with an error (no cached copy either)
            status = getattr(getattr(cause, "response", None), "status_code", None)
            if status in (404, 410):
                raise RemoteFileMissing(f"the Hugging Face Hub has no file {_where(repo_id, filename)} "
                                        f"(HTTP {status})") from None
            raise DownloadError(f"the Hugging Face Hub refused {_where(repo_id, filename)}: {_short(cause)}") from None
        raise NetworkUnavailable(f"cannot reach the Hugging Face Hub for {_where(repo_id, filename)}: "
                                 f"{_short(cause)}. Check the network or proxy settings (HTTPS_PROXY), "
                                 "or import the file instead") from None
    except Exception as exc:  # httpx errors are not OSErrors; anything else is a failed download too
        if type(exc).__module__.startswith(("httpx", "huggingface_hub")):
            raise NetworkUnavailable(f"cannot download {_where(repo_id, filename)} from the Hugging Face Hub: "
                                     f"{_short(exc)}. Check the network or proxy settings (HTTPS_PROXY), "
                                     "or import the file instead") from None
        raise


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
