"""Building on several processes (torchrun semantics): 2 gloo processes on CPU, started here with
``torch.multiprocessing.spawn``, against the single-process path run in the same test.

* the token store joined from 2 ranks' parts is the single-process store (same images, order,
  tokens, patch indices, unreadable files, batches);
* relations reduced from 2 ranks are the single-process pass's, array by array;
* a 2-rank build whose rank 1 dies during feature extraction resumes and gives the model the
  single-process path gives for the same store and SAE.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from insight_desktop.core.concepts.codes import SparseCodes
from insight_desktop.core.concepts.compute import compute_relations, compute_relations_from_codes
from insight_desktop.core.concepts.relations import Relations
from insight_desktop.core.distributed_build import merge_relations, relation_ranges, shard_bounds
from insight_desktop.core.features import TokenStore, extract_features
from tests.core.fakes import PatchColourBackbone, TextColourBackbone, random_sae, write_block_photos


# ----------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, job, args) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    from insight_desktop.core import dist

    ctx = dist.from_environment("cpu")
    try:
        job(ctx, *args)
    finally:
        dist.shutdown()


def run_ranks(job, *args, world: int = 2) -> None:
    """``job(ctx, *args)`` on ``world`` processes joined in one gloo group; raises when one fails."""
    torch.multiprocessing.spawn(_entry, args=(world, _free_port(), job, args), nprocs=world, join=True)


# ------------------------------------------------------------------------------- helpers
@pytest.fixture
def photos(tmp_path):
    folder = write_block_photos(tmp_path / "photos", 11, seed=3)
    (folder / "broken.png").write_bytes(b"not an image")  # an unreadable file in rank 0's share
    return folder


def assert_same_store(got: TokenStore, ref: TokenStore) -> None:
    assert got.n_images == ref.n_images and got.n_tokens == ref.n_tokens
    assert got.manifest["failed"] == ref.manifest["failed"] and got.manifest["source"] == ref.manifest["source"]
    for i in range(ref.n_images):
        assert {k: got.images[i][k] for k in ("path", "grid", "count")} == \
               {k: ref.images[i][k] for k in ("path", "grid", "count")}
        np.testing.assert_array_equal(got.image_tokens(i), ref.image_tokens(i))
        np.testing.assert_array_equal(got.image_index(i), ref.image_index(i))
    ids = np.arange(ref.n_tokens)
    np.testing.assert_array_equal(got.locate(ids), ref.locate(ids))
    for a, b in zip(got.iter_batches(40, epoch=1, seed=2), ref.iter_batches(40, epoch=1, seed=2), strict=True):
        np.testing.assert_array_equal(a, b)


def assert_same_relations(got: Relations, ref: Relations) -> None:
    """Identical, array by array. (D is summed in another order; float32 codes summed in float64
    are exact at these sizes, so the order cannot show: see core/distributed_build.py.)"""
    arrays_g, meta_g = got.to_arrays()
    arrays_r, meta_r = ref.to_arrays()
    assert meta_g == meta_r
    assert sorted(arrays_g) == sorted(arrays_r)
    for name in arrays_r:
        np.testing.assert_array_equal(arrays_g[name], arrays_r[name], err_msg=name)
    np.testing.assert_array_equal(got.display_parent, ref.display_parent)


# --------------------------------------------------------------------------- pure pieces
def test_shards_are_contiguous_whole_batches_and_cover_the_list():
    assert shard_bounds(11, 2, align=4) == [0, 4, 11]  # batches 0-3 | 4-7, 8-10
    assert shard_bounds(12, 3, align=4) == [0, 4, 8, 12]
    assert shard_bounds(2, 4, align=1) == [0, 0, 1, 1, 2]  # more ranks than images: some get none
    counts = np.array([16] * 10)
    cuts = relation_ranges(counts, batch_tokens=48, world_size=2)  # batches of 3 images: 0,3,6,9
    assert cuts == [0, 6, 10]
    assert relation_ranges(counts, 48, 1) == [0, 10]


def test_merging_two_halves_of_a_stream_equals_one_pass_with_its_tie_rule():
    rng = np.random.default_rng(0)
    m, n = 12, 200
    z = (rng.integers(0, 6, (n, m)) / 4.0) * (rng.random((n, m)) < 0.4)  # few distinct values: many ties
    ends = (3, 12)
    ref = compute_relations_from_codes([(SparseCodes.from_dense(z), np.arange(n))], m, ends, top_n=5)
    cut = 77
    a = compute_relations_from_codes([(SparseCodes.from_dense(z[:cut]), np.arange(cut))], m, ends, top_n=5)
    b = compute_relations_from_codes([(SparseCodes.from_dense(z[cut:]), np.arange(cut, n))], m, ends, top_n=5)
    merged = merge_relations(a, b)
    arrays_m, meta_m = merged.to_arrays()
    arrays_r, meta_r = ref.to_arrays()
    assert meta_m == meta_r
    for name in arrays_r:  # dyadic values: every float64 sum is exact, so D is identical too
        np.testing.assert_array_equal(arrays_m[name], arrays_r[name], err_msg=name)
    assert np.any(ref.top_values[:, :-1] == ref.top_values[:, 1:])  # ties were there to break


# ------------------------------------------------------------------------- 2 processes
def _extract_job(ctx, photos, out, work):
    from insight_desktop.core.distributed_build import _Sync, extract_features_sharded

    assert extract_features_sharded(photos, out, PatchColourBackbone(), ctx, _Sync(work, ctx, 0.02),
                                    batch_size=4, shard_tokens=40)


def test_the_store_joined_from_two_ranks_is_the_single_process_store(tmp_path, photos):
    extract_features(photos, tmp_path / "single", PatchColourBackbone(), batch_size=4, shard_tokens=40)
    run_ranks(_extract_job, photos, tmp_path / "dist", tmp_path / "work")
    got, ref = TokenStore(tmp_path / "dist"), TokenStore(tmp_path / "single")
    assert got.manifest["parts"] == ["part-00000-of-00002", "part-00001-of-00002"]
    assert {s["part"] for s in got.manifest["shards"]} == set(got.manifest["parts"])  # both ranks wrote shards
    assert_same_store(got, ref)
    assert "11 (1 unreadable)" in got.summary()


def _relations_job(ctx, store_dir, sae, work, out):
    from insight_desktop.core.distributed_build import _Sync, compute_relations_sharded

    rel = compute_relations_sharded(TokenStore(store_dir), sae, ctx, _Sync(work, ctx, 0.02), work, batch_tokens=48)
    assert (rel is None) == (ctx.rank != 0)
    if rel is not None:
        rel.save(out)


def test_relations_reduced_from_two_ranks_equal_the_single_process_pass(tmp_path, photos):
    extract_features(photos, tmp_path / "store", PatchColourBackbone(), batch_size=4, shard_tokens=40)
    store = TokenStore(tmp_path / "store")
    sae = random_sae(8, 16, k=3, threshold=0.02)
    ref = compute_relations(store, sae, batch_tokens=48)
    run_ranks(_relations_job, tmp_path / "store", sae, tmp_path / "work", tmp_path / "rel.safetensors")
    got = Relations.load(tmp_path / "rel.safetensors")
    assert got.n_tokens == store.n_tokens and int(got.f.sum()) > 0
    assert np.any(got.top_tokens >= 11 * 16 // 2)  # top tokens from rank 1's half: global ids
    assert_same_relations(got, ref)


class _DiesAfter:
    """A backbone that raises after ``limit`` images on rank 1 (the rank "dies" mid-extraction)."""

    def __init__(self, backbone, limit: int):
        self.__dict__["_inner"], self.__dict__["_left"] = backbone, limit

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def dense_features(self, images):
        self.__dict__["_left"] -= images.shape[0]
        if self._left < 0:
            raise RuntimeError("rank 1 died")
        return self._inner.dense_features(images)


def _options(vocab):
    from insight_desktop.core.build import BuildOptions

    return BuildOptions(n_concepts=16, k=3, level_fractions=(0.25, 0.75), vocabularies=(str(vocab),),
                        default_vocabularies=False, thumbnails_per_concept=2, relations_batch_tokens=48,
                        feature_batch=2, train={"epochs": 2, "batch_tokens": 64, "lr": 2e-3, "dead_tokens": 500,
                                                "threshold_start_step": 2, "checkpoint_every": 2, "seed": 0})


def _build_job(ctx, photos, out, vocab, die_after):
    from insight_desktop.core import distributed_build

    distributed_build.extract_features_sharded.__kwdefaults__["shard_tokens"] = 32  # a shard per 2 images
    backbone = TextColourBackbone()
    if die_after is not None and ctx.rank == 1:
        backbone = _DiesAfter(backbone, die_after)
    distributed_build.build_model_distributed(photos, out, backbone, _options(vocab), ctx, device="cpu",
                                              keep_work=True, poll_s=0.02)


def test_a_two_rank_build_resumes_after_rank_1_dies(tmp_path, photos):
    from insight_desktop.core.build import build_model
    from insight_desktop.core.concepts.bundle import ConceptModel
    from insight_desktop.core.sae import load_sae

    vocab = tmp_path / "words.txt"
    vocab.write_text("red\ngreen\nblue\nyellow\ncyan\nmagenta\nsky\nstone\n")
    out = tmp_path / "model"
    with pytest.raises(Exception, match="rank 1 died"):
        run_ranks(_build_job, photos, out, vocab, 2)
    part1 = TokenStore(tmp_path / "model.work" / "store" / "part-00001-of-00002")
    assert part1.n_images == 2 and not out.exists()  # rank 1 committed 2 of its 6 images, then died
    run_ranks(_build_job, photos, out, vocab, None)

    model = ConceptModel.load(out)
    work = tmp_path / "model.work"
    store = TokenStore(work / "store")
    extract_features(photos, tmp_path / "single", TextColourBackbone(), batch_size=2)
    assert_same_store(store, TokenStore(tmp_path / "single"))
    sae = load_sae(work / "sae.safetensors")
    ref = compute_relations(TokenStore(tmp_path / "single"), sae, batch_tokens=48)
    assert_same_relations(model.relations, ref)
    # The SAE is the single-process one (G1's data-parallel training) up to float rounding.
    single = ConceptModel.load(build_model(photos, tmp_path / "single-model", TextColourBackbone(), _options(vocab),
                                           device="cpu"))
    for name in ("W_enc", "W_dec", "b_dec", "threshold"):
        torch.testing.assert_close(getattr(model.sae, name), getattr(single.sae, name), atol=1e-4, rtol=0)
    assert model.names.names == single.names.names


def test_insight_build_model_runs_under_torchrun(tmp_path, tiny_model_files):
    """The command itself on 2 processes (torchrun --standalone): one bundle, one report (rank 0's)."""
    import subprocess
    import sys
    from pathlib import Path

    from insight_desktop.core.concepts.bundle import ConceptModel

    photos = write_block_photos(tmp_path / "photos", 8, seed=1)
    vocab = tmp_path / "words.txt"
    vocab.write_text("red\ngreen\nblue\nstripes\ndots\nsky\ngrass\nwater\n")
    out = tmp_path / "model.zip"
    torchrun = Path(sys.executable).with_name("torchrun")
    args = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "insight_desktop", "build-model",
            str(photos), "--out", str(out), "--concepts", "32", "--k", "4", "--levels", "2", "--epochs", "2",
            "--batch-tokens", "392", "--lr", "2e-3", "--dead-tokens", "2000", "--threshold-start", "2",
            "--vocab", str(vocab), "--no-default-vocab", "--thumbnails", "2", "-q",
            "--model", str(tiny_model_files.config_path), "--pretrained", str(tiny_model_files.checkpoint_path),
            "--dinoiser", str(tiny_model_files.dinoiser_path), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("concept model  ") == 1  # rank 0 reports; rank 1 ends quietly
    model = ConceptModel.load(out)
    assert model.relations.n_tokens == 8 * 196
    assert model.manifest.provenance["command"].startswith("insight build-model")
    assert not (tmp_path / "model.zip.work").exists()


def test_a_store_started_on_one_process_is_not_mixed_with_parts(tmp_path, photos):
    from insight_desktop.core.dist import SINGLE
    from insight_desktop.core.distributed_build import _Sync, extract_features_sharded
    from insight_desktop.core.features import FeatureStoreError

    extract_features(photos, tmp_path / "store", PatchColourBackbone(), should_stop=lambda: True)
    with pytest.raises(FeatureStoreError, match="started on one process"):
        extract_features_sharded(photos, tmp_path / "store", PatchColourBackbone(), SINGLE, _Sync(tmp_path, SINGLE))
