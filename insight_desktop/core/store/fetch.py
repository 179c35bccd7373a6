"""Downloading a catalogue entry's file for the model store: from the Hub or a plain URL, verified.

Both return ``(path, sha256, source description)``; ``expected`` is the sha256 to insist on (the
catalogue's, or the one recorded on first use), None to accept and record what arrives.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from .download import ChecksumMismatch, ProgressCallback, RemoteFileMissing, StopCallback
from .files import validate
from .index import StoreError, file_sha256, git_blob_id
from .known_models import KnownModel


def fetch_hub(entry: KnownModel, expected: str | None, cache_dir, progress: ProgressCallback | None,
              should_stop: StopCallback | None) -> tuple[Path, str, str]:
    """The entry's Hub file in the Hugging Face cache: taken from the cache when there (no network)."""
    from .download_hub import hub_cached, hub_download, hub_endpoint

    hub = entry.hf
    if hub is None:
        raise StoreError(f"{entry.id} has no Hugging Face source in the catalogue")
    repo, names = hub
    revision = entry.revision  # a commit id pins the file; None follows the default branch
    found = next(((n, p) for n in names if (p := hub_cached(repo, n, revision=revision, cache_dir=cache_dir))),
                 None)
    if found is None:
        missing: RemoteFileMissing | None = None
        for name in names:  # open_clip's order: safetensors first, then the pickle-era file
            try:
                found = (name, hub_download(repo, name, revision=revision, cache_dir=cache_dir, progress=progress,
                                            should_stop=should_stop))
                break
            except RemoteFileMissing as exc:
                missing = exc
        else:
            raise missing  # type: ignore[misc]
    name, path = found
    sha = file_sha256(path)
    if expected and sha != expected:
        raise ChecksumMismatch(f"{path} (from {repo}) is not the expected file (sha256 {sha[:12]}…, expected "
                               f"{expected[:12]}…): delete it from the Hugging Face cache and get it again")
    oc = entry.open_clip
    validate(path, entry.kind, openclip_model=oc[0] if oc else None)
    return path, sha, f"{hub_endpoint()}/{repo}/blob/{revision or 'main'}/{name}"


def fetch_url(entry: KnownModel, folder: Path, expected: str | None, progress: ProgressCallback | None,
              should_stop: StopCallback | None) -> tuple[Path, str, str]:
    """The entry's URL downloaded (resumably) into ``folder``, then validated — or deleted."""
    from .download import download_url

    url = entry.url
    if url is None:
        raise StoreError(f"{entry.id} has no download address in the catalogue")
    dest = folder / (os.path.basename(urllib.parse.urlsplit(url).path) or entry.id)
    sha = download_url(url, dest, sha256=expected, size=entry.size_bytes, progress=progress, should_stop=should_stop)
    if entry.git_blob is not None and (blob := git_blob_id(dest)) != entry.git_blob:
        dest.unlink(missing_ok=True)
        raise ChecksumMismatch(f"the file from {url} is not the one at that commit (git object {blob[:12]}…, "
                               f"expected {entry.git_blob[:12]}…), so it was deleted")
    try:
        validate(dest, entry.kind)
    except StoreError as exc:
        dest.unlink(missing_ok=True)
        raise StoreError(f"the file downloaded from {url} is not usable, so it was deleted: {exc}") from None
    return dest, sha, url
