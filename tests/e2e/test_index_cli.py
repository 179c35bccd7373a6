"""`insight index` and `insight search` on a tiny folder and the tiny open_clip model."""

from __future__ import annotations

import json

import pytest

from insight_desktop.cli import main
from tests.core.fakes import random_sae, write_block_photos, write_test_bundle


@pytest.fixture
def bundle(tmp_path, tiny_backbone):
    return write_test_bundle(tmp_path / "model.zip", tiny_backbone, random_sae(tiny_backbone.feature_dim, 64, k=4))


@pytest.fixture
def photos(tmp_path):
    write_block_photos(tmp_path / "photos" / "healthy", 3, seed=1)
    write_block_photos(tmp_path / "photos" / "diseased", 3, seed=2)
    return tmp_path / "photos"


def test_index_then_search(tmp_path, bundle, photos, capsys, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    assert main(["index", str(photos), "--model", str(bundle), "-q", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "6 images: 6 analysed, 0 unchanged" in out
    (index,) = (tmp_path / "data" / "indexes").glob("*.sqlite")
    assert str(index) in out
    assert main(["index", str(photos), "--model", str(bundle), "-q", "--device", "cpu"]) == 0
    assert "6 images: 0 analysed, 6 unchanged" in capsys.readouterr().out

    # the folder finds its one index; JSON for a concept that fires somewhere
    assert main(["search", str(photos), "--contrast", "healthy", "diseased", "--json"]) == 0
    contrast = json.loads(capsys.readouterr().out)
    assert (contrast["images_a"], contrast["images_b"]) == (3, 3)
    concept = (contrast["toward_a"] + contrast["toward_b"])[0]["concept"]
    assert main(["search", str(index), "--concept", str(concept), "--json", "--top", "2"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["frequency"]["total"] == 6 and 1 <= len(found["images"]) <= 2 and found["patches"]
    assert {f["folder"] for f in found["frequency"]["per_folder"]} == {"healthy", "diseased"}

    # tables, with names from the model
    assert main(["search", str(photos), "--concept", str(concept), "--model", str(bundle)]) == 0
    table = capsys.readouterr().out
    assert f"concept {concept} c{concept}: fires in" in table and "top patches:" in table
    assert main(["search", str(photos), "--a-not-b", str(concept), "0"]) == 0
    assert "fires and 0 does not" in capsys.readouterr().out

    # text search goes through the model's names (and its text tower)
    assert main(["search", str(photos), f"c{concept}", "--model", str(bundle), "--json", "--device", "cpu"]) == 0
    text = json.loads(capsys.readouterr().out)
    assert text["concepts"][0]["concept"] == concept and text["concepts"][0]["why"] == "name"


def test_search_explains_what_is_missing(tmp_path, bundle, photos, capsys, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    assert main(["search", str(photos), "--concept", "1"]) == 2
    assert "has not been indexed: run insight index" in capsys.readouterr().err
    assert main(["search", str(photos), "--concept", "1", "--contrast", "a", "b"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert main(["search", str(photos), "some text"]) == 2
    assert "needs the concept model" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "nowhere"), "--model", str(bundle)]) == 2
