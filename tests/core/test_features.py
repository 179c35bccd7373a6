"""Token store: exact contents, provenance of every token, resume, failures, batching."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from insight_desktop.core.features import FeatureStoreError, TokenStore, extract_features

from .fakes import PatchColourBackbone


def make_folder(root, n=5, size=64, seed=0):
    """n images with a distinct random 4×4 block pattern each (exactly 16-px patches)."""
    rng = np.random.default_rng(seed)
    images = {}
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        blocks = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        rgb = np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))
        path = root / ("sub" if i % 2 else ".") / f"img{i}.png"
        Image.fromarray(rgb).save(path)
        images[path.resolve().relative_to(root.resolve()).as_posix()] = rgb
    (root / "notes.txt").write_text("not an image")
    return images


def test_store_holds_exact_features_with_provenance(tmp_path):
    images = make_folder(tmp_path / "imgs")
    bb = PatchColourBackbone()
    summary = extract_features(tmp_path / "imgs", tmp_path / "store", bb, dtype="float32", batch_size=2,
                               shard_tokens=40)
    assert summary.images == 5 and summary.tokens == 5 * 16 and not summary.failed
    store = TokenStore(tmp_path / "store")
    assert store.n_tokens == 80 and store.d == 8 and store.n_images == 5
    assert len(store.manifest["shards"]) >= 2  # shard_tokens=40 forces several shards
    for i, rec in enumerate(store.images):
        np.testing.assert_allclose(store.image_tokens(i), bb.expected(images[rec["path"]]), atol=1e-5)
        idx = store.image_index(i)
        assert (idx[:, 0] == i).all()
        np.testing.assert_array_equal(idx[:, 1], np.repeat(np.arange(4), 4))  # patch rows
        np.testing.assert_array_equal(idx[:, 2], np.tile(np.arange(4), 4))  # patch columns
        assert store.image_path(i).resolve() == (tmp_path / "imgs" / rec["path"]).resolve()
    # global token ids (store order) map back to (image, row, col)
    all_index = np.concatenate([store.image_index(i) for i in range(store.n_images)])
    np.testing.assert_array_equal(store.locate(np.arange(store.n_tokens)), all_index)


def test_float16_store_is_half_the_size_and_close(tmp_path):
    make_folder(tmp_path / "imgs", n=2)
    bb = PatchColourBackbone()
    extract_features(tmp_path / "imgs", tmp_path / "s16", bb, dtype="float16")
    extract_features(tmp_path / "imgs", tmp_path / "s32", bb, dtype="float32")
    a, b = TokenStore(tmp_path / "s16"), TokenStore(tmp_path / "s32")
    assert a._tokens[0].dtype == np.float16 and b._tokens[0].dtype == np.float32
    np.testing.assert_allclose(a.image_tokens(0).astype(np.float32), b.image_tokens(0), rtol=2e-3, atol=2e-3)


def test_interrupted_extraction_resumes_without_redoing_work(tmp_path):
    images = make_folder(tmp_path / "imgs", n=6)
    bb = PatchColourBackbone()
    calls = {"n": 0}

    def stop_after_two_batches():
        calls["n"] += 1
        return calls["n"] > 2

    first = extract_features(tmp_path / "imgs", tmp_path / "store", bb, batch_size=2,
                             should_stop=stop_after_two_batches, dtype="float32")
    assert first.stopped_early and first.images == 4
    bb2 = PatchColourBackbone()
    second = extract_features(tmp_path / "imgs", tmp_path / "store", bb2, batch_size=2, dtype="float32")
    assert not second.stopped_early and second.skipped_existing == 4 and second.images == 6
    assert bb2.calls == 1  # only the two missing images were computed
    store = TokenStore(tmp_path / "store")
    assert sorted(r["path"] for r in store.images) == sorted(images)
    for i, rec in enumerate(store.images):
        np.testing.assert_allclose(store.image_tokens(i), bb.expected(images[rec["path"]]), atol=1e-5)


def test_crash_mid_shard_leaves_a_consistent_store(tmp_path):
    make_folder(tmp_path / "imgs", n=4)
    bb = PatchColourBackbone()

    class Boom(RuntimeError):
        pass

    def crash(p):
        if p.done >= 3:
            raise Boom

    with pytest.raises(Boom):
        extract_features(tmp_path / "imgs", tmp_path / "store", bb, batch_size=1, shard_tokens=32, on_progress=crash)
    store = TokenStore(tmp_path / "store")  # still opens: only committed shards are listed
    assert store.n_images == 3
    assert extract_features(tmp_path / "imgs", tmp_path / "store", bb).images == 4


def test_unreadable_images_are_reported_not_fatal(tmp_path):
    make_folder(tmp_path / "imgs", n=3)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    summary = extract_features(tmp_path / "imgs", tmp_path / "store", PatchColourBackbone())
    assert summary.images == 3
    assert [f[0] for f in summary.failed] == ["broken.png"]
    assert TokenStore(tmp_path / "store").manifest["failed"][0][0] == "broken.png"


def test_mismatched_resume_and_damage_give_clear_errors(tmp_path):
    make_folder(tmp_path / "imgs", n=2)
    extract_features(tmp_path / "imgs", tmp_path / "store", PatchColourBackbone(d=8))
    with pytest.raises(FeatureStoreError, match="d = 4|feature_dim"):
        extract_features(tmp_path / "imgs", tmp_path / "store", PatchColourBackbone(d=4))
    with pytest.raises(FeatureStoreError, match="backbone"):
        extract_features(tmp_path / "imgs", tmp_path / "store", PatchColourBackbone(d=8, seed=1))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(FeatureStoreError, match="not empty"):
        extract_features(tmp_path / "imgs", tmp_path / "other", PatchColourBackbone())
    # a truncated shard is detected on opening
    shard = tmp_path / "store" / "shard-00000.tokens.npy"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(FeatureStoreError, match="shard 0"):
        TokenStore(tmp_path / "store")
    manifest = tmp_path / "store" / "store.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(FeatureStoreError, match="newer"):
        TokenStore(tmp_path / "store")
    with pytest.raises(FeatureStoreError, match="not a token store"):
        TokenStore(tmp_path / "imgs")


def test_batches_are_whole_images_shuffled_by_image_and_deterministic(tmp_path):
    make_folder(tmp_path / "imgs", n=6)
    extract_features(tmp_path / "imgs", tmp_path / "store", PatchColourBackbone(), dtype="float32")
    store = TokenStore(tmp_path / "store")
    batches = list(store.iter_batches(40, epoch=0, seed=3))
    assert len(batches) == store.num_batches(40) == 2  # 3 images (48 tokens) ≥ 40 closes a batch
    assert all(b.shape[0] % 16 == 0 and b.dtype == np.float32 for b in batches)
    assert sum(b.shape[0] for b in batches) == store.n_tokens
    all_tokens = np.concatenate(batches)
    every_image = np.concatenate([store.image_tokens(i) for i in range(6)])
    assert len(np.unique(all_tokens, axis=0)) == len(np.unique(every_image, axis=0))
    again = list(store.iter_batches(40, epoch=0, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other_epoch = list(store.iter_batches(40, epoch=1, seed=3))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other_epoch))
    skipped = list(store.iter_batches(40, epoch=0, seed=3, skip=1))
    assert len(skipped) == 1 and np.array_equal(skipped[0], batches[1])


def test_full_mode_keeps_aspect_and_pads(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.full((40, 100, 3), 200, np.uint8)).save(tmp_path / "imgs" / "wide.png")
    extract_features(tmp_path / "imgs", tmp_path / "store", PatchColourBackbone(), mode="full", size=64)
    store = TokenStore(tmp_path / "store")
    # long side 100 → 64, short side 40 → 26; padded to 32 × 64 → grid 2 × 4
    assert store.images[0]["grid"] == [2, 4]
