"""What if: concepts switched off (z_j = 0) recomputed from an Analysis alone, in both modes
("concepts only", "concepts + residual"); the Matryoshka level prefix against an independently
truncated SAE; subtrees; deletion curves (core/tasks/deletion.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from insight_desktop.core.engine import Analyzer
from insight_desktop.core.tasks import ActiveDecoder, PatchCodes, SegmentationInputs, segment, zero_shot
from insight_desktop.core.tasks.deletion import (
    CLASSIFICATION,
    RANDOM,
    SEGMENTATION,
    DeletionCurve,
    Target,
    area_between,
    deletion_curve,
)
from insight_desktop.core.tasks.whatif import (
    CONCEPTS_AND_RESIDUAL,
    CONCEPTS_ONLY,
    level_curve,
    level_prefix,
    mean_iou,
    subtree,
    switch_off,
)

from .fakes import TextColourBackbone, write_test_bundle

GROUPS = (4, 8, 20)  # three Matryoshka levels: prefix ends 4, 12, 32


def three_level_sae(d=8, seed=5):
    """A lossy SAE with random weights, a decoder bias and three levels."""
    from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig

    sae = MatryoshkaSAE(SAEConfig(d_in=d, n_concepts=sum(GROUPS), k=3, group_sizes=GROUPS))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.reset_parameters(g)
        sae.b_enc.copy_(0.05 * torch.randn(sae.config.n_concepts, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(d, generator=g))
        sae.threshold.fill_(0.05)
    return sae


def blocks(seed=7):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(np.repeat(np.repeat(rng.integers(0, 256, (3, 5, 3), dtype=np.uint8), 40, 0), 40, 1))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    sae = three_level_sae()
    return write_test_bundle(tmp_path_factory.mktemp("whatif") / "m", TextColourBackbone(d=8), sae), sae


def analyse(model, background=False, seed=7):
    path, _ = model
    bb = TextColourBackbone(d=8, background=background)
    analyzer = Analyzer(path, backbone=bb, device="cpu", prompt_cache=False)
    try:
        return analyzer.analyze(blocks(seed), ["red", "green", "blue"], background=background)
    finally:
        analyzer.close()


@pytest.fixture(scope="module")
def analysis(model):
    return analyse(model)


@pytest.fixture(scope="module")
def with_background(model):
    return analyse(model, background=True)


def test_nothing_switched_off_gives_the_original_in_both_modes(analysis, with_background):
    """Concepts only: the Analysis' own concept-path labels and logits, exactly. Concepts + residual:
    x̂ + (x − x̂) = x, the opaque path's prediction (to the float32 rounding of the stored residual),
    and after = before exactly."""
    for a in (analysis, with_background):
        only = switch_off(a, [], keep_residual=False)
        assert only.mode == CONCEPTS_ONLY and only.switched_off == ()
        np.testing.assert_array_equal(only.segmentation.labels_before, a.segmentation.labels)
        np.testing.assert_array_equal(only.segmentation.labels_after, a.segmentation.labels)
        np.testing.assert_array_equal(only.classification.logits_after, a.classification.logits)
        full = switch_off(a, [], keep_residual=True)
        assert full.mode == CONCEPTS_AND_RESIDUAL
        seg, cls = full.segmentation, full.classification
        np.testing.assert_array_equal(seg.labels_after, seg.labels_before)
        np.testing.assert_array_equal(seg.shares_after, seg.shares_before)
        np.testing.assert_array_equal(cls.logits_after, cls.logits_before)
        assert not seg.changed.any()
        np.testing.assert_array_equal(seg.labels_before, a.segmentation.opaque_labels)
        np.testing.assert_allclose(cls.logits_before, a.classification.opaque_logits, rtol=1e-5, atol=1e-5)
    assert with_background.segmentation.background_label == 3
    # the residual mode really differs from the concepts alone on this lossy SAE
    assert not np.array_equal(switch_off(analysis, [], keep_residual=True).classification.logits_before,
                              analysis.classification.logits)


@pytest.mark.parametrize("keep_residual", [False, True])
def test_switching_one_concept_off_changes_labels_only_where_it_fires(with_background, keep_residual):
    """The labels equal a full segmentation of the switched-off features (the fast path recomputes
    only the rows that read a changed patch), and change only where the concept fires."""
    a = with_background
    seg = a.segmentation
    largest = max((s for s in seg.segments if s.label != seg.background_label), key=lambda s: s.pixels)
    j = largest.contributions[0].concept
    result = switch_off(a, [j], keep_residual=keep_residual)
    assert j not in result.codes.active_concepts()
    if keep_residual:
        x = a.decoder.decode(result.codes) + a.faithfulness.residual_vectors
        reference = segment(SegmentationInputs(result.codes, a.decoder, a.class_embeddings, seg.class_names[:3],
                                               seg.sampler, features=x, background_logits=a.background_logits))
        expected = reference.opaque_labels
    else:
        expected = segment(a.segmentation_inputs(result.codes)).labels
    np.testing.assert_array_equal(result.segmentation.labels_after, expected)
    changed = result.segmentation.changed
    assert changed.any() and not (changed & ~(a.display_map(j) > 0)).any()
    shares = np.bincount(expected.ravel(), minlength=4) / expected.size
    np.testing.assert_allclose(result.segmentation.shares_after, shares)


def test_switching_off_a_segments_positive_contributors_changes_its_label(analysis):
    """Every pixel of green and of blue changes label once the concepts speaking for them are off.
    Red is the class the decoder bias itself favours (planted: ⟨b_dec, t_red⟩ > 0 > the others), so
    the bias alone can keep it: it is not asked of red."""
    seg = analysis.segmentation
    b = analysis.decoder.bias.astype(np.float64)
    bias_logits = analysis.class_embeddings @ b
    assert bias_logits[0] > 0 > max(bias_logits[1], bias_logits[2])
    assert {s.name for s in seg.segments} == {"red", "green", "blue"}
    for s in seg.segments:
        if s.name == "red":
            continue
        positive = [c.concept for c in s.contributions if c.value > 0]
        result = switch_off(analysis, positive).segmentation
        was = result.labels_before == s.label
        assert was.sum() == s.pixels > 0
        assert (result.labels_after[was] != s.label).all(), f"segment {s.name} kept pixels"
        assert result.shares_after[s.label] < result.shares_before[s.label]
        assert result.changed[was].all()


def test_switching_everything_off_leaves_the_bias_only(analysis):
    a = analysis
    result = switch_off(a, a.codes.active_concepts())
    assert result.codes.nnz == 0
    b = a.decoder.bias.astype(np.float64)
    np.testing.assert_array_equal(a.decoder.decode(result.codes), np.broadcast_to(b, (a.codes.n_patches, b.size)))
    text = a.class_embeddings.astype(np.float64)
    bias_logits = 100 * text @ b / np.linalg.norm(b)
    np.testing.assert_allclose(result.classification.logits_after, bias_logits, rtol=1e-12)
    labels = result.segmentation.labels_after
    assert (labels == np.argmax(bias_logits)).all()   # the same x̂ = b_dec at every pixel: one label
    assert result.segmentation.shares_after[np.argmax(bias_logits)] == 1.0


def test_switching_off_inactive_concepts_changes_nothing(analysis):
    inactive = sorted(set(range(sum(GROUPS))) - set(analysis.codes.active_concepts().tolist()))[:3]
    result = switch_off(analysis, inactive)
    assert result.switched_off == tuple(inactive)
    assert not result.segmentation.changed.any()
    np.testing.assert_array_equal(result.classification.logits_after, result.classification.logits_before)


def test_residual_mode_needs_the_residual_vectors(analysis):
    older = dataclasses.replace(analysis, faithfulness=dataclasses.replace(analysis.faithfulness,
                                                                            residual_vectors=None))
    with pytest.raises(ValueError, match="analyse the image again"):
        switch_off(older, [1], keep_residual=True)
    assert switch_off(older, [1]).mode == CONCEPTS_ONLY
    assert level_curve(older).fvu_against == "reconstruction"


def test_level_prefix_equals_an_independently_truncated_model(model, analysis):
    """Level L through a separate SAE whose dictionary is the first L groups (built here from the
    full SAE's parameters, decoded by torch): the same x̂, labels and classification."""
    from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig

    _, sae = model
    a = analysis
    z = torch.from_numpy(a.codes.dense())
    levels = sorted({c.level for c in a.concepts})
    assert levels == [1, 2, 3], "the planted image uses all three levels"
    for L in (1, 2, 3):
        end = sum(GROUPS[:L])
        small = MatryoshkaSAE(SAEConfig(d_in=8, n_concepts=end, k=3, group_sizes=GROUPS[:L]))
        with torch.no_grad():
            small.W_dec.copy_(sae.W_dec[:end])
            small.b_dec.copy_(sae.b_dec)
            x_small = small.decode(z[:, :end]).double().numpy()
            np.testing.assert_allclose(x_small, sae.prefix_reconstructions(z)[L - 1].double().numpy(), atol=1e-6)
        prefix = level_prefix(a, L)
        assert prefix.level == L and (prefix.codes.active_concepts() < end).all()
        np.testing.assert_allclose(a.decoder.decode(prefix.codes), x_small, atol=1e-5)
        # the truncated model's x̂ as the "raw features" of an independent segmentation
        small_codes = PatchCodes.from_dense(z[:, :end], a.grid)
        rows = small.W_dec.detach().numpy()[small_codes.active_concepts()]
        decoder = ActiveDecoder(small_codes.active_concepts(), rows, small.b_dec.detach().numpy())
        seg = a.segmentation
        independent = segment(SegmentationInputs(small_codes, decoder, a.class_embeddings, seg.class_names,
                                                 seg.sampler, features=x_small))
        np.testing.assert_array_equal(prefix.segmentation.labels, independent.opaque_labels)
        np.testing.assert_array_equal(prefix.segmentation.labels, independent.labels)
        ids, values = small_codes.pooled_max()
        cls = zero_shot(ids, values, rows[np.searchsorted(small_codes.active_concepts(), ids)],
                        small.b_dec.detach().numpy(), a.class_embeddings, seg.class_names)
        np.testing.assert_allclose(prefix.classification.logits, cls.logits, rtol=1e-6, atol=1e-6)
    full = level_prefix(a, 3)
    np.testing.assert_array_equal(full.segmentation.labels, a.segmentation.labels)


def test_level_curve_ends_at_the_full_model(analysis):
    curve = level_curve(analysis)
    assert curve.levels == (1, 2, 3) and curve.fvu_against == "features"
    assert curve.miou[-1] == 1.0
    assert curve.fvu[-1] == pytest.approx(analysis.faithfulness.fvu, rel=1e-5)
    for i, L in enumerate(curve.levels):
        assert curve.miou[i] == pytest.approx(mean_iou(level_prefix(analysis, L).segmentation.labels,
                                                       analysis.segmentation.labels))


def test_mean_iou_of_planted_maps():
    a = np.array([[0, 0, 1, 1]])
    b = np.array([[0, 1, 1, 1]])
    assert mean_iou(a, b) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mean_iou(a, a) == 1.0


class _Tree:
    def __init__(self, kids):
        self.kids = kids

    def children(self, j):
        return self.kids.get(j, [])


def test_subtree_from_a_catalog_and_from_a_model(model):
    from insight_desktop.core.concepts.bundle import ConceptModel

    assert subtree(_Tree({5: [6, 7], 6: [8], 9: [5]}), 5) == (5, 6, 7, 8)
    assert subtree(_Tree({}), 3) == (3,)
    m = ConceptModel.load(model[0])
    try:
        rel = m.relations
        parent = int(rel.display_parent[0])
        assert parent >= 0, "write_test_bundle plants a parent of concept 0"
        below = subtree(m, parent)
        assert {parent, 0} <= set(below) and below == subtree(rel, parent)
        assert all(j == parent or rel.display_parent[j] in below for j in below)
    finally:
        m.close()


def test_deletion_curves_follow_the_contributions(analysis):
    a = analysis
    c = a.classification.predicted
    target = Target(CLASSIFICATION, c)
    top = deletion_curve(a, target, steps=5)
    ranked = [k.concept for k in a.classification.explain(c).contributions]
    assert list(top.concepts) == ranked[:5]
    for k in range(6):
        assert top.values[k] == pytest.approx(switch_off(a, top.concepts[:k]).classification.logits_after[c])
    rnd = deletion_curve(a, target, order=RANDOM, steps=5, seeds=4, seed=1)
    assert rnd.seeds == 4 and rnd.values[0] == top.values[0]
    assert deletion_curve(a, target, order=RANDOM, steps=5, seeds=4, seed=1).values.tolist() == rnd.values.tolist()
    assert area_between(top, rnd) > 0
    largest = max(a.segmentation.segments, key=lambda s: s.pixels)
    seg_top = deletion_curve(a, Target(SEGMENTATION, largest.label), steps=4)
    assert seg_top.values[0] == pytest.approx(largest.pixels / a.segmentation.labels.size)
    assert seg_top.concepts[0] == largest.contributions[0].concept
    with pytest.raises(ValueError, match="order"):
        deletion_curve(a, target, order="sideways")


def test_area_between_planted_curves():
    t = Target(CLASSIFICATION, 0)
    top = DeletionCurve(t, "top", CONCEPTS_ONLY, (1, 2), np.array([1.0, 0.0, 0.0]))
    rnd = DeletionCurve(t, "random", CONCEPTS_ONLY, (2, 1), np.array([1.0, 1.0, 1.0]))
    assert area_between(top, rnd) == pytest.approx(0.75)  # trapezoids: (0 + 1)/2 · ½ + (1 + 1)/2 · ½
    assert area_between(rnd, top) == pytest.approx(-0.75)


def test_what_if_keeps_no_analysis_alive(analysis):
    """The per-Analysis baseline lives only as long as the Analysis (a viewer drops old ones)."""
    import gc
    import weakref

    copy = dataclasses.replace(analysis)
    first = switch_off(copy, [1], keep_residual=True)
    np.testing.assert_array_equal(switch_off(copy, [1], keep_residual=True).segmentation.labels_after,
                                  first.segmentation.labels_after)
    ref = weakref.ref(copy)
    del copy
    gc.collect()
    assert ref() is None
