"""A token store read slice by slice: each rank reads only its rows of every global batch.

``TokenStore.iter_batch_slices`` must yield, for every batch of ``iter_batches`` (same images,
same order, same shuffling per epoch), the rows ``sae.distributed.shard_rows`` would cut — and
read only those. The 2-rank gloo run checks that training on such slices is the single-process run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from insight_desktop.core.dist import DistContext
from insight_desktop.core.features import FORMAT, MANIFEST, TokenStore
from insight_desktop.core.sae import TrainConfig, distributed, train_sae

from .test_sae_distributed import BASE, CONFIG, _assert_same_checkpoint, _checkpoint, _free_port, _tokens

# 15 images of uneven sizes (120 tokens), two of 1 and 2 tokens: batches of one image leave ranks empty
COUNTS = [1, 2, 13, 7, 11, 5, 9, 14, 3, 8, 12, 6, 10, 4, 15]
WORLD = 2


def write_store(folder: Path, tokens: np.ndarray, counts=COUNTS, split: int = 7) -> Path:
    """A float16 store of ``tokens`` cut into images of ``counts`` tokens, the first ``split`` images
    in shard 0 and the rest in shard 1 (as ``extract_features`` lays them out)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, shards, row = [], [], 0
    for shard_id, (first, end) in enumerate([(0, split), (split, len(counts))]):
        n = sum(counts[first:end])
        part = tokens[row:row + n].astype(np.float16)
        index = np.zeros((n, 3), np.int32)
        offset = 0
        for i in range(first, end):
            images.append({"path": f"img{i}.jpg", "grid": [1, counts[i]], "offset": offset,
                           "count": counts[i], "shard": shard_id})
            index[offset:offset + counts[i]] = [[i, 0, c] for c in range(counts[i])]
            offset += counts[i]
        np.save(folder / f"shard-{shard_id:05d}.tokens.npy", part)
        np.save(folder / f"shard-{shard_id:05d}.index.npy", index)
        shards.append({"id": shard_id, "n_tokens": n, "n_images": end - first})
        row += n
    manifest = {"format": FORMAT, "format_version": 1, "backbone": {"id": "synthetic", "spec": {}},
                "feature_dim": tokens.shape[1], "mode": "crop", "size": 224, "dtype": "float16",
                "source": str(folder), "shards": shards, "images": images, "failed": []}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


class _ReadLog:
    """An image's memory-mapped tokens that record which rows are sliced out of them."""

    def __init__(self, rows: np.ndarray, log: list[int]):
        self.rows, self.log = rows, log

    def __getitem__(self, key: slice) -> np.ndarray:
        out = self.rows[key]
        self.log.append(len(out))
        return out


@pytest.mark.parametrize("batch_tokens", [1, 20, 41, 1000])
def test_the_ranks_slices_concatenated_are_the_whole_batches(tmp_path, batch_tokens):
    tokens = np.random.default_rng(0).standard_normal((sum(COUNTS), 6)).astype(np.float32)
    store = TokenStore(write_store(tmp_path / "store", tokens))
    empty_slices = 0
    for epoch, seed, skip in [(0, 0, 0), (1, 7, 0), (2, 3, 2)]:
        whole = list(store.iter_batches(batch_tokens, epoch=epoch, seed=seed, skip=skip))
        assert whole or skip                  # (1000 tokens: one batch per epoch, none after skip 2)
        for world in (1, 2, 3):
            parts = [list(store.iter_batch_slices(batch_tokens, epoch=epoch, seed=seed, skip=skip,
                                                  rank=r, world_size=world)) for r in range(world)]
            for r, got in enumerate(parts):
                ctx = DistContext(rank=r, world_size=world, backend="gloo")
                assert [n for n, _ in got] == [len(b) for b in whole]
                for (_, piece), batch in zip(got, whole):
                    assert piece.dtype == np.float32 and piece.shape[1] == 6
                    assert np.array_equal(piece, distributed.shard_rows(batch, ctx))
                    empty_slices += len(piece) == 0
            for i, batch in enumerate(whole):     # rank order, contiguous: exactly the batch again
                assert np.array_equal(np.concatenate([p[i][1] for p in parts]), batch)
    if batch_tokens == 1:                     # the images of 1 and 2 tokens leave some ranks nothing
        assert empty_slices > 0


def test_each_rank_reads_only_its_rows(tmp_path):
    store = TokenStore(write_store(tmp_path / "store", np.ones((sum(COUNTS), 4), np.float32)))
    log: list[int] = []
    original = store.image_tokens
    store.image_tokens = lambda i: _ReadLog(original(i), log)          # type: ignore[method-assign]
    n_batches = store.num_batches(41)
    for rank in range(3):
        got = list(store.iter_batch_slices(41, epoch=1, seed=2, rank=rank, world_size=3))
        assert sum(log) == sum(len(p) for _, p in got)                   # read: this rank's rows, no more
        log.clear()
    assert n_batches == len(got) == 3


def _worker(rank: int, port: int, store: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from insight_desktop.core import dist as dist_mod

    ctx = dist_mod.from_environment("cpu")
    try:
        source = TokenStore(store)

        def whole_batches(*_a, **_k):
            raise AssertionError("a rank read the whole global batch")

        source.iter_batches = whole_batches                              # type: ignore[method-assign]
        n = source.num_batches(BASE["batch_tokens"])
        train_sae(source, CONFIG, TrainConfig(epochs=1 / n, **BASE), device="cpu",
                  checkpoint_dir=Path(out) / "one", dist=ctx)
        train_sae(source, CONFIG, TrainConfig(epochs=2, **BASE), device="cpu",
                  checkpoint_dir=Path(out) / "two", dist=ctx)
    finally:
        dist_mod.shutdown()


def test_two_ranks_reading_slices_of_a_store_train_as_one_process(tmp_path):
    store = write_store(tmp_path / "store", _tokens())
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(store), str(tmp_path)), nprocs=WORLD, join=True)
    source = TokenStore(store)
    n = source.num_batches(BASE["batch_tokens"])
    assert n == 3
    one = train_sae(source, CONFIG, TrainConfig(epochs=1 / n, **BASE), device="cpu", checkpoint_dir=tmp_path / "ref1")
    two = train_sae(source, CONFIG, TrainConfig(epochs=2, **BASE), device="cpu", checkpoint_dir=tmp_path / "ref2")
    assert (one.steps, two.steps) == (1, 6)
    _assert_same_checkpoint(_checkpoint(tmp_path / "one"), _checkpoint(tmp_path / "ref1"))
    _assert_same_checkpoint(_checkpoint(tmp_path / "two"), _checkpoint(tmp_path / "ref2"))
    assert float(two.sae.threshold) > 0 and two.metrics["n_dead"] > 0     # θ's EMA and AuxK both ran
