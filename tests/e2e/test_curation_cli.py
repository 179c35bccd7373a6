"""`insight curation export|merge|stats`, and `insight analyze` naming concepts from a curation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from insight_desktop.cli import main
from insight_desktop.core.analysis_cache import model_identity
from insight_desktop.core.concepts.bundle import ConceptModel
from insight_desktop.core.curation import Curation, default_path, load_curation
from insight_desktop.core.curation.records import current_user
from tests.core.bundle_kit import tiny_members, write_zip
from tests.core.fakes import random_sae, write_test_bundle


def identity_of(bundle):
    model = ConceptModel.load(bundle, eager=False)
    try:
        return model_identity(model.manifest), model.n_concepts
    finally:
        model.close()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_analyze_names_concepts_from_the_curation(tmp_path, tiny_backbone, data_dir, capsys):
    bundle = write_test_bundle(tmp_path / "model.zip", tiny_backbone, random_sae(tiny_backbone.feature_dim, 64, k=4))
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[:, 64:] = (200, 40, 30)
    Image.fromarray(rgb).save(tmp_path / "a.png")

    def analyze(*extra):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        rc = main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--classes", "red,black", "--out",
                   str(out), "--top", "1", "-q", "--device", "cpu", "--no-cache", *extra])
        assert rc == 0, capsys.readouterr().err
        return json.loads((out / "a.json").read_text()), list(csv.DictReader(open(out / "a_concepts.csv")))

    plain, _ = analyze("--no-curation")
    top, second = plain["concepts"][0]["concept"], plain["concepts"][1]["concept"]
    assert plain["concepts"][0]["name"] == f"c{top}" and plain["concepts"][0]["status"] is None

    identity, n = identity_of(bundle)
    c = Curation(identity, n, user="alice")
    c.rename(top, "=red wall")
    c.reject([second])
    path = c.save(tmp_path / "alice.insight-curation.json")
    report, rows = analyze("--curation", str(path))
    assert (report["concepts"][0]["name"], report["concepts"][0]["status"]) == ("=red wall", "renamed")
    assert report["concepts"][1]["status"] == "rejected"
    assert report["concepts"][2]["status"] == "unreviewed"
    assert (rows[0]["name"], rows[0]["status"]) == ("'=red wall", "renamed")  # formula-escaped
    reasons = report["segmentation"]["segments"][0]["contributions"] + report["classification"]["explanation"][
        "contributions"]
    assert any(r["name"] == "=red wall" and r["status"] == "renamed" for r in reasons if r["concept"] == top)

    # without a flag: the user's own file for this model, if there is one
    c.save(default_path(identity, current_user()))
    report, _ = analyze()
    assert report["concepts"][0]["name"] == "=red wall"
    report, _ = analyze("--no-curation")
    assert report["concepts"][0]["name"] == f"c{top}"

    # a curation of another model, or a damaged file: a clear error, exit code 2
    other = Curation("ef" * 32, n, user="bob").save(tmp_path / "other.json")
    for bad in (other, tmp_path / "a.png"):
        rc = main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--out", str(tmp_path / "x"), "-q",
                   "--device", "cpu", "--curation", str(bad)])
        err = capsys.readouterr().err
        assert rc == 2 and "--curation:" in err and "Traceback" not in err
    # a damaged default file is reported and skipped
    default_path(identity, current_user()).write_text("{broken")
    rc = main(["analyze", str(tmp_path / "a.png"), "--model", str(bundle), "--out", str(tmp_path / "y"), "-q",
               "--device", "cpu", "--no-cache"])
    assert rc == 0 and "your curation of this model is not used" in capsys.readouterr().err
    assert json.loads((tmp_path / "y" / "a.json").read_text())["concepts"][0]["name"] == f"c{top}"


@pytest.fixture
def files(tmp_path):
    bundle = write_zip(tmp_path / "model.zip", tiny_members())
    identity, n = identity_of(bundle)
    alice, bob = Curation(identity, n, user="alice"), Curation(identity, n, user="bob")
    alice.accept([0, 1, 2, 3])
    alice.rename(4, "cup")
    alice.reject([5])
    bob.accept([0, 1, 2])
    bob.reject([3])             # conflict
    bob.rename(4, "mug")        # conflict
    bob.reject([5])
    bob.flag([6])               # only bob: merged
    return bundle, alice.save(tmp_path / "alice.json"), bob.save(tmp_path / "bob.json")


def test_stats_prints_progress_and_agreement(files, capsys):
    bundle, alice, bob = files
    assert main(["curation", "stats", str(alice)]) == 0
    assert f"alice ({alice}): 6 of 12 reviewed, 1 renamed, 1 rejected\n" == capsys.readouterr().out
    assert main(["curation", "stats", str(alice), str(bob), "--model", str(bundle)]) == 0
    out = capsys.readouterr().out
    # both reviewed 0–5: verdicts agree on 0, 1, 2, 4 (renamed = accepted), 5; differ on 3
    assert "6 of 12 reviewed, 1 renamed, 1 rejected" in out
    assert "7 of 12 reviewed, 1 renamed, 2 rejected, 1 flagged" in out
    assert "agreement on 6 concepts reviewed by both: 83.3 %" in out
    # κ by hand: A = (acc 5, rej 1), B = (acc 4, rej 2): p_o = 5/6, p_e = 5/6·4/6 + 1/6·2/6 = 22/36
    kappa = (5 / 6 - 22 / 36) / (1 - 22 / 36)
    assert f"Cohen's kappa {kappa:.4f}" in out


def test_merge_lists_conflicts_and_prefer_settles_them(files, tmp_path, capsys):
    bundle, alice, bob = files
    rc = main(["curation", "merge", str(alice), str(bob), "--out", str(tmp_path / "merged.json")])
    captured = capsys.readouterr()
    assert rc == 3 and "merged 1 concept(s) from bob" in captured.out
    assert "2 conflict(s), kept mine for now" in captured.out
    assert "concept 3: mine accepted | theirs rejected" in captured.out
    assert "concept 4: mine renamed 'cup' | theirs renamed 'mug'" in captured.out
    merged = load_curation(tmp_path / "merged.json")
    assert merged.status(6) == "flagged" and merged.review(4).name == "cup" and merged.user == "alice"
    assert load_curation(alice).status(6) == "unreviewed"        # --out: mine is untouched
    assert main(["curation", "merge", str(alice), str(bob), "--prefer", "theirs"]) == 0
    merged = load_curation(alice)                                # default: mine, replaced atomically
    assert merged.status(3) == "rejected" and merged.review(4).name == "mug" and merged.status(6) == "flagged"


def test_export_writes_verdicts_and_a_curated_bundle(files, tmp_path, capsys):
    bundle, alice, _ = files
    assert main(["curation", "export", str(alice), "--model", str(bundle), "--out", str(tmp_path / "v.csv"),
                 "--bundle", str(tmp_path / "curated.zip")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "v.csv")))
    assert rows[4]["name"] == "cup" and rows[4]["model_name"] == "word4" and rows[7]["status"] == "unreviewed"
    curated = ConceptModel.load(tmp_path / "curated.zip")
    try:
        assert curated.names.display_name(4) == "cup"
    finally:
        curated.close()
    assert main(["curation", "export", str(alice), "--out", str(tmp_path / "v.json"), "--reviewed-only"]) == 0
    assert len(json.loads((tmp_path / "v.json").read_text())["rows"]) == 6


def test_clear_errors_and_exit_codes(files, tmp_path, data_dir, capsys):
    bundle, alice, _ = files
    assert main(["curation", "export", str(alice)]) == 2
    assert "say what to write" in capsys.readouterr().err
    assert main(["curation", "export", str(alice), "--bundle", str(tmp_path / "b.zip")]) == 2
    assert "--bundle needs --model" in capsys.readouterr().err
    assert main(["curation", "stats", "--model", str(bundle)]) == 2
    assert "you have no curation of" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"format": "insight-curation", "version": 99}')
    assert main(["curation", "stats", str(tmp_path / "bad.json")]) == 1
    err = capsys.readouterr().err
    assert "newer Insight Desktop" in err and "Traceback" not in err
    other = Curation("ef" * 32, 12, user="bob").save(tmp_path / "other.json")
    assert main(["curation", "merge", str(alice), str(other)]) == 1
    assert "different concept models" in capsys.readouterr().err
    assert main(["curation", "stats", str(other), "--model", str(bundle)]) == 1
    assert "another concept model" in capsys.readouterr().err
    # your own file, found by --model
    identity, n = identity_of(bundle)
    load_curation(alice).save(default_path(identity, current_user()))
    assert main(["curation", "stats", "--model", str(bundle)]) == 0
    assert "6 of 12 reviewed" in capsys.readouterr().out
