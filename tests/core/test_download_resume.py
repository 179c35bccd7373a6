"""Resuming never stitches two versions of a file; only https:// (loopback http for tests only).

Kill tests: a loopback server (tests/core/http_fixture.py, http.server in a thread) serves version
A with an ETag (or Last-Modified), the download is stopped part-way, the server switches to version
B, and the resumed download must be exactly B.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from insight_desktop.core.store import download, urls
from insight_desktop.core.store.download import DownloadCancelled, DownloadError, DownloadInterrupted, download_url
from tests.core.http_fixture import file_server  # noqa: F401 — the fixture

A = os.urandom(5 * download.CHUNK)
B = os.urandom(5 * download.CHUNK)  # same length: a stitched file would not even differ in size
SHORT_B = os.urandom(download.CHUNK)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stop_after(chunks: int):
    """A cancel callback that stops the download after ``chunks`` chunks (it is polled once per chunk)."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > chunks

    return should_stop


def interrupted(server, tmp_path, data: bytes = A, chunks: int = 2):
    url = server.put("w.bin", data)
    dest = tmp_path / "w.bin"
    with pytest.raises(DownloadCancelled):
        download_url(url, dest, should_stop=stop_after(chunks))
    assert (tmp_path / "w.bin.part").stat().st_size == chunks * download.CHUNK
    return url, dest


@pytest.mark.parametrize("new", [B, SHORT_B], ids=["same-length", "shorter"])
def test_resume_after_the_server_switched_version_yields_the_new_version(file_server, tmp_path, new):
    url, dest = interrupted(file_server, tmp_path)
    file_server.put("w.bin", new)  # the upstream file changed while we were away
    assert download_url(url, dest) == sha(new)  # no sha256 given: trust on first use must not be fooled
    assert dest.read_bytes() == new
    # one ranged request with If-Range; the server answered 200 with the whole new file
    assert file_server.requests_for("w.bin") == [None, f"bytes={2 * download.CHUNK}-"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


def test_unchanged_file_resumes_from_the_part(file_server, tmp_path):
    url, dest = interrupted(file_server, tmp_path)
    assert download_url(url, dest, sha256=sha(A)) == sha(A)
    assert file_server.requests_for("w.bin") == [None, f"bytes={2 * download.CHUNK}-"]


def test_a_server_ignoring_if_range_is_caught_by_its_changed_etag(file_server, tmp_path):
    file_server.honour_if_range = False  # answers 206 with a slice of whatever it has now
    url, dest = interrupted(file_server, tmp_path)
    file_server.put("w.bin", B)
    assert download_url(url, dest) == sha(B) and dest.read_bytes() == B
    assert file_server.requests_for("w.bin") == [None, f"bytes={2 * download.CHUNK}-", None]  # then from zero


def test_last_modified_is_the_validator_without_an_etag(file_server, tmp_path):
    file_server.validator = "last-modified"
    url, dest = interrupted(file_server, tmp_path)
    saved = json.loads((tmp_path / f"w.bin{download.VERSION_SUFFIX}").read_text())
    assert saved["url"] == url and saved["header"] == "Last-Modified" and saved["value"].endswith("GMT")
    file_server.put("w.bin", B)
    os.utime(file_server.root / "w.bin", (1_700_000_000, 1_700_000_000))  # a different Last-Modified
    assert download_url(url, dest) == sha(B) and dest.read_bytes() == B


def test_without_any_validator_a_part_is_never_resumed(file_server, tmp_path):
    file_server.validator = None
    url, dest = interrupted(file_server, tmp_path)
    assert not (tmp_path / f"w.bin{download.VERSION_SUFFIX}").exists()
    file_server.put("w.bin", B)
    assert download_url(url, dest) == sha(B) and dest.read_bytes() == B
    assert file_server.requests_for("w.bin") == [None, None]


def test_a_dropped_connection_then_a_new_version(file_server, tmp_path):
    url = file_server.put("w.bin", A)
    dest = tmp_path / "w.bin"
    file_server.cut_after = 100_000
    with pytest.raises(DownloadInterrupted):
        download_url(url, dest)
    file_server.put("w.bin", B)
    assert download_url(url, dest) == sha(B) and dest.read_bytes() == B


def test_a_part_from_another_address_is_not_resumed(file_server, tmp_path):
    url, dest = interrupted(file_server, tmp_path)
    other = file_server.put("v2/w.bin", B)
    assert download_url(other, dest) == sha(B) and dest.read_bytes() == B
    assert file_server.requests_for("v2/w.bin") == [None]


def test_a_416_for_a_part_longer_than_the_new_file_starts_over(file_server, tmp_path):
    url, dest = interrupted(file_server, tmp_path, chunks=3)
    file_server.put("w.bin", A[: 2 * download.CHUNK])  # now shorter than the part
    file_server.honour_if_range = False  # a server that skips If-Range answers 416 ("bytes */N") to the range
    assert download_url(url, dest) == sha(A[: 2 * download.CHUNK])
    assert file_server.requests_for("w.bin")[1:] == [f"bytes={3 * download.CHUNK}-", None]


# --------------------------------------------------------------------------------------- https only

def test_plain_http_is_refused_without_the_test_hook(tmp_path, monkeypatch):
    monkeypatch.setattr(urls, "ALLOW_LOOPBACK_HTTP_FOR_TESTS", False)
    with pytest.raises(DownloadError, match=r"refusing to download http://127\.0\.0\.1/x\.bin: plain http"):
        download_url("http://127.0.0.1/x.bin", tmp_path / "x.bin")
    with pytest.raises(DownloadError, match="only https"):
        download_url("file:///etc/passwd", tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


def test_the_test_hook_admits_loopback_only(monkeypatch):
    monkeypatch.setattr(urls, "ALLOW_LOOPBACK_HTTP_FOR_TESTS", True)
    assert urls.insecure_reason("http://127.0.0.1:8000/a") is None
    assert "plain http" in urls.insecure_reason("http://example.com/a")
    assert urls.insecure_reason("https://example.com/a") is None


def test_a_redirect_to_plain_http_is_refused(monkeypatch):
    import urllib.request

    monkeypatch.setattr(urls, "ALLOW_LOOPBACK_HTTP_FOR_TESTS", False)
    handler = download._HttpsRedirectsOnly()
    request = urllib.request.Request("https://example.com/a")
    with pytest.raises(DownloadError, match="refusing to download http://example.com/b"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://example.com/b")
    assert handler.redirect_request(request, None, 302, "Found", {}, "https://mirror.example.com/b") is not None


def test_an_http_hub_endpoint_is_refused(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from insight_desktop.core.store import download_hub

    monkeypatch.setattr(urls, "ALLOW_LOOPBACK_HTTP_FOR_TESTS", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(download_hub, "hub_endpoint", lambda: "http://hub-mirror.example")
    with pytest.raises(DownloadError, match="refusing the Hugging Face endpoint http://hub-mirror.example"):
        download_hub.hub_download("org/repo", "f.bin", cache_dir=tmp_path)


def test_a_weak_etag_is_never_sent_in_if_range():
    date = "Sun, 29 Nov 2026 10:00:00 GMT"
    assert download._validator({"ETag": 'W/"v1"', "Last-Modified": date}) == ("Last-Modified", date)
    assert download._validator({"ETag": 'W/"v1"'}) is None
    assert download._validator({"ETag": '"v1"', "Last-Modified": date}) == ("ETag", '"v1"')
