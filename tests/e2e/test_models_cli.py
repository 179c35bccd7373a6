"""`insight models …` end to end: a temporary store, a test catalogue pointing at a local HTTP server."""

from __future__ import annotations

import json
import os
import signal

import pytest

from insight_desktop.cli import main
from insight_desktop.core.paths import demo_model_path
from insight_desktop.core.store import download
from tests.core.http_fixture import file_server  # noqa: F401 — the fixture

PAYLOAD_SIZE = 400_000


@pytest.fixture
def env(tmp_path, monkeypatch, file_server, tiny_model_files):  # noqa: F811
    """A store in tmp and a catalogue with one downloadable CLIP-DINOiser-format file (tiny heads + padding)."""
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    heads = tiny_model_files.dinoiser_path.read_bytes()
    url = file_server.put("checkpoints/last.pt", heads)
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps([
        {"id": "heads", "kind": "dinoiser", "title": "Tiny heads", "source": {"url": url}, "licence": "test"},
        {"id": "release", "kind": "sae-release", "title": "Release", "source": {"import": True},
         "notes": "get the files from the authors"}]))
    monkeypatch.setenv("INSIGHT_CATALOGUE", str(catalogue))
    return file_server, heads, tmp_path / "data" / "models"


def test_list_shows_the_demo_and_the_catalogue(env, capsys):
    assert main(["models", "list", "--available"]) == 0
    out = capsys.readouterr().out
    if demo_model_path() is not None:
        assert "demo" in out and "(bundled)" in out
    assert "heads" in out and "not installed: Tiny heads" in out
    assert "import only: Release" in out


def test_get_installs_once_and_lists_it(env, capsys):
    server, heads, root = env
    assert main(["models", "get", "heads", "-q"]) == 0
    out = capsys.readouterr().out
    assert str(root / "dinoiser" / "heads" / "last.pt") in out
    assert (root / "dinoiser" / "heads" / "last.pt").read_bytes() == heads
    assert main(["models", "get", "heads", "-q"]) == 0
    assert len(server.log) == 1  # the second get made no request
    assert main(["models", "list"]) == 0
    assert "heads" in capsys.readouterr().out
    assert main(["models", "verify", "heads"]) == 0


def test_interrupted_get_resumes(env, capsys):
    server, heads, root = env
    server.cut_after = 1000
    assert main(["models", "get", "heads", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "insight: error:" in err and "try again to resume" in err
    assert (root / "dinoiser" / "heads" / "last.pt.part").stat().st_size == 1000
    assert main(["models", "get", "heads", "-q"]) == 0
    assert server.requests_for("checkpoints/last.pt") == [None, "bytes=1000-"]


def test_ctrl_c_stops_cleanly_and_keeps_the_part(env, capsys, monkeypatch):
    server, heads, root = env
    server.put("checkpoints/last.pt", heads + b"\0" * PAYLOAD_SIZE)  # big enough for several chunks
    monkeypatch.setattr(download, "REPORT_EVERY", 0.0)
    sent = []

    def ctrl_c_once(p):
        if not sent:
            sent.append(p.done)
            os.kill(os.getpid(), signal.SIGINT)  # what a user's Ctrl+C does: the CLI's handler sets the stop flag

    from insight_desktop.core.store import ModelStore

    real_get = ModelStore.get

    def get(self, entry_id, *, progress=None, should_stop=None):
        def both(p):
            ctrl_c_once(p)
            progress(p)

        return real_get(self, entry_id, progress=both, should_stop=should_stop)

    monkeypatch.setattr(ModelStore, "get", get)
    assert main(["models", "get", "heads", "-q"]) == 130
    assert "stopped: download cancelled" in capsys.readouterr().err
    part = root / "dinoiser" / "heads" / "last.pt.part"
    assert 0 < part.stat().st_size < len(heads) + PAYLOAD_SIZE
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was restored


def test_import_remove_and_errors(env, tmp_path, tiny_model_files, capsys):
    assert main(["models", "import", str(tiny_model_files.dinoiser_path), "--title", "my heads"]) == 0
    assert "imported dinoiser-last (dinoiser)" in capsys.readouterr().out
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"nope")
    assert main(["models", "import", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("insight: error: junk.pt is not a readable checkpoint") and err.count("\n") == 1
    assert main(["models", "remove", "dinoiser-last"]) == 2  # not a terminal: needs --yes
    assert "add --yes" in capsys.readouterr().err
    assert main(["models", "remove", "dinoiser-last", "--yes"]) == 0
    assert main(["models", "remove", "dinoiser-last", "--yes"]) == 2
    assert "is not installed" in capsys.readouterr().err
    if demo_model_path() is not None:
        assert main(["models", "remove", "demo", "--yes"]) == 2
        assert "cannot be removed" in capsys.readouterr().err
    assert main(["models", "get", "release"]) == 2
    assert "get the files from the authors" in capsys.readouterr().err
    assert main(["models", "get", "nope"]) == 2
    assert "no model 'nope' in the catalogue" in capsys.readouterr().err


def test_import_release(env, tmp_path, capsys):
    import numpy as np
    import torch

    m, d = 8, 4
    w = torch.nn.functional.normalize(torch.randn(m, d), dim=1)
    torch.save({"W_enc": w.t().clone(), "b_enc": torch.zeros(m), "W_dec": w, "b_dec": torch.zeros(d),
                "k": torch.tensor(2), "threshold": torch.tensor(0.1), "group_sizes": torch.tensor([2, 6])},
               tmp_path / "ae.pt")
    (tmp_path / "names.json").write_text(json.dumps([f"n{i}" for i in range(m)]))
    np.save(tmp_path / "D.npy", np.eye(m, dtype=np.float32))
    assert main(["models", "import-release", "--sae", str(tmp_path / "ae.pt"), "--names",
                 str(tmp_path / "names.json"), "--d", str(tmp_path / "D.npy"), "--id", "mine"]) == 0
    assert "imported mine (concept model)" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert "mine" in capsys.readouterr().out
