"""SAE training on 2 processes (gloo, CPU) equals the single-process run on the concatenated batches.

The test starts the two ranks itself with ``torch.multiprocessing.spawn``; each joins the group
through :func:`insight_desktop.core.dist.from_environment`, as under torchrun. Rank 0 saves what
it trained; the single-process references are computed here, in the test process.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from insight_desktop.core.dist import DistContext
from insight_desktop.core.sae import (
    ArrayTokenSource,
    SAEConfig,
    SAEError,
    TrainConfig,
    distributed,
    geometric_median,
    train_sae,
)
from insight_desktop.core.sae.checkpoint import CHECKPOINT_FILE
from insight_desktop.core.sae.topk import batch_topk_indices

WORLD = 2
CONFIG = SAEConfig(d_in=16, n_concepts=32, k=3, group_sizes=(4, 28))
# 120 tokens in batches of 41 → 41, 41, 38 tokens: uneven slices (20 + 21, 19 + 19) on 2 ranks.
# θ's EMA from the first step on, and latents dead after one batch: AuxK runs from step 2.
BASE = dict(lr=1e-3, batch_tokens=41, dead_tokens=41, threshold_start_step=-1, checkpoint_every=0, seed=3)
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


def _tokens() -> np.ndarray:
    rng = np.random.default_rng(11)
    basis = rng.standard_normal((8, 16)).astype(np.float32)
    codes = rng.exponential(1.0, (120, 8)).astype(np.float32) * (rng.random((120, 8)) < 0.3)
    return codes @ basis + 0.05 * rng.standard_normal((120, 16)).astype(np.float32) + 0.5


class _SlicedSource(ArrayTokenSource):
    """Reads only this rank's rows of each batch (as a token store on disk would), via slice_pieces."""

    def iter_batch_slices(self, batch_tokens, *, epoch, seed, skip, rank, world_size):
        per = self.images_per_batch(batch_tokens)
        order = np.random.default_rng(seed + epoch).permutation(self.n_images)
        for start in range(skip * per, self.n_images, per):
            images = order[start:start + per]
            pieces = distributed.slice_pieces([self.group_size] * len(images), rank, world_size)
            rows = [int(images[pos]) * self.group_size + np.arange(a, b) for pos, a, b in pieces]
            yield len(images) * self.group_size, self.tokens[np.concatenate(rows) if rows else np.arange(0)]


def _checkpoint(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / CHECKPOINT_FILE))


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from insight_desktop.core import dist as dist_mod

    ctx = dist_mod.from_environment("cpu")
    assert ctx.world_size == WORLD and ctx.backend == "gloo"
    try:
        out_dir = Path(out)
        source = ArrayTokenSource(_tokens())
        # one step, and the whole 3-step run, into two checkpoint folders (rank 0 writes them)
        train_sae(source, CONFIG, TrainConfig(epochs=1 / 3, **BASE), device="cpu",
                  checkpoint_dir=out_dir / "one", dist=ctx)
        full = train_sae(_SlicedSource(_tokens()), CONFIG, TrainConfig(epochs=1, **BASE), device="cpu",
                         checkpoint_dir=out_dir / "full", dist=ctx)
        # stopped after 2 of 3 steps (asked on rank 1 only: both ranks stop together)
        calls = {"n": 0}

        def stop() -> bool:
            calls["n"] += 1
            return rank == 1 and calls["n"] >= 2

        part = train_sae(source, CONFIG, TrainConfig(epochs=1, **BASE), device="cpu",
                         checkpoint_dir=out_dir / "part", should_stop=stop, dist=ctx)
        # 83 tokens: the third batch has 1 token, so rank 0 trains on an empty slice at that step
        short = train_sae(ArrayTokenSource(_tokens()[:83]), CONFIG, TrainConfig(epochs=2, **BASE), device="cpu",
                          dist=ctx)
        # a single-process checkpoint (made by the test after 1 step) resumed on 2 ranks
        from_one = train_sae(source, CONFIG, TrainConfig(epochs=1, **BASE), device="cpu",
                             checkpoint_dir=out_dir / "from_one", dist=ctx)
        # the exact global BatchTopK with ties at the cut-off, and the global geometric median
        g = torch.Generator().manual_seed(5)
        a = torch.rand(12, 40, generator=g).relu_()
        a[:, :3] = 0.5                                            # 36 tied entries around the cut-off
        a[a < 0.3] = 0.0
        mine = distributed.shard_rows(a, ctx)
        idx = distributed.batch_topk_indices_global(mine, 4, ctx)
        lo = 12 * rank // WORLD
        big = _big_activations()                                  # large enough for the sampled cut-off guess
        big_idx = distributed.batch_topk_indices_global(distributed.shard_rows(big, ctx), 8, ctx)
        big_idx = big_idx + (big.shape[0] * rank // WORLD) * big.shape[1]
        x = torch.randn(30, 5, generator=g) * 3
        median = distributed.geometric_median_global(distributed.shard_rows(x, ctx), ctx)
        torch.save({"full_metrics": full.metrics, "part": (part.steps, part.stopped_early), "median": median,
                    "short": {n: getattr(short.sae, n) for n in PARAMS},
                    "from_one": ({n: getattr(from_one.sae, n) for n in PARAMS}, from_one.steps),
                    "big": big_idx, "topk_rows": idx // 40 + lo, "topk_cols": idx % 40}, out_dir / f"rank{rank}.pt")
    finally:
        dist_mod.shutdown()


def _big_activations() -> torch.Tensor:
    """[90, 2048] ReLU outputs whose columns differ in scale (as an SAE's latents do)."""
    g = torch.Generator().manual_seed(9)
    return (torch.randn(90, 2048, generator=g) * (1 + 3 * torch.rand(2048, generator=g)) - 2).relu_()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """Runs the 2-rank workers once for all the tests below; returns their output folder."""
    out = tmp_path_factory.mktemp("dist")
    assert _single(1, out / "from_one", should_stop=lambda: True).steps == 1   # stops after its first step
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out


def _single(epochs: float, directory: Path | None = None, **kw):
    return train_sae(ArrayTokenSource(_tokens()), CONFIG, TrainConfig(epochs=epochs, **BASE), device="cpu",
                     checkpoint_dir=directory, **kw)


def _assert_same_checkpoint(got: dict, want: dict, atol: float = 1e-5) -> None:
    for key in want:
        if key.startswith("model.") or key.startswith("optim."):
            assert torch.allclose(got[key].float(), want[key].float(), atol=atol, rtol=0), key
    assert torch.equal(got["tokens_since_fired"], want["tokens_since_fired"])


def test_one_step_on_two_ranks_equals_one_step_on_the_whole_batch(two_ranks, tmp_path):
    _single(1 / 3, tmp_path)
    got, want = _checkpoint(two_ranks / "one"), _checkpoint(tmp_path)
    _assert_same_checkpoint(got, want)
    assert float(want["model.threshold"]) > 0                     # θ was updated at this step
    assert int((want["tokens_since_fired"] == 41).sum()) > 0      # some latents silent, so dead next step


def test_three_steps_with_auxk_and_threshold_equal_the_single_process_run(two_ranks, tmp_path):
    ref = _single(1, tmp_path)
    _assert_same_checkpoint(_checkpoint(two_ranks / "full"), _checkpoint(tmp_path))
    metrics = torch.load(two_ranks / "rank0.pt")["full_metrics"]
    assert ref.metrics["n_dead"] > 0                                # AuxK ran in the last step
    for key in ("loss", "mse", "aux_loss", "fvu", "l0", "threshold", "min_kept"):
        assert metrics[key] == pytest.approx(ref.metrics[key], rel=1e-5, abs=1e-6), key
    for key in ("step", "tokens_seen", "n_dead", "epoch"):
        assert metrics[key] == ref.metrics[key], key
    other = torch.load(two_ranks / "rank1.pt")["full_metrics"]           # every rank sees the global stats
    assert {k: v for k, v in other.items() if k != "tokens_per_s"} == {
        k: v for k, v in metrics.items() if k != "tokens_per_s"}


def test_a_two_rank_checkpoint_resumes_on_one_process(two_ranks, tmp_path):
    assert torch.load(two_ranks / "rank0.pt")["part"] == (2, True)
    assert torch.load(two_ranks / "rank1.pt")["part"] == (2, True)
    resumed = _single(1, two_ranks / "part")
    assert resumed.steps == 3
    ref = _single(1)
    for name in PARAMS:
        assert torch.allclose(getattr(resumed.sae, name), getattr(ref.sae, name), atol=1e-5, rtol=0), name
    assert resumed.metrics["tokens_seen"] == ref.metrics["tokens_seen"] == 120


def test_a_one_process_checkpoint_resumes_on_two_ranks(two_ranks):
    got, steps = torch.load(two_ranks / "rank0.pt")["from_one"]
    ref = _single(1)
    assert steps == 3
    for name in PARAMS:
        assert torch.allclose(got[name], getattr(ref.sae, name), atol=1e-5, rtol=0), name


def test_a_rank_with_no_tokens_in_a_step_still_takes_part(two_ranks):
    ref = train_sae(ArrayTokenSource(_tokens()[:83]), CONFIG, TrainConfig(epochs=2, **BASE), device="cpu")
    assert ref.steps == 6
    got = torch.load(two_ranks / "rank0.pt")["short"]
    other = torch.load(two_ranks / "rank1.pt")["short"]
    for name in PARAMS:
        assert torch.allclose(got[name], getattr(ref.sae, name), atol=1e-5, rtol=0), name
        assert torch.equal(got[name], other[name]), name          # the ranks' copies never drift apart


def test_global_batch_topk_and_geometric_median_match_one_process(two_ranks):
    parts = [torch.load(two_ranks / f"rank{r}.pt") for r in range(WORLD)]
    rows = torch.cat([p["topk_rows"] for p in parts])
    cols = torch.cat([p["topk_cols"] for p in parts])
    g = torch.Generator().manual_seed(5)
    a = torch.rand(12, 40, generator=g).relu_()
    a[:, :3] = 0.5
    a[a < 0.3] = 0.0
    x = torch.randn(30, 5, generator=g) * 3
    want = batch_topk_indices(a, 4)
    assert rows.numel() == want.numel() == 48
    kept = a[rows, cols]
    # same multiset of kept values; among the tied entries the lowest global positions are kept
    assert torch.equal(kept.sort().values, a.view(-1)[want].sort().values)
    tied = (kept == 0.5)
    flat_tied = (rows * 40 + cols)[tied]
    all_tied = torch.nonzero(a.view(-1) == 0.5).squeeze(1)
    assert torch.equal(flat_tied.sort().values, all_tied[:int(tied.sum())])
    for p in parts:
        assert torch.allclose(p["median"], geometric_median(x), atol=1e-5)

    big = torch.cat([p["big"] for p in parts])
    assert torch.equal(big, batch_topk_indices(_big_activations(), 8))   # no ties: the very same entries


class _RankOneSeesNothing(DistContext):
    """Rank 0 of 2 whose partner does not see the checkpoint folder (not shared between nodes)."""

    def all_gather_object(self, obj):
        return [obj, False]


def test_a_checkpoint_only_some_ranks_see_is_refused_with_a_message(tmp_path):
    ctx = _RankOneSeesNothing(rank=0, world_size=2, backend="gloo")
    with pytest.raises(SAEError, match=r"not visible to rank\(s\) \[1\].*shared"):
        distributed.checkpoint_everywhere(True, tmp_path, ctx)
    assert distributed.checkpoint_everywhere(False, tmp_path, ctx) is False     # a fresh start everywhere


def test_a_source_that_reads_only_its_slice_yields_the_rows_shard_rows_cuts():
    tokens = np.arange(7 * 5 * 2, dtype=np.float32).reshape(-1, 2)          # 7 images of 5 tokens
    source = _SlicedSource(tokens, group_size=5)
    for world in (1, 2, 3):
        for rank in range(world):
            ctx = DistContext(rank=rank, world_size=world, backend="gloo")
            got = list(distributed.rank_batches(source, 10, epoch=1, seed=2, skip=1, dist=ctx))
            whole = list(source.iter_batches(10, epoch=1, seed=2, skip=1))
            assert [n for n, _ in got] == [len(b) for b in whole] == [10, 10, 5]
            for (_, part), batch in zip(got, whole):
                assert np.array_equal(part, distributed.shard_rows(batch, ctx)), (world, rank)
    assert distributed.slice_pieces([3, 4, 2], 1, 2) == [(1, 1, 4), (2, 0, 2)]   # rows 4..8 of 9
    assert distributed.slice_pieces([3], 0, 4) == []                               # 3 rows for 4 ranks
