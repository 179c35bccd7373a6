"""The catalogue schema: https only, pinned entries (sha256 + commit addresses) or an explicit reason why not."""

from __future__ import annotations

import json

import pytest

from insight_desktop.core.store import urls
from insight_desktop.core.store.known_models import KnownModel, KnownModelsError, load_known_models

SHA = "ab" * 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def entry(**fields):
    return {"id": "w", "kind": "dinoiser", "title": "W", "source": {"url": "https://example.com/w.pt"}, **fields}


def load(tmp_path, *entries):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(list(entries)))
    return load_known_models(path)


def test_every_downloadable_bundled_entry_is_pinned_or_says_why_not():
    for e in load_known_models():
        if e.import_only:
            continue
        assert e.pinned or (e.unpinned and len(e.unpinned) > 40), e.id
        assert e.url is None or (e.url.startswith("https://") and urls.moving_ref(e.url) is None), e.id
    dinoiser = next(e for e in load_known_models() if e.id == "clip-dinoiser")
    assert "/a954aae6fb61f5ff18834e50a0c78a2258cd9afb/checkpoints/last.pt" in dinoiser.url
    assert dinoiser.pinned and dinoiser.git_blob == "0b6c94d9c439ebac7bcb07fe805be3654ea03c7f"  # git ls-tree there


@pytest.mark.parametrize("url", ["http://example.com/w.pt", "ftp://example.com/w.pt", "file:///etc/passwd"])
def test_only_https_addresses_are_accepted(tmp_path, url):
    with pytest.raises(KnownModelsError, match="source.url .* is refused"):
        load(tmp_path, entry(source={"url": url}))


def test_loopback_http_is_not_accepted_without_the_test_hook(tmp_path, monkeypatch):
    monkeypatch.setattr(urls, "ALLOW_LOOPBACK_HTTP_FOR_TESTS", False)
    with pytest.raises(KnownModelsError, match="plain http"):
        load(tmp_path, entry(source={"url": "http://127.0.0.1:8000/w.pt"}))


@pytest.mark.parametrize("url,branch", [
    ("https://raw.githubusercontent.com/o/r/main/checkpoints/last.pt", "main"),
    ("https://github.com/o/r/raw/v1.0/last.pt", "v1.0"),
    ("https://huggingface.co/org/repo/resolve/main/w.safetensors", "main"),
])
def test_a_branch_address_needs_a_sha256(tmp_path, url, branch):
    with pytest.raises(KnownModelsError, match=f"follows '{branch}', which can change"):
        load(tmp_path, entry(source={"url": url}, unpinned="no hash known"))
    assert load(tmp_path, entry(source={"url": url}, sha256=SHA))[0].pinned  # the hash pins the bytes
    commit_url = url.replace(f"/{branch}/", f"/{COMMIT}/")
    (e,) = load(tmp_path, entry(source={"url": commit_url}, unpinned="the sha256 is not known yet"))
    assert not e.pinned and e.unpinned == "the sha256 is not known yet"


def test_hub_revision_must_be_a_commit(tmp_path):
    hf = {"repo": "org/repo", "file": "w.bin"}
    with pytest.raises(KnownModelsError, match="revision must be a 40-hex commit id"):
        load(tmp_path, entry(kind="openclip", source={"hf": {**hf, "revision": "main"}}))
    (e,) = load(tmp_path, entry(kind="openclip", source={"hf": {**hf, "revision": COMMIT}}, sha256=SHA))
    assert e.revision == COMMIT and e.pinned and KnownModel.from_dict(e.to_dict()) == e
    (e,) = load(tmp_path, entry(kind="openclip", source={"hf": hf}))
    assert e.revision is None and not e.pinned


def test_unpinned_is_a_reason_and_excludes_a_sha256(tmp_path):
    with pytest.raises(KnownModelsError, match="drop 'unpinned'"):
        load(tmp_path, entry(sha256=SHA, unpinned="why"))
    with pytest.raises(KnownModelsError, match="unpinned must be a sentence"):
        load(tmp_path, entry(unpinned=True))


def test_git_blob_pins_a_commit_address(tmp_path):
    url = f"https://raw.githubusercontent.com/o/r/{COMMIT}/last.pt"
    (e,) = load(tmp_path, entry(source={"url": url}, git_blob="AB" * 20))
    assert e.pinned and e.git_blob == "ab" * 20 and KnownModel.from_dict(e.to_dict()) == e
    with pytest.raises(KnownModelsError, match="git_blob must be 40 hex digits, for a source.url that names a commit"):
        load(tmp_path, entry(source={"url": url.replace(COMMIT, "main")}, git_blob="ab" * 20, sha256=SHA))
    with pytest.raises(KnownModelsError, match="git_blob must be 40 hex"):
        load(tmp_path, entry(source={"url": url}, git_blob="xyz"))
    with pytest.raises(KnownModelsError, match="drop 'unpinned'"):
        load(tmp_path, entry(source={"url": url}, git_blob="ab" * 20, unpinned="why"))
