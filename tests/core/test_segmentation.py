"""Segmentation through concepts: exact upsampling, exact contributions, lossless = opaque, FOUND, class lists,
reference windows, and segmenting again from an Analysis alone (a concept switched off)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insight_desktop.core.engine import Analyzer
from insight_desktop.core.tasks import (
    ActiveDecoder,
    ClassListError,
    GridSampler,
    NeighbourGram,
    PatchCodes,
    SegmentationInputs,
    segment,
)
from insight_desktop.core.tasks.prompts import parse_class_list, read_class_file, validate_classes
from insight_desktop.core.tasks.segmentation import BACKGROUND_DELTA, _labels

from .fakes import TextColourBackbone, lossless_sae, random_sae, write_test_bundle


def torch_up(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Reference bilinear upsampling (align_corners=False), float64."""
    return F.interpolate(torch.from_numpy(np.asarray(maps, np.float64))[None], size=size, mode="bilinear",
                         align_corners=False)[0].numpy()


@pytest.mark.parametrize("grid,patch", [((3, 5), 16), ((1, 1), 8), ((1, 6), 4), ((7, 2), 8)])
def test_sampler_is_bilinear_upsampling_its_adjoint_and_exact_norms(grid, patch):
    rng = np.random.default_rng(0)
    h, w = grid
    out = (h * patch, w * patch)
    sampler = GridSampler.make(grid, out, (1 / patch, 1 / patch))
    maps = rng.standard_normal((3, h, w))
    np.testing.assert_allclose(sampler.upsample_full(maps, np.float64), torch_up(maps, out), atol=1e-12)
    u = rng.standard_normal((3, *out))
    assert np.isclose((sampler.upsample_full(maps, np.float64) * u).sum(), (maps * sampler.adjoint(u)).sum())
    # ‖upsampled vector‖² from the neighbour Gram, in small row blocks, equals the direct one
    vectors = rng.standard_normal((h, w, 6))
    hn = sampler.norm_sq_horizontal(NeighbourGram.of(vectors))
    blocks = [sampler.norm_sq(hn, rows) for rows in sampler.row_chunks(chunk_pixels=3 * out[1])]
    np.testing.assert_allclose(np.concatenate(blocks), (torch_up(vectors.transpose(2, 0, 1), out) ** 2).sum(0),
                               rtol=1e-10, atol=1e-12)


def test_sampler_maps_output_pixels_to_grid_coordinates():
    """A linear ramp is reproduced exactly by bilinear interpolation away from the borders, so it
    shows where each output pixel reads the grid: the analysed image (H' = 100 px, patch 16) fills
    the top of a 7-patch grid, and a 37-px-high output is that image resized."""
    grid, patch, analysed, out = (7, 3), 16, (100, 40), (37, 29)
    sampler = GridSampler.make(grid, out, (analysed[0] / (out[0] * patch), analysed[1] / (out[1] * patch)))
    ramp = np.broadcast_to(np.arange(7.0)[:, None], grid)[None]
    up = sampler.upsample_full(ramp, np.float64)[0]
    src = (np.arange(out[0]) + 0.5) * analysed[0] / out[0] / patch - 0.5   # grid row read by output row y
    inside = (src >= 0) & (src <= 6)
    np.testing.assert_allclose(up[inside, 0], src[inside], atol=1e-12)
    assert up[-1, 0] < 100 / 16 - 0.5 + 1e-9, "the grid's padding rows below the image are never reached"


@pytest.fixture
def planted():
    """Codes of a random lossy SAE on random grid features, and everything needed to check them."""
    rng = np.random.default_rng(3)
    h, w, d, m, patch = 5, 7, 6, 24, 8
    sae = random_sae(d, m, k=3, seed=1, threshold=0.1)
    x = torch.from_numpy(rng.standard_normal((h * w, d)).astype(np.float32))
    with torch.inference_mode():
        z = sae.encode(x)
    codes = PatchCodes.from_dense(z, (h, w))
    active = codes.active_concepts()
    text = rng.standard_normal((3, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    W = sae.W_dec.detach().double().numpy()
    b = sae.b_dec.detach().double().numpy()
    # The analysed image is 3 px short of whole patches at the bottom: the grid covers padding.
    out = (h * patch - 3, w * patch)
    sampler = GridSampler.make((h, w), out, (1 / patch, 1 / patch))
    result = segment(SegmentationInputs(codes, ActiveDecoder(active, W[active], b), text, ("a", "b", "c"), sampler,
                                        features=x.numpy()))
    # Independent reference: upsample the dense codes with torch, decode, normalise, per pixel.
    z_up = torch_up(z.numpy().T.reshape(m, h, w), (h * patch, w * patch))[:, :out[0]]   # [m, H, W]
    x_hat_up = np.einsum("mhw,md->hwd", z_up, W) + b
    norm = np.linalg.norm(x_hat_up, axis=-1)
    logits = 100 * (x_hat_up @ text.T) / norm[..., None]                                 # [H, W, C]
    return dict(result=result, z_up=z_up, norm=norm, logits=logits, W=W, b=b, text=text, x=x.numpy(), h=h, w=w,
                patch=patch, out=out)


def test_labels_follow_the_per_pixel_reference(planted):
    result, logits = planted["result"], planted["logits"]
    assert result.labels.shape == planted["out"] and result.labels.dtype == np.uint8
    np.testing.assert_array_equal(result.labels, logits.argmax(-1))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(result.max_probability, (p / p.sum(-1, keepdims=True)).max(-1), atol=1e-5)


def test_pixel_contributions_are_exact(planted):
    result, logits, z_up, norm = planted["result"], planted["logits"], planted["z_up"], planted["norm"]
    S = planted["W"] @ planted["text"].T
    for y, x in [(0, 0), (17, 23), (planted["out"][0] - 1, planted["out"][1] - 1), (5, 40)]:
        for c in range(3):
            e = result.explain_pixel(y, x, c)
            total = sum(k.value for k in e.contributions) + e.bias
            assert e.logit == pytest.approx(logits[y, x, c], abs=1e-4)
            assert total == pytest.approx(logits[y, x, c], abs=1e-4)
            assert e.bias == pytest.approx(100 * planted["b"] @ planted["text"][c] / norm[y, x], abs=1e-5)
            for k in e.contributions:
                assert k.value == pytest.approx(100 * z_up[k.concept, y, x] * S[k.concept, c] / norm[y, x], abs=1e-5)
        assert result.explain_pixel(y, x).class_index == result.labels[y, x]
        cmap = result.contribution_map(result.concepts[0], 1)
        assert cmap[y, x] == pytest.approx(100 * z_up[result.concepts[0], y, x] * S[result.concepts[0], 1] / norm[y, x],
                                           abs=1e-4)


def test_segment_contributions_are_exact_sums_over_pixels(planted):
    result, logits, z_up, norm = planted["result"], planted["logits"], planted["z_up"], planted["norm"]
    S = planted["W"] @ planted["text"].T
    assert sum(s.pixels for s in result.segments) == result.labels.size
    assert len(result.segments) >= 2
    for s in result.segments:
        mask = result.labels == s.label
        reference = logits[..., s.label][mask].sum()
        assert s.logit_sum == pytest.approx(reference, rel=1e-5)
        assert sum(c.value for c in s.contributions) + s.bias == pytest.approx(s.logit_sum, rel=1e-6, abs=1e-4)
        assert s.bias == pytest.approx((100 * planted["b"] @ planted["text"][s.label] / norm[mask]).sum(), rel=1e-5)
        per_concept = {c.concept: c.value for c in s.contributions}
        for j in result.concepts:
            expected = (100 * z_up[j][mask] * S[j, s.label] / norm[mask]).sum()
            assert per_concept.get(int(j), 0.0) == pytest.approx(expected, rel=1e-5, abs=1e-4)
        values = [c.value for c in s.contributions]
        assert values == sorted(values, reverse=True)


def test_lossless_sae_gives_the_opaque_segmentation(tmp_path, tiny_backbone):
    sae = lossless_sae(tiny_backbone.feature_dim, b_dec=0.1 * torch.arange(tiny_backbone.feature_dim))
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", tiny_backbone, sae), backbone=tiny_backbone, device="cpu")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (300, 420, 3), dtype=np.uint8)
    rgb[:, :200] = (200, 40, 30)
    analysis = analyzer.analyze(rgb, ["cat", "tree", "sky", "road"], background=True)
    seg = analysis.segmentation
    assert analysis.faithfulness.fvu < 1e-10 and analysis.faithfulness.cosine == pytest.approx(1.0)
    np.testing.assert_array_equal(seg.labels, seg.opaque_labels)
    assert seg.agreement == 1.0
    assert len({s.label for s in seg.segments}) >= 2


def test_found_background_rule(tmp_path):
    """A dark purple exactly between "red" and "blue" (probability ≈ ½ each < δ) where FOUND says
    background: background there; bright red is confident: red."""
    bb = TextColourBackbone(d=8, background=True)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", bb, lossless_sae(8)), backbone=bb, device="cpu")
    rgb = np.zeros((96, 160, 3), np.uint8)
    rgb[:, :80] = (250, 0, 0)
    a, b = 1 / bb.proj[0].norm().item(), 1 / bb.proj[2].norm().item()  # equal cosine to red and to blue
    rgb[:, 80:] = np.rint(np.array([a, 0, b]) * 60 / max(a, b))
    seg = analyzer.analyze(rgb, ["red", "blue"], background=True).segmentation
    assert seg.class_names == ("red", "blue", "background") and seg.background_label == 2
    assert (seg.labels[:, :70] == 0).all() and (seg.labels[:, 90:] == 2).all()
    assert seg.segment(2).contributions == () and seg.segment(2).pixels >= 96 * 70
    without = analyzer.analyze(rgb, ["red", "blue"]).segmentation
    assert without.background_label is None and set(np.unique(without.labels)) <= {0, 1}


def test_background_label_needs_both_conditions():
    logits = np.array([[[10.0, 0.0]], [[0.0, 0.0]]])  # [C=2, 1, 2]: the first pixel is certain, the second a tie
    bg = np.array([[True, True]])
    label, prob = _labels(logits, bg, BACKGROUND_DELTA, 2)
    assert label.tolist() == [[0, 2]] and prob[0, 0] > BACKGROUND_DELTA
    label, _ = _labels(logits, np.array([[False, False]]), BACKGROUND_DELTA, 2)
    assert label.tolist() == [[0, 0]]


def test_bad_class_lists_give_clear_errors(tmp_path):
    for bad, match in [([], "empty"), (["cat", " "], "blank"), (["Cat", "cat"], "twice"), (["dog", "dog"], "twice")]:
        with pytest.raises(ClassListError, match=match):
            validate_classes(bad)
    assert issubclass(ClassListError, ValueError)
    with pytest.raises(ClassListError, match="blank"):
        parse_class_list("cat,,dog")
    with pytest.raises(ClassListError, match="one string"):
        validate_classes("cat")
    assert parse_class_list(" cat , dog") == ("cat", "dog")
    assert read_class_file("# animals\ncat\n\n dog \n") == ("cat", "dog")
    bb = TextColourBackbone(d=8)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", bb, lossless_sae(8)), backbone=bb, device="cpu")
    with pytest.raises(ClassListError, match="twice"):
        analyzer.analyze(np.zeros((32, 32, 3), np.uint8), ["red", "RED"])
    assert bb.calls == 0 and bb.text_calls == 0, "a bad class list must fail before any model work"


def test_text_embeddings_are_cached_per_class(tmp_path):
    bb = TextColourBackbone(d=8)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", bb, lossless_sae(8)), backbone=bb, device="cpu",
                        prompt_cache=False)  # the in-memory cache alone (the disk's: test_prompt_cache.py)
    first = analyzer.text_embeddings(["red", "green"])
    assert bb.text_calls == 1 and first.shape == (2, 8) and not first.flags.writeable
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    analyzer.text_embeddings(["green", "red"])
    assert bb.text_calls == 1
    analyzer.text_embeddings(["green", "blue"])
    assert bb.text_calls == 2  # only "blue" was new


# -- reference sliding windows: per-window probabilities averaged (docs/method.md §6) -----------


def test_one_window_over_the_whole_grid_equals_the_one_grid_segmentation(planted):
    """A single window covering the analysed image reads its grid exactly where segment() does,
    so labels and opaque labels are identical and the max probability agrees to float32 rounding."""
    from insight_desktop.core.tasks import WindowScores, window_segmentation

    p, result = planted, planted["result"]
    h, w, d = p["h"], p["w"], p["x"].shape[1]
    x_hat = result.codes.dense() @ p["W"] + p["b"]
    scores = WindowScores.of((0, 0, *p["out"]), x_hat.reshape(h, w, d), p["x"].reshape(h, w, d), p["text"])
    win = window_segmentation([scores], ["a", "b", "c"], p["out"], p["out"], p["patch"])
    assert win.window_mode == "reference" and win.windows == 1 and win.background_label is None
    np.testing.assert_array_equal(win.labels, result.labels)
    np.testing.assert_array_equal(win.opaque_labels, result.opaque_labels)
    np.testing.assert_allclose(win.max_probability, result.max_probability, atol=1e-5)
    assert not win.labels.flags.writeable and not win.max_probability.flags.writeable


def _window(box, vector, text, background_logit):
    """A window whose 1×2 grid holds the same vector everywhere (so its probabilities are constant)."""
    from insight_desktop.core.tasks import WindowScores

    v = np.broadcast_to(np.asarray(vector, np.float64), (1, 2, len(vector)))
    return WindowScores.of(box, v, v, text, np.full((1, 2), background_logit))


def test_overlapping_windows_average_probabilities_and_apply_found_per_window():
    """Two 16×32 windows overlapping on 16 columns of a 16×48 image (patch 16). Window A points
    half-way between classes 0 and 1 (p ≈ ½, ½) and FOUND calls it background; window B points at
    class 1 and is foreground. A alone: background; B alone: class 1; the overlap averages: class
    probabilities (p_A + p_B)/2 ≈ (¼, ¾) and background (1 + 0)/2 = ½ → class 1."""
    from insight_desktop.core.tasks import window_segmentation
    from insight_desktop.core.tasks.windows import probabilities

    text = np.eye(3)[:2, :]                                     # t_0 = e_0, t_1 = e_1 in d = 3
    a = _window((0, 0, 16, 32), [1.0, 1.0, 0.2], text, -1.0)
    b = _window((0, 16, 16, 48), [0.1, 1.0, 0.0], text, 2.0)
    win = window_segmentation([a, b], ["zero", "one"], (16, 48), (16, 48), 16, background=True)
    assert win.class_names == ("zero", "one", "background") and win.background_label == 2
    p_a = probabilities(100 * text @ np.array([1.0, 1.0, 0.2]) / np.linalg.norm([1.0, 1.0, 0.2]))
    p_b = probabilities(100 * text @ np.array([0.1, 1.0, 0.0]) / np.linalg.norm([0.1, 1.0, 0.0]))
    assert p_a.max() < BACKGROUND_DELTA < p_b.max()
    assert (win.labels[:, :16] == 2).all() and (win.labels[:, 32:] == 1).all() and (win.labels[:, 16:32] == 1).all()
    np.testing.assert_allclose(win.max_probability[:, :16], p_a.max(), rtol=1e-5)
    np.testing.assert_allclose(win.max_probability[:, 16:32], ((p_a + p_b) / 2).max(), rtol=1e-5)
    np.testing.assert_allclose(win.max_probability[:, 32:], p_b.max(), rtol=1e-5)
    # Without FOUND the overlap is the plain average of the two windows' probabilities.
    plain = window_segmentation([a, b], ["zero", "one"], (16, 48), (16, 48), 16)
    assert plain.background_label is None and (plain.labels[:, :16] == np.argmax(p_a)).all()


def test_windows_are_read_at_the_output_pixels_of_a_resized_image():
    """The analysed image (16×48) is shown at 8×24: output pixel x covers analysed x' = 2x + 1,
    so window A (x' < 32) owns x < 16 and window B (x' ≥ 16) owns x ≥ 8."""
    from insight_desktop.core.tasks import window_segmentation

    text = np.eye(3)[:2, :]
    a = _window((0, 0, 16, 32), [1.0, 0.0, 0.0], text, 1.0)
    b = _window((0, 16, 16, 48), [0.0, 1.0, 0.0], text, 1.0)
    win = window_segmentation([a, b], ["zero", "one"], (16, 48), (8, 24), 16)
    np.testing.assert_allclose(win.max_probability[:, :8], 1.0, atol=1e-6)
    np.testing.assert_allclose(win.max_probability[:, 8:16], 0.5, atol=1e-6)   # a tie: averaged halves
    assert (win.labels[:, :8] == 0).all() and (win.labels[:, 16:] == 1).all()


def test_given_labels_must_match_the_image():
    from insight_desktop.core.tasks import window_segmentation

    rng = np.random.default_rng(0)
    text = np.eye(4)[:2]
    v = rng.standard_normal((2, 3, 4))
    codes = PatchCodes.from_dense(np.abs(rng.standard_normal((6, 4))), (2, 3))
    sampler = GridSampler.make((2, 3), (32, 48), (1 / 16, 1 / 16))
    given = window_segmentation([_window_scores_of(v, text)], ["a", "b"], (32, 48), (30, 48), 16)
    with pytest.raises(ValueError, match="do not match"):
        decoder = ActiveDecoder(np.arange(4), np.eye(4), np.zeros(4))
        segment(SegmentationInputs(codes, decoder, text, ("a", "b"), sampler, features=v.reshape(6, 4)), given=given)


def _window_scores_of(v, text):
    from insight_desktop.core.tasks import WindowScores

    return WindowScores.of((0, 0, 32, 48), v, v, text)


# -- what a change of active concepts needs, kept in the Analysis ------------------------------------


@pytest.fixture
def analysed(tmp_path):
    """An analysis (lossy SAE with a decoder bias, FOUND background, three overlapping windows) and
    the SAE's parameters; the analyzer and its model are closed before the tests read it."""
    bb = TextColourBackbone(d=8, background=True)
    sae = random_sae(8, 32, k=3, seed=5)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", bb, sae), backbone=bb, device="cpu")
    rng = np.random.default_rng(7)
    rgb = np.ascontiguousarray(np.repeat(np.repeat(rng.integers(0, 256, (3, 5, 3), dtype=np.uint8), 40, 0), 40, 1))
    analysis = analyzer.analyze(rgb, ["red", "green", "blue"], background=True)
    analyzer.close()
    return analysis, sae.W_dec.detach().numpy().copy(), sae.b_dec.detach().numpy().copy()


def test_segmentation_is_recomputed_from_the_analysis_alone(analysed):
    """The Analysis keeps the active concepts' decoder rows, b_dec and the class embeddings, read-only:
    segmenting again from it alone gives the analyzer's labels, probabilities and explanations."""
    analysis, W_dec, b_dec = analysed
    decoder, seg = analysis.decoder, analysis.segmentation
    assert analysis.windows == 3 and seg.background_label == 3
    np.testing.assert_array_equal(decoder.concepts, analysis.codes.active_concepts())
    np.testing.assert_array_equal(decoder.rows, W_dec[decoder.concepts])
    np.testing.assert_array_equal(decoder.bias, b_dec)
    assert analysis.class_embeddings.shape == (3, 8)
    for kept in (decoder.concepts, decoder.rows, decoder.bias, analysis.class_embeddings):
        assert not kept.flags.writeable
    again = segment(analysis.segmentation_inputs())
    np.testing.assert_array_equal(again.labels, seg.labels)
    np.testing.assert_array_equal(again.max_probability, seg.max_probability)
    np.testing.assert_array_equal(again.opaque_labels, seg.opaque_labels)
    assert again.class_names == seg.class_names == ("red", "green", "blue", "background")
    assert [(s.label, s.pixels, s.logit_sum, s.bias) for s in again.segments] == \
        [(s.label, s.pixels, s.logit_sum, s.bias) for s in seg.segments]
    assert [[(c.concept, c.value) for c in s.contributions] for s in again.segments] == \
        [[(c.concept, c.value) for c in s.contributions] for s in seg.segments]


def test_switching_a_concept_off_removes_exactly_its_contribution(analysed):
    """With z_j = 0 the numerator ⟨x̂(p), t_c⟩ of every logit loses exactly z_j(p)·S_jc, so the new
    logit is (old logit − j's contribution) · ‖x̂(p)‖ / ‖x̂'(p)‖, and every other term is rescaled
    by the same factor; labels change only where j fires."""
    from insight_desktop.core.tasks import without_concepts

    analysis, _, _ = analysed
    seg = analysis.segmentation
    largest = max((s for s in seg.segments if s.label != seg.background_label), key=lambda s: s.pixels)
    j = largest.contributions[0].concept                      # what speaks most for the largest segment
    off_codes = without_concepts(analysis.codes, [j])
    assert j not in off_codes.active_concepts() and off_codes.nnz == analysis.codes.nnz - analysis.concept(j).patches
    off = segment(analysis.segmentation_inputs(off_codes))

    def norms(codes):  # ‖x̂(p)‖ at every pixel, upsampling x̂ directly (independent of the Gram formula)
        x_hat = analysis.decoder.decode(codes).T.reshape(8, *codes.grid)
        return np.linalg.norm(seg.sampler.upsample_full(x_hat, np.float64), axis=0)

    on_norm, off_norm = norms(analysis.codes), norms(off_codes)
    fires = analysis.display_map(j) > 0
    ys, xs = np.nonzero(fires)
    for y, x in list(zip(ys, xs))[::max(1, ys.size // 12)]:
        for c in range(3):
            before, after = seg.explain_pixel(y, x, c), off.explain_pixel(y, x, c)
            terms = {k.concept: k.value for k in before.contributions}
            scale = on_norm[y, x] / off_norm[y, x]
            assert j in terms and j not in {k.concept for k in after.contributions}
            assert after.logit == pytest.approx(scale * (before.logit - terms[j]), rel=1e-9, abs=1e-9)
            assert after.bias == pytest.approx(scale * before.bias, rel=1e-9, abs=1e-12)
            for k in after.contributions:
                assert k.value == pytest.approx(scale * terms[k.concept], rel=1e-9, abs=1e-12)
    changed = off.labels != seg.labels
    assert changed.any() and not (changed & ~fires).any()
    np.testing.assert_array_equal(off.opaque_labels, seg.opaque_labels)   # the opaque path has no concepts
