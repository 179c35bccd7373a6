"""Concept-model bundles: lossless round trips (folder and zip), and one specific error per defect."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

from insight_desktop.core.concepts.bundle import (
    BundleError,
    BundleIncompatibleError,
    BundleIntegrityError,
    BundleMissingPartError,
    BundleVersionError,
    ConceptModel,
    write_bundle,
)
from insight_desktop.core.concepts.codes import SparseCodes
from insight_desktop.core.concepts.compute import compute_relations_from_codes
from insight_desktop.core.concepts.naming import ConceptNames, NameCandidate
from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig

M, D = 12, 6


@pytest.fixture
def parts():
    torch.manual_seed(0)
    sae = MatryoshkaSAE(SAEConfig(d_in=D, n_concepts=M, k=2, group_sizes=(4, 8)))
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
        sae.threshold.fill_(0.25)
    rng = np.random.default_rng(0)
    z = rng.random((200, M)) * (rng.random((200, M)) < 0.3)
    z[:, 1] = np.where(z[:, 0] > 0, 0.5, z[:, 1])  # concept 1 fires wherever 0 does: a parent edge
    relations = compute_relations_from_codes([(SparseCodes.from_dense(z), np.arange(200))], M, (4, 12))
    names = ConceptNames(names=tuple(f"word{i}" for i in range(M)),
                         candidates=tuple((NameCandidate(f"word{i}", "noun", "english", 0.5),
                                           NameCandidate(f"alt{i}", "adjective", "english", 0.4)) for i in range(M)),
                         method="hierarchy")
    backbone = {"id": "test-backbone/abc", "spec": {"name": "test", "options": {}}, "feature_dim": D}
    thumbs = {0: b"\xff\xd8jpeg0", 5: b"\xff\xd8jpeg5"}
    return dict(backbone=backbone, sae=sae, relations=relations, names=names, thumbnails=thumbs,
                provenance={"images": 3, "tokens": 200, "command": "test"})


def assert_same(model: ConceptModel, p) -> None:
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert torch.equal(getattr(model.sae, name), getattr(p["sae"], name)), name
    a, meta_a = model.relations.to_arrays()
    b, meta_b = p["relations"].to_arrays()
    assert meta_a == meta_b and a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert model.relations.parents_of(0) == p["relations"].parents_of(0) == [1]
    assert model.names == p["names"]
    assert model.thumbnail(5) == b"\xff\xd8jpeg5" and model.thumbnail(3) is None
    assert model.manifest.thresholds == {"sae_threshold": 0.25, "tau": 0.75, "eps": 0.001}
    assert model.manifest.provenance["tokens"] == 200


@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_round_trip_is_lossless(tmp_path, parts, name):
    out = write_bundle(tmp_path / name, **parts)
    assert out.is_file() == name.endswith(".zip")
    assert_same(ConceptModel.load(out), parts)


def test_zip_of_a_bundle_folder_loads_too(tmp_path, parts):
    folder = write_bundle(tmp_path / "model", **parts)
    archive = shutil.make_archive(str(tmp_path / "packed"), "zip", root_dir=tmp_path, base_dir="model")
    assert_same(ConceptModel.load(archive), parts)
    assert not list(tmp_path.glob(".model*")), "no temporary folders left behind"
    assert folder.exists()


def test_existing_output_is_not_overwritten_silently(tmp_path, parts):
    write_bundle(tmp_path / "model", **parts)
    with pytest.raises(FileExistsError):
        write_bundle(tmp_path / "model", **parts)
    write_bundle(tmp_path / "model", overwrite=True, **parts)
    assert_same(ConceptModel.load(tmp_path / "model"), parts)


def _edit_manifest(path, change):
    data = json.loads((path / "manifest.json").read_text())
    change(data)
    (path / "manifest.json").write_text(json.dumps(data))


def test_each_defect_gets_its_specific_error(tmp_path, parts):
    def fresh(name):
        return write_bundle(tmp_path / name, **parts)

    with pytest.raises(BundleMissingPartError, match="does not exist"):
        ConceptModel.load(tmp_path / "nothing")

    p = fresh("no-sae")
    (p / "sae.safetensors").unlink()
    with pytest.raises(BundleMissingPartError, match="sae.safetensors"):
        ConceptModel.load(p)

    p = fresh("no-manifest")
    (p / "manifest.json").unlink()
    with pytest.raises(BundleMissingPartError, match="manifest.json"):
        ConceptModel.load(p)

    p = fresh("newer")
    _edit_manifest(p, lambda d: d.update(format_version=99))
    with pytest.raises(BundleVersionError, match="newer"):
        ConceptModel.load(p)

    p = fresh("not-ours")
    _edit_manifest(p, lambda d: d.update(format="something-else"))
    with pytest.raises(BundleError, match="not an Insight concept model"):
        ConceptModel.load(p)

    p = fresh("tampered")
    data = bytearray((p / "relations.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (p / "relations.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="relations.safetensors.*hash"):
        ConceptModel.load(p)

    p = fresh("truncated")
    sae_bytes = (p / "sae.safetensors").read_bytes()[:50]
    (p / "sae.safetensors").write_bytes(sae_bytes)
    with pytest.raises(BundleIntegrityError):
        ConceptModel.load(p)

    p = fresh("width")
    _edit_manifest(p, lambda d: d["backbone"].update(feature_dim=D + 1))
    with pytest.raises(BundleIncompatibleError, match=f"{D}-dim.*{D + 1}-dim"):
        ConceptModel.load(p)

    p = fresh("names")
    names = json.loads((p / "names.json").read_text())
    names["concepts"] = names["concepts"][:-1]
    (p / "names.json").write_text(json.dumps(names))
    with pytest.raises(BundleError, match="names"):
        ConceptModel.load(p)

    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(BundleIntegrityError, match="zip"):
        ConceptModel.load(bad_zip)

    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w"):
        pass
    with pytest.raises(BundleMissingPartError, match="manifest.json"):
        ConceptModel.load(empty_zip)


def test_backbone_check(tmp_path, parts):
    model = ConceptModel.load(write_bundle(tmp_path / "m", **parts))

    class Backbone:
        feature_dim, id = D, "test-backbone/abc"

    model.check_backbone(Backbone())
    Backbone.id = "test-backbone/other-weights"
    with pytest.raises(BundleIncompatibleError, match="other-weights"):
        model.check_backbone(Backbone())
    Backbone.feature_dim, Backbone.id = D + 2, "test-backbone/abc"
    with pytest.raises(BundleIncompatibleError, match="dim"):
        model.check_backbone(Backbone())
