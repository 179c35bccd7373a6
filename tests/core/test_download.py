"""Resumable, verified downloads against a local HTTP server; Hub files from a local cache only."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from insight_desktop.core.store import download, download_hub
from insight_desktop.core.store.download import (
    ChecksumMismatch,
    DownloadCancelled,
    DownloadInterrupted,
    NetworkUnavailable,
    Progress,
    RemoteFileMissing,
    download_url,
)
from insight_desktop.core.store.download_hub import hub_download
from tests.core.http_fixture import HUB_COMMIT, closed_port_url, file_server, hub_online  # noqa: F401 — fixtures

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_download_reports_progress_and_verifies(file_server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "REPORT_EVERY", 0.0)  # every chunk, so the sequence is visible
    url = file_server.put("w.bin", DATA)
    events: list[Progress] = []
    dest = tmp_path / "out" / "w.bin"
    assert download_url(url, dest, sha256=SHA, progress=events.append) == SHA
    assert dest.read_bytes() == DATA
    assert not dest.with_name("w.bin.part").exists()
    dones = [e.done for e in events]
    assert len(dones) > 3 and dones == sorted(dones)
    assert events[-1].done == events[-1].total == len(DATA)
    assert all(e.bytes_per_second >= 0 for e in events) and events[-1].eta_seconds == 0


def test_interrupted_download_resumes_with_range(file_server, tmp_path):
    url = file_server.put("w.bin", DATA)
    dest = tmp_path / "w.bin"
    file_server.cut_after = 100_000
    with pytest.raises(DownloadInterrupted, match="try again to resume"):
        download_url(url, dest, sha256=SHA)
    part = tmp_path / "w.bin.part"
    assert part.stat().st_size == 100_000 and not dest.exists()
    assert download_url(url, dest, sha256=SHA) == SHA
    assert dest.read_bytes() == DATA
    assert file_server.requests_for("w.bin") == [None, "bytes=100000-"]


def test_server_ignoring_range_restarts_from_zero(file_server, tmp_path):
    url = file_server.put("w.bin", DATA)
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.part").write_bytes(b"garbage that must not stay in front")
    file_server.ignore_range = True
    assert download_url(url, dest, sha256=SHA) == SHA
    assert dest.read_bytes() == DATA


def test_complete_part_answered_416_is_verified(file_server, tmp_path):
    url = file_server.put("w.bin", DATA)
    (tmp_path / "w.bin.part").write_bytes(DATA)
    version = {"url": url, "header": "ETag", "value": f'"{SHA}"'}  # what the first response said
    (tmp_path / f"w.bin{download.VERSION_SUFFIX}").write_text(json.dumps(version))
    assert download_url(url, tmp_path / "w.bin", sha256=SHA) == SHA
    assert file_server.requests_for("w.bin") == [f"bytes={len(DATA)}-"]
    assert (tmp_path / "w.bin").read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]  # the version note went with the part


def test_checksum_mismatch_leaves_nothing(file_server, tmp_path):
    url = file_server.put("w.bin", DATA)
    wrong = "ab" * 32
    with pytest.raises(ChecksumMismatch) as info:
        download_url(url, tmp_path / "w.bin", sha256=wrong)
    message = str(info.value)
    assert SHA[:12] in message and wrong[:12] in message and url in message
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_unreachable_server(file_server, tmp_path):
    with pytest.raises(RemoteFileMissing, match="HTTP 404"):
        download_url(file_server.url("nope.bin"), tmp_path / "nope.bin")
    t0 = time.monotonic()
    with pytest.raises(NetworkUnavailable, match=r"cannot reach 127\.0\.0\.1: .*refused.*HTTPS_PROXY"):
        download_url(closed_port_url(), tmp_path / "x.bin", timeout=5)
    assert time.monotonic() - t0 < 5
    assert list(tmp_path.iterdir()) == []


def test_present_file_is_not_downloaded_again(file_server, tmp_path):
    url = file_server.put("w.bin", DATA)
    (tmp_path / "w.bin").write_bytes(DATA)
    assert download_url(url, tmp_path / "w.bin", sha256=SHA) == SHA
    assert download_url(url, tmp_path / "w.bin") == SHA  # no hash given: trust what is there
    assert file_server.log == []


def test_present_file_with_wrong_hash_is_replaced(file_server, tmp_path):
    url = file_server.put("w.bin", DATA)
    (tmp_path / "w.bin").write_bytes(b"old")
    assert download_url(url, tmp_path / "w.bin", sha256=SHA) == SHA
    assert (tmp_path / "w.bin").read_bytes() == DATA


def test_should_stop_cancels_and_keeps_the_part(file_server, tmp_path):
    url = file_server.put("w.bin", DATA)
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(DownloadCancelled, match="kept"):
        download_url(url, tmp_path / "w.bin", should_stop=should_stop)
    part = tmp_path / "w.bin.part"
    assert part.stat().st_size == 2 * download.CHUNK and not (tmp_path / "w.bin").exists()
    assert download_url(url, tmp_path / "w.bin", sha256=SHA) == SHA
    assert file_server.requests_for("w.bin")[-1] == f"bytes={2 * download.CHUNK}-"


# ----------------------------------------------------------------------------- Hugging Face Hub


def test_hub_offline_missing_file_fails_fast(tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # tests/conftest.py
    t0 = time.monotonic()
    with pytest.raises(NetworkUnavailable, match="HF_HUB_OFFLINE"):
        hub_download("laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "open_clip_model.safetensors", cache_dir=tmp_path)
    assert time.monotonic() - t0 < 2


def place_in_hub_cache(cache, repo_id: str, filename: str, data: bytes, commit: str = "0" * 40):
    """A file laid out the way huggingface_hub caches it (blob + snapshot link + refs/main)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    snap = repo / "snapshots" / commit / filename
    snap.parent.mkdir(parents=True)
    try:
        snap.symlink_to(os.path.relpath(blob, snap.parent))
    except OSError:  # no symlinks (Windows without developer mode): huggingface_hub copies too
        snap.write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_hub_file_in_cache_is_returned_offline(tmp_path, monkeypatch):
    import socket

    snap = place_in_hub_cache(tmp_path, "org/name", "weights.safetensors", b"hello")

    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = hub_download("org/name", "weights.safetensors", cache_dir=tmp_path)
    assert path == snap and path.read_bytes() == b"hello"


def test_hub_progress_class_reports_and_cancels():
    from insight_desktop.core.store.download_hub import _progress_class

    events, stop = [], {"now": False}
    bar_class = _progress_class(events.append, lambda: stop["now"])
    with bar_class(total=100, initial=10, desc="x", unit="B") as bar:
        bar.update(40)
        bar.update(50)
    assert events[-1].done == 100 and events[-1].total == 100
    stop["now"] = True
    with pytest.raises(DownloadCancelled), bar_class(total=100) as bar:
        bar.update(1)


def test_hub_download_reports_progress_and_cancels(hub_online, tmp_path):
    data = os.urandom(3_000_000)  # three 1 MiB chunks
    hub_online.put("org/repo/w.safetensors", data)
    events = []

    def on_progress(p):
        events.append(p)

    calls = []
    with pytest.raises(DownloadCancelled):
        hub_download("org/repo", "w.safetensors", cache_dir=tmp_path, progress=on_progress,
                     should_stop=lambda: calls.append(1) or len(calls) > 1)  # stop after the first chunk
    assert [e.done for e in events] == [download_hub.HUB_CHUNK] and events[0].total == len(data)
    repo = tmp_path / "models--org--repo"
    assert not [p for p in repo.rglob("*") if p.is_file() and "refs" not in p.parts]  # no partial blob kept
    events.clear()
    path = hub_download("org/repo", "w.safetensors", cache_dir=tmp_path, progress=events.append)
    assert path.read_bytes() == data and events[-1].done == events[-1].total == len(data)
    assert path == tmp_path / "models--org--repo" / "snapshots" / HUB_COMMIT / "w.safetensors"
    from huggingface_hub import constants

    assert constants.DOWNLOAD_CHUNK_SIZE == 10 * 1024 * 1024  # restored
    assert download_hub.hub_cached("org/repo", "w.safetensors", cache_dir=tmp_path) == path


def test_hub_missing_file_and_unreachable_hub(hub_online, tmp_path, monkeypatch):
    with pytest.raises(RemoteFileMissing, match="org/repo/absent.bin"):
        hub_download("org/repo", "absent.bin", cache_dir=tmp_path)
    monkeypatch.setattr(download_hub, "hub_endpoint", lambda: closed_port_url("")[:-1])
    t0 = time.monotonic()
    with pytest.raises(NetworkUnavailable, match=r"cannot reach 127\.0\.0\.1: .*refused"):
        hub_download("org/repo", "w.safetensors", cache_dir=tmp_path)
    assert time.monotonic() - t0 < 3
