"""`insight models` with untrusted input: unpinned catalogue entries are named; a crafted folder is refused."""

from __future__ import annotations

import json
import os

from insight_desktop.cli import main


def test_list_says_which_entries_are_unpinned(tmp_path, monkeypatch, capsys):
    catalogue = tmp_path / "c.json"
    catalogue.write_text(json.dumps([
        {"id": "pinned", "kind": "dinoiser", "title": "Pinned", "sha256": "ab" * 32,
         "source": {"url": "https://example.com/a.pt"}},
        {"id": "loose", "kind": "dinoiser", "title": "Loose", "unpinned": "upstream publishes no hash",
         "source": {"url": "https://example.com/b.pt"}}]))
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(catalogue))
    assert main(["models", "list", "--available"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("pinned", "loose"))}
    assert " pinned " in rows["pinned"] and " UNPINNED " in rows["loose"]
    assert "  loose: upstream publishes no hash" in out


def test_http_catalogue_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    catalogue = tmp_path / "c.json"
    catalogue.write_text(json.dumps([{"id": "w", "kind": "dinoiser", "title": "W",
                                      "source": {"url": "http://example.com/w.pt"}}]))
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(catalogue))
    assert main(["models", "get", "w"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plain http:// is not accepted" in err


def test_import_of_a_folder_with_a_dev_zero_link_fails_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    bundle = tmp_path / "evil"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    os.symlink("/dev/zero", bundle / "sae.safetensors")
    assert main(["models", "import", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "member sae.safetensors is a symbolic link (to /dev/zero)" in err
    assert not (tmp_path / "data" / "models" / "bundle").exists()
