"""Classification through concepts: exact zero-shot contributions, planted classes, the sparse probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image

from insight_desktop.core.concepts.bundle import BundleIntegrityError, ConceptModel, add_probe
from insight_desktop.core.engine import Analyzer
from insight_desktop.core.tasks import fit_probe, probe_classify, stratified_split, train_probe, zero_shot
from insight_desktop.core.tasks.probe import ProbeError

from .fakes import COLOUR_WORDS, TextColourBackbone, lossless_sae, random_sae, write_test_bundle


def noisy(colour, rng, shape=(48, 64)) -> np.ndarray:
    base = np.array(colour, dtype=np.float64) * 220 + 20
    return np.clip(base + rng.normal(0, 8, (*shape, 3)), 0, 255).astype(np.uint8)


def test_zero_shot_contributions_are_exact():
    rng = np.random.default_rng(0)
    d, n, C = 6, 9, 4
    W = rng.standard_normal((n, d))
    b = rng.standard_normal(d)
    text = rng.standard_normal((C, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    concepts = rng.choice(100, n, replace=False)
    acts = rng.random(n).astype(np.float32) + 0.1
    feature = rng.standard_normal(d)
    order = np.argsort(concepts)  # zero_shot sorts concepts; give rows in the same (sorted) order
    r = zero_shot(concepts[order], acts[order], W, b, text, list("abcd"), opaque_features=feature)
    x_hat = acts[order].astype(np.float64) @ W + b
    expected = 100 * text @ x_hat / np.linalg.norm(x_hat)
    np.testing.assert_allclose(r.logits, expected, rtol=1e-10)
    np.testing.assert_allclose(r.contributions.sum(1) + r.bias, r.logits, rtol=1e-12)
    for c in range(C):
        e = r.explain(c)
        assert sum(k.value for k in e.contributions) + e.bias == pytest.approx(e.logit, abs=1e-9)
        assert [k.value for k in e.contributions] == sorted((k.value for k in e.contributions), reverse=True)
    np.testing.assert_allclose(r.opaque_logits, 100 * text @ feature / np.linalg.norm(feature))
    assert r.probabilities.sum() == pytest.approx(1.0) and not r.logits.flags.writeable


def test_probe_classify_contributions_are_exact():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((3, 20)) * (rng.random((3, 20)) < 0.3)
    r = probe_classify(W, ["x", "y", "z"], [3, 7, 11], [1.0, 0.5, 2.0])
    z = np.zeros(20)
    z[[3, 7, 11]] = [1.0, 0.5, 2.0]
    np.testing.assert_allclose(r.logits, W @ z)
    e = r.explain()
    assert e.bias == 0 and sum(k.value for k in e.contributions) == pytest.approx(e.logit)
    for k in e.contributions:
        assert k.value == pytest.approx(W[e.class_index, k.concept] * z[k.concept])


@pytest.fixture
def colour_model(tmp_path):
    bb = TextColourBackbone(d=8, crop=64)
    return bb, write_test_bundle(tmp_path / "m", bb, lossless_sae(8))


def test_zero_shot_recovers_planted_classes(colour_model):
    bb, path = colour_model
    analyzer = Analyzer(path, backbone=bb, device="cpu")
    rng = np.random.default_rng(0)
    classes = list(COLOUR_WORDS)
    images = [noisy(COLOUR_WORDS[c], rng) for c in classes for _ in range(2)]
    truth = [i for i in range(len(classes)) for _ in range(2)]
    for label, pooled in zip(truth, analyzer.pooled(images)):
        r = analyzer.zero_shot(pooled, classes)
        assert r.predicted == label and r.opaque_predicted == label
        why = r.explain()
        assert sum(k.value for k in why.contributions) + why.bias == pytest.approx(why.logit, abs=1e-6)
    analysis = analyzer.analyze(images[4], classes)  # whole-image path, max-pooled over the grid
    assert analysis.classification.predicted_name == classes[truth[4]]
    assert analysis.probe is None


def planted_probe_data(n_per_class=40, m=60, seed=0):
    """Class c ⇔ concept 10 + 7c fires (strongly); every image also has 4 random noise concepts."""
    rng = np.random.default_rng(seed)
    rows, y = [], []
    for c in range(3):
        for _ in range(n_per_class):
            z = np.zeros(m)
            z[rng.choice(m, 4, replace=False)] = rng.uniform(0, 1.5, 4)
            z[10 + 7 * c] = rng.uniform(1.0, 2.0)
            rows.append(z)
            y.append(c)
    return sp.csr_matrix(np.array(rows)), np.array(y)


def test_probe_recovers_a_planted_rule_and_chooses_lambda_on_the_held_out_split():
    Z, y = planted_probe_data()
    fit = fit_probe(Z, y, ["a", "b", "c"], seed=0)
    assert fit.W.shape == (3, 60) and not fit.W.flags.writeable
    for c in range(3):
        assert int(np.argmax(fit.W[c])) == 10 + 7 * c
    assert fit.nnz < fit.W.size / 3, "L1 must make the probe sparse"
    Z_new, y_new = planted_probe_data(seed=1)
    assert np.mean(np.argmax(Z_new @ fit.W.T, axis=1) == y_new) >= 0.95
    # λ: the first (largest) of the best held-out accuracies along the path
    best = np.flatnonzero(fit.heldout_accuracy == fit.heldout_accuracy.max())[0]
    assert fit.lam == fit.lambdas[best] and np.all(np.diff(fit.lambdas) < 0)
    # the held-out split: stratified 20 %, disjoint from the training images, seeded
    assert np.intersect1d(fit.train_index, fit.heldout_index).size == 0
    assert fit.train_index.size + fit.heldout_index.size == y.size
    assert np.bincount(y[fit.heldout_index]).tolist() == [8, 8, 8]
    again = fit_probe(Z, y, ["a", "b", "c"], seed=0)
    np.testing.assert_array_equal(again.W, fit.W)
    assert not np.array_equal(stratified_split(y, 0.2, 1)[1], fit.heldout_index)
    fixed = fit_probe(Z, y, ["a", "b", "c"], lam=fit.lam)
    np.testing.assert_allclose(fixed.W, fit.W, atol=1e-6)


def test_a_huge_lambda_gives_an_empty_probe_and_bad_inputs_fail_clearly():
    Z, y = planted_probe_data(n_per_class=5)
    assert fit_probe(Z, y, ["a", "b", "c"], lam=1e9).nnz == 0
    with pytest.raises(ProbeError, match="at least two classes"):
        fit_probe(Z, np.zeros(15, int), ["a"])
    with pytest.raises(ProbeError, match="labels"):
        fit_probe(Z, y[:-1], ["a", "b", "c"])
    with pytest.raises(ProbeError, match="two images"):
        fit_probe(Z[:3], np.array([0, 1, 2]), ["a", "b", "c"])


@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_train_probe_on_a_folder_and_store_it_in_the_bundle(tmp_path, name):
    bb = TextColourBackbone(d=8, crop=64)
    path = write_test_bundle(tmp_path / name, bb, lossless_sae(8))
    rng = np.random.default_rng(0)
    classes = ["blue", "green", "red"]
    for c in classes:
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(noisy(COLOUR_WORDS[c], rng)).save(tmp_path / "train" / c / f"{i}.png")
    (tmp_path / "train" / "red" / "broken.png").write_bytes(b"not an image")
    analyzer = Analyzer(path, backbone=bb, device="cpu")
    fit = train_probe(tmp_path / "train", analyzer, seed=0)
    assert fit.class_names == tuple(classes) and fit.train_accuracy == 1.0
    assert fit.extra["skipped"] == 1 and fit.extra["images"] == 18
    analyzer.close()

    add_probe(path, fit.W, fit.class_names, fit.metadata())
    model = ConceptModel.load(path)
    W, names = model.probe
    np.testing.assert_array_equal(W, fit.W)
    assert names == tuple(classes) and not W.flags.writeable
    assert "probe.safetensors" in model.manifest.files
    analysis = Analyzer(model, backbone=bb, device="cpu").analyze(noisy(COLOUR_WORDS["green"], rng))
    assert analysis.probe.predicted_name == "green"
    why = analysis.probe.explain()
    assert sum(k.value for k in why.contributions) == pytest.approx(why.logit)
    model.close()
    # replacing the probe keeps the bundle valid
    add_probe(path, np.zeros_like(fit.W), ["x", "y", "z"])
    assert ConceptModel.load(path).probe[1] == ("x", "y", "z")
    # the old (tuple) encoder form works too
    assert train_probe(tmp_path / "train", (bb, lossless_sae(8)), lam=fit.lam).nnz == fit.nnz


def test_add_probe_validates_and_the_hash_protects_it(tmp_path):
    bb = TextColourBackbone(d=8)
    path = write_test_bundle(tmp_path / "m", bb, random_sae(8, 16))
    assert ConceptModel.load(path).probe is None
    with pytest.raises(ValueError, match="shape"):
        add_probe(path, np.zeros((2, 15)), ["a", "b"])
    add_probe(path, np.ones((2, 16)), ["a", "b"], {"lambda": 0.1})
    assert json.loads((path / "manifest.json").read_text())["files"]["probe.safetensors"]
    data = bytearray((path / "probe.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "probe.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="probe.safetensors"):
        ConceptModel.load(path)
