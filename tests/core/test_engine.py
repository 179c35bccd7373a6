"""The Analyzer: loading, image geometry, sliding windows, odd and huge images, the Analysis value."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insight_desktop.core.concepts.bundle import BundleIncompatibleError
from insight_desktop.core.engine import (
    CPU_NOTICE,
    NO_BACKGROUND_NOTICE,
    NO_THRESHOLD_NOTICE,
    Analysis,
    AnalysisStopped,
    Analyzer,
    analysis_size,
)

from .fakes import PatchColourBackbone, TextColourBackbone, lossless_sae, random_sae, write_test_bundle


@pytest.fixture
def colour_analyzer(tmp_path):
    bb = TextColourBackbone(d=8, background=True)
    return Analyzer(write_test_bundle(tmp_path / "m", bb, random_sae(8, 32, k=3)), backbone=bb, device="cpu")


def blocks(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An image of random coloured 40-px blocks."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (-(-h // 40), -(-w // 40), 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 40, 0), 40, 1)[:h, :w])


def test_analysis_size_rule():
    assert analysis_size(448, 448) == (448, 448)
    assert analysis_size(300, 400) == (448, 597)          # short side to the window
    assert analysis_size(4000, 3000) == (597, 448)        # big images shrink
    assert analysis_size(1, 1) == (448, 448)              # tiny ones grow
    assert analysis_size(17, 300) == (102, 1792)          # long side capped at 4 windows
    assert analysis_size(1, 100_000) == (1, 1792)
    with pytest.raises(ValueError):
        analysis_size(0, 5)


def test_single_window_image_equals_one_backbone_pass(tmp_path, tiny_backbone):
    sae = random_sae(tiny_backbone.feature_dim, 64, k=4, threshold=0.02)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", tiny_backbone, sae), backbone=tiny_backbone, device="cpu")
    rgb = blocks(448, 448)
    analysis = analyzer.analyze(rgb)
    assert analysis.windows == 1 and analysis.grid == (28, 28) and analysis.analysis_size == (448, 448)
    with torch.inference_mode():
        x = tiny_backbone.dense_features(tiny_backbone.preprocessing.to_tensor(rgb, mode="full")[None])[0]
        z = sae.encode(x.flatten(1).T)
    np.testing.assert_allclose(analysis.codes.dense(), z.numpy(), atol=1e-5)


def test_overlapping_windows_average_their_features(tmp_path, tiny_backbone):
    """With a lossless SAE the codes decode to the features: each patch must hold the mean of the
    features every window that covers it gave it."""
    d = tiny_backbone.feature_dim
    sae = lossless_sae(d)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", tiny_backbone, sae), backbone=tiny_backbone, device="cpu")
    rgb = blocks(448, 672, seed=1)                       # windows at x = 0, 224 (stride 224, width 448)
    analysis = analyzer.analyze(rgb)
    assert analysis.windows == 2 and analysis.grid == (28, 42)
    full = tiny_backbone.preprocessing.to_tensor(rgb, mode="full")[None]
    with torch.inference_mode():
        left = tiny_backbone.dense_features(full[..., :448])[0]
        right = tiny_backbone.dense_features(full[..., 224:])[0]
    expected = torch.zeros(d, 28, 42)
    expected[..., :14] = left[..., :14]
    expected[..., 14:28] = (left[..., 14:] + right[..., :14]) / 2
    expected[..., 28:] = right[..., 14:]
    decoded = (analysis.codes.dense() @ sae.W_dec.detach().numpy()).T.reshape(d, 28, 42)
    np.testing.assert_allclose(decoded, expected.numpy(), atol=1e-5)


def test_sliding_windows_match_a_single_pass_for_local_features(tmp_path):
    """Patch features that depend only on the patch: windows must stitch to the whole-image pass."""
    bb = TextColourBackbone(d=8)
    sae = random_sae(8, 32, k=3)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", bb, sae), backbone=bb, device="cpu")
    rgb = blocks(448, 1000, seed=2)
    analysis = analyzer.analyze(rgb)
    assert analysis.windows == 4 and analysis.grid == (28, 63)
    with torch.inference_mode():
        x = bb.dense_features(bb.preprocessing.to_tensor(rgb, mode="full")[None])[0]
        z = sae.encode(x.flatten(1).T)
    np.testing.assert_allclose(analysis.codes.dense(), z.numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 300, 3), (300, 17, 3), (50, 70)])
def test_odd_images(colour_analyzer, shape):
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    analysis = colour_analyzer.analyze(rgb, ["red", "blue", "green"], background=True)
    assert analysis.image_size == shape[:2]
    seg = analysis.segmentation
    assert seg.labels.shape == shape[:2] == seg.max_probability.shape
    assert sum(s.pixels for s in seg.segments) == shape[0] * shape[1]
    j = analysis.concepts[0].concept
    shown = analysis.display_map(j)
    assert shown.shape == shape[:2] and shown.max() == pytest.approx(1.0) and shown.min() >= 0
    assert analysis.classification.logits.shape == (3,)


def test_greyscale_arrays_are_accepted_and_equal_their_rgb_version(colour_analyzer):
    grey = blocks(64, 96)[..., 0]
    a = colour_analyzer.analyze(grey)
    b = colour_analyzer.analyze(np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(a.codes.dense(), b.codes.dense())
    with pytest.raises(ValueError, match="uint8"):
        colour_analyzer.analyze(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        colour_analyzer.analyze(np.zeros((8, 8, 4), np.uint8))


def test_huge_image_uses_bounded_memory(colour_analyzer):
    rgb = np.zeros((4000, 3000, 3), np.uint8)
    rgb[:2000] = (255, 255, 0)               # bright colours: FOUND does not call them background
    rgb[2000:, :1500] = (0, 255, 255)
    rgb[2000:, 1500:] = (255, 0, 255)
    classes = ["yellow", "cyan", "magenta", "red"]
    colour_analyzer.analyze(rgb[:64, :64], classes)  # caches (text embeddings, imports) outside the measurement
    tracemalloc.start()
    try:
        analysis = colour_analyzer.analyze(rgb, classes, background=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seg = analysis.segmentation
    assert seg.labels.shape == (4000, 3000) and analysis.grid == (38, 28)
    # The results alone take 72 MB (two uint8 label maps, one float32 probability map); one
    # full-resolution float32 [C, H, W] logit array would take 192 MB, an [m, H, W] code array 1.5 GB.
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert seg.labels[1000, 1500] == 0 and seg.labels[3000, 700] == 1 and seg.labels[3000, 2300] == 2


def test_analysis_is_an_immutable_numpy_value(colour_analyzer):
    analysis = colour_analyzer.analyze(blocks(100, 150), ["red", "blue"], background=True)
    seen = set()

    def walk(value, where):
        if id(value) in seen:
            return
        seen.add(id(value))
        assert not isinstance(value, torch.Tensor), f"{where} is a torch tensor"
        if isinstance(value, np.ndarray):
            assert not value.flags.writeable, f"{where} is writeable"
        elif dataclasses.is_dataclass(value):
            assert type(value).__dataclass_params__.frozen, f"{where} is not frozen"
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f"{where}.{f.name}")
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(analysis, "analysis")
    assert isinstance(analysis, Analysis)
    with pytest.raises(TypeError):
        analysis.timings["x"] = 1.0
    assert set(analysis.timings) >= {"backbone", "sae", "segmentation", "classification"}


def test_concepts_are_ranked_with_levels_and_parents_and_named_by_the_model(colour_analyzer):
    from insight_desktop.core.concepts.names import NameBook

    analysis = colour_analyzer.analyze(blocks(120, 160))
    names = NameBook(colour_analyzer.model.names)  # the analysis holds ids; names are looked up
    acts = [c.activation for c in analysis.concepts]
    assert acts == sorted(acts, reverse=True) and acts[-1] > 0
    rel = colour_analyzer.model.relations
    for c in analysis.concepts:
        assert c.activation == pytest.approx(float(analysis.concept_map(c.concept).max()))
        assert c.patches == int(np.count_nonzero(analysis.concept_map(c.concept)))
        assert names.name(c.concept) == f"c{c.concept}" and c.level == rel.level[c.concept]
        assert c.parents == tuple(rel.parents_of(c.concept))
    assert {c.concept for c in analysis.concepts} == set(analysis.codes.active_concepts().tolist())
    assert analysis.segmentation is None and analysis.classification is None


def test_display_map_is_squared_upsampled_and_normalised(colour_analyzer):
    analysis = colour_analyzer.analyze(blocks(448, 448))
    j = analysis.concepts[0].concept
    m = analysis.concept_map(j)
    expected = F.interpolate(torch.from_numpy(m * m)[None, None], size=(448, 448), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(analysis.display_map(j), expected / expected.max(), atol=1e-5)
    assert analysis.display_map(j, (100, 120)).shape == (100, 120)


def test_faithfulness(tmp_path, colour_analyzer):
    lossy = colour_analyzer.analyze(blocks(64, 64)).faithfulness
    assert lossy.fvu > 0 and -1 <= lossy.cosine < 1 and lossy.residual.shape == (28, 28) and lossy.residual.max() > 0
    bb = TextColourBackbone(d=8)
    exact = Analyzer(write_test_bundle(tmp_path / "l", bb, lossless_sae(8)), backbone=bb, device="cpu")
    f = exact.analyze(blocks(64, 64)).faithfulness
    assert f.fvu < 1e-10 and f.cosine == pytest.approx(1.0, abs=1e-6) and f.residual.max() < 1e-5


def test_loading_checks_and_notices(tmp_path, tiny_backbone):
    path = write_test_bundle(tmp_path / "m", tiny_backbone, random_sae(tiny_backbone.feature_dim, 64))
    built = Analyzer(path, device="cpu")                       # backbone created from the manifest's spec
    assert built.backbone.id == tiny_backbone.id and CPU_NOTICE not in built.notices
    if not torch.cuda.is_available():
        assert CPU_NOTICE in Analyzer(path, backbone=tiny_backbone).notices
    with pytest.raises(BundleIncompatibleError):
        Analyzer(path, backbone=PatchColourBackbone(d=tiny_backbone.feature_dim))
    plain = TextColourBackbone(d=8)                             # no FOUND head
    analyzer = Analyzer(write_test_bundle(tmp_path / "p", plain, random_sae(8, 16)), backbone=plain, device="cpu")
    analysis = analyzer.analyze(blocks(40, 40), ["a", "b"], background=True, classify=False)
    assert NO_BACKGROUND_NOTICE in analysis.notices and analysis.segmentation.background_label is None
    assert NO_THRESHOLD_NOTICE not in analysis.notices


def test_an_sae_without_threshold_is_marked_in_every_analysis(tmp_path):
    """θ < 0 (never estimated): the model loads, and every analysis and the catalog say so."""
    bb = TextColourBackbone(d=8)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", bb, random_sae(8, 16, threshold=-1.0)), backbone=bb,
                        device="cpu")
    assert NO_THRESHOLD_NOTICE in analyzer.notices and NO_THRESHOLD_NOTICE in analyzer.catalog().notices
    assert NO_THRESHOLD_NOTICE in analyzer.analyze(blocks(40, 40), classify=False).notices


def test_stopping_and_bad_windows(colour_analyzer):
    with pytest.raises(AnalysisStopped):
        colour_analyzer.analyze(blocks(64, 64), should_stop=lambda: True)
    with pytest.raises(ValueError, match="multiples of the patch"):
        colour_analyzer.analyze(blocks(64, 64), window=450)
    with pytest.raises(ValueError, match="stride"):
        colour_analyzer.analyze(blocks(64, 64), window=224, stride=448)


def test_image_paths_are_loaded(tmp_path, colour_analyzer):
    from PIL import Image

    Image.fromarray(blocks(50, 80)).save(tmp_path / "x.png")
    analysis = colour_analyzer.analyze(tmp_path / "x.png")
    assert analysis.image_size == (50, 80)


# -- window modes: "fast" (features averaged) and "reference" (per-window probabilities averaged) ----


def _count_windows(bb):
    """Wrap ``bb.dense`` to record every window's pixel content it is given."""
    seen = []
    dense = bb.dense

    def counting(images):
        seen.extend(images.clone())
        return dense(images)

    bb.dense = counting
    return seen


def test_window_mode_is_recorded_described_and_checked(colour_analyzer):
    rgb = blocks(448, 700)
    ref = colour_analyzer.analyze(rgb, ["red", "blue"], window_mode="reference")
    fast = colour_analyzer.analyze(rgb, ["red", "blue"])
    assert (ref.window_mode, ref.segmentation.window_mode) == ("reference", "reference")
    assert (fast.window_mode, fast.segmentation.window_mode) == ("fast", "fast")
    assert ref.windows == fast.windows == 3
    assert fast.window_description == "fast (features averaged over 3 overlapping windows, encoded once)"
    assert ref.window_description.startswith("reference (segmentation: each of 3 windows encoded separately")
    # Without classes nothing is segmented: the concept maps come from the fast path either way.
    assert colour_analyzer.analyze(rgb, window_mode="reference").window_mode == "fast"
    assert colour_analyzer.analyze(blocks(448, 448), window_mode="reference").window_description.startswith("fast (one")
    with pytest.raises(ValueError, match="window mode"):
        colour_analyzer.analyze(rgb, ["red"], window_mode="slow")


def test_reference_mode_places_windows_flush_with_the_image_and_runs_shared_ones_once(tmp_path):
    """448×700: the fast path's windows lie on the canvas padded to 704 (x = 0, 224, 256), the
    reference's on the image itself (x = 0, 224, 252, the last one without padding). The two at
    x = 0 and 224 are the same pixels and run once: 4 backbone windows for both modes together."""
    bb = TextColourBackbone(d=8, background=True)
    analyzer = Analyzer(write_test_bundle(tmp_path / "m", bb, random_sae(8, 32, k=3)), backbone=bb, device="cpu")
    rgb = blocks(448, 700, seed=4)
    seen = _count_windows(bb)
    analysis = analyzer.analyze(rgb, ["red", "blue"], background=True, window_mode="reference")
    assert len(seen) == 4
    normalised = bb.preprocessing.to_tensor(rgb, mode="full")
    last = bb.preprocessing.to_tensor(rgb[:, 252:], mode="full")
    assert any(torch.equal(w, last) for w in seen) and any(torch.equal(w, normalised[:, :, 256:]) for w in seen)
    seen.clear()
    alone = analyzer.segment_windows(rgb, ["red", "blue"], background=True)
    assert len(seen) == 3 and alone.windows == 3
    np.testing.assert_array_equal(alone.labels, analysis.segmentation.labels)
    np.testing.assert_array_equal(alone.opaque_labels, analysis.segmentation.opaque_labels)


def test_reference_mode_explanations_add_up_over_its_segments(colour_analyzer):
    seg = colour_analyzer.analyze(blocks(300, 700, seed=6), ["red", "green", "blue"], background=True,
                                  window_mode="reference").segmentation
    counts = np.bincount(seg.labels.ravel(), minlength=len(seg.class_names))
    assert {s.label: s.pixels for s in seg.segments} == {i: int(n) for i, n in enumerate(counts) if n}
    for s in seg.segments:
        if s.label != seg.background_label:
            assert sum(c.value for c in s.contributions) + s.bias == pytest.approx(s.logit_sum, rel=1e-6, abs=1e-4)


def test_reference_mode_stops_between_windows_and_reports_progress(colour_analyzer):
    rgb = blocks(448, 1792)  # 7 windows: two backbone calls of at most 4
    calls = []
    with pytest.raises(AnalysisStopped):
        colour_analyzer.segment_windows(rgb, ["red"], should_stop=lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2  # checked before each backbone call: the first ran, the second was refused
    seen = []
    colour_analyzer.analyze(rgb, ["red", "blue"], window_mode="reference", progress=lambda s, f: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0
    seen.clear()
    colour_analyzer.segment_windows(rgb, ["red"], progress=lambda s, f: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_reference_mode_on_a_huge_image_uses_bounded_memory(colour_analyzer):
    rgb = np.zeros((4000, 3000, 3), np.uint8)
    rgb[:2000] = (255, 255, 0)
    rgb[2000:, :1500] = (0, 255, 255)
    rgb[2000:, 1500:] = (255, 0, 255)
    classes = ["yellow", "cyan", "magenta", "red"]
    colour_analyzer.analyze(rgb[:64, :64], classes, window_mode="reference")  # caches outside the measurement
    tracemalloc.start()
    try:
        analysis = colour_analyzer.analyze(rgb, classes, background=True, window_mode="reference")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seg = analysis.segmentation
    # As for the fast path: 72 MB of results; the per-window labels are shared, not copied.
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert seg.labels[1000, 1500] == 0 and seg.labels[3000, 700] == 1 and seg.labels[3000, 2300] == 2
