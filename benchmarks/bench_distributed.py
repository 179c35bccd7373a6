"""SAE training on 1 vs N processes (torch.distributed): scaling efficiency, tokens/s per rank and
communication time per step.

Each run starts its processes itself (``torch.multiprocessing``; gloo on CPUs, ``--backend nccl``
one process per GPU) and trains the reference-shape SAE (d 512, m 8192, k 12 by default) through
the real ``train_sae`` on a synthetic float16 token store written to a temporary folder (images of
196 tokens, N(0, 1) features): the store's reading, the slicing of each global batch, the step and
every collective are in the timed steps. The global batch (``--batch-tokens``) is the same for
every process count, as the distributed trainer keeps the single-process run (each of W ranks
trains on 1/W of each batch): this is strong scaling, and ideal is W× the tokens/s of one process.

Communication is timed by wrapping ``torch.distributed``'s collectives in the worker (CUDA is
synchronised around each under NCCL), so it includes waiting for the slowest rank; the "gradient
all-reduce alone" line times one all-reduce of a gradient-sized tensor (all four parameters, one
flat float32 buffer, as the trainer sends it) after a barrier: the pure transfer cost.

If ``train_sae`` has no ``dist`` argument (a tree without distributed SAE training), the workers
run the same step by hand — local select + loss + gradients on 1/W of the batch, one all-reduce of
the flat gradients, clip, Adam — and the header says so.

    .venv/bin/python benchmarks/bench_distributed.py                        # 1 vs 2 gloo processes, ≈ 1–2 min
    .venv/bin/python benchmarks/bench_distributed.py --procs 1,2,4,8 --backend nccl --batch-tokens 16384
    torchrun --nproc-per-node 8 benchmarks/bench_distributed.py --backend nccl   # one size, torchrun's ranks

On a shared machine the numbers vary; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE_TOKENS = 196      # a 224 px ViT-B/16 image; the store packs whole images into batches
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "barrier", "all_gather_object",
               "broadcast_object_list", "broadcast", "reduce_scatter_tensor")


def write_store(folder: Path, n_images: int, d: int, seed: int = 1) -> Path:
    """A token store with one shard of N(0, 1) float16 features, as ``extract_features`` writes it."""
    import numpy as np

    from insight_desktop.core.features import FORMAT, MANIFEST

    folder.mkdir(parents=True, exist_ok=True)
    n = n_images * IMAGE_TOKENS
    tokens = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32).astype(np.float16)
    rows, cols = np.divmod(np.arange(IMAGE_TOKENS, dtype=np.int32), 14)
    index = np.stack([np.repeat(np.arange(n_images, dtype=np.int32), IMAGE_TOKENS),
                      np.tile(rows, n_images), np.tile(cols, n_images)], axis=1)
    np.save(folder / "shard-00000.tokens.npy", tokens)
    np.save(folder / "shard-00000.index.npy", index)
    images = [{"path": f"img{i:06d}.jpg", "grid": [14, 14], "offset": i * IMAGE_TOKENS, "count": IMAGE_TOKENS,
               "shard": 0} for i in range(n_images)]
    manifest = {"format": FORMAT, "format_version": 1, "backbone": {"id": "synthetic", "spec": {}},
                "feature_dim": d, "mode": "crop", "size": 224, "dtype": "float16", "source": str(folder),
                "shards": [{"id": 0, "n_tokens": n, "n_images": n_images}], "images": images, "failed": []}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


class CollectiveTimer:
    """Wraps torch.distributed's collectives: seconds spent in them since the last :meth:`take`."""

    def __init__(self, cuda: bool):
        import torch
        import torch.distributed as td

        self.spent, self.cuda, self._torch = 0.0, cuda, torch
        for name in COLLECTIVES:
            if hasattr(td, name):
                setattr(td, name, self._wrap(getattr(td, name)))

    def _wrap(self, fn):
        def timed(*args, **kwargs):
            if self.cuda:
                self._torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.cuda:
                self._torch.cuda.synchronize()
            self.spent += time.perf_counter() - t0
            return out
        return timed

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent


def worker(local_rank: int, world: int, port: int, args: argparse.Namespace, out_dir: str) -> None:
    """One rank: join the group (or not, alone), train, write this rank's timings as JSON."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                          WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank))
    result = run_rank(args)
    Path(out_dir, f"rank{result['rank']}.json").write_text(json.dumps(result))


def run_rank(args: argparse.Namespace) -> dict:
    import torch

    from insight_desktop.core import dist as dist_mod
    from insight_desktop.core.features import TokenStore
    from insight_desktop.core.sae import SAEConfig, TrainConfig, train_sae

    torch.set_num_threads(args.threads)
    cuda = args.backend == "nccl"
    ctx = dist_mod.from_environment("cuda" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(ctx.local_rank)
    device = f"cuda:{ctx.local_rank}" if cuda else "cpu"
    timer = CollectiveTimer(cuda)
    store = TokenStore(args.store)
    config = SAEConfig.reference(d_in=args.d, expansion=args.m // args.d, k=args.k)
    # The reference schedule (θ EMA after step 1000, dead after 10 M tokens): no θ update or AuxK in
    # the few timed steps, as in bench_sae.py; epochs = exactly warm-up + timed steps.
    n_steps = args.warmup + args.steps
    tc = TrainConfig(batch_tokens=args.batch_tokens, epochs=n_steps / store.num_batches(args.batch_tokens),
                     checkpoint_every=0, threshold_start_step=1000, dead_tokens=10_000_000)
    stamps: list[float] = []
    cpu: list[float] = []
    comm: list[float] = []

    def on_progress(_p) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())
        comm.append(timer.take())

    ctx.barrier()
    timer.take()
    t_start, c_start = time.perf_counter(), time.process_time()
    mode = "train_sae(dist=…)"
    if "dist" in inspect.signature(train_sae).parameters:
        train_sae(store, config, tc, device=device, on_progress=on_progress, dist=ctx)
    else:
        mode = "hand-written step (train_sae has no dist= here)"
        manual_steps(store, config, tc, device, ctx, on_progress, n_steps)
    steps = [b - a for a, b in zip([t_start] + stamps[:-1], stamps)][args.warmup:]
    cpu_steps = [b - a for a, b in zip([c_start] + cpu[:-1], cpu)][args.warmup:]
    comm = comm[args.warmup:]
    result = {"rank": ctx.rank, "world": ctx.world_size, "backend": ctx.backend if ctx.distributed else "none",
              "mode": mode, "step_s": statistics.median(steps),
              "cpu_s": statistics.median(cpu_steps), "comm_s": statistics.median(comm),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "device": device,
              "grad_numel": sum(p.numel() for p in _shapes(config, device))}
    result["allreduce_alone_s"] = allreduce_alone(result["grad_numel"], ctx, device, cuda) if ctx.distributed else 0.0
    dist_mod.shutdown()
    return result


def _shapes(config, device):
    from insight_desktop.core.sae import MatryoshkaSAE

    return list(MatryoshkaSAE(config).parameters())


def allreduce_alone(numel: int, ctx, device: str, cuda: bool, repeats: int = 5) -> float:
    """Median seconds of one all-reduce of ``numel`` float32 after a barrier (no waiting for stragglers)."""
    import torch

    flat = torch.ones(numel, dtype=torch.float32, device=device)
    times = []
    for _ in range(repeats + 1):
        ctx.barrier()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ctx.all_reduce_sum(flat)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def manual_steps(store, config, tc, device, ctx, on_progress, n_steps: int) -> None:
    """The data-parallel step without the distributed trainer: local gradients, one flat all-reduce."""
    import torch

    from insight_desktop.core.sae import MatryoshkaSAE, sparse_step

    sae = MatryoshkaSAE(config).to(device)
    params = list(sae.parameters())
    opt = torch.optim.Adam(params, lr=tc.lr)
    for i, batch in enumerate(store.iter_batches(tc.batch_tokens, epoch=0, seed=tc.seed)):
        if i == n_steps:
            break
        n = len(batch)
        x = torch.as_tensor(batch[n * ctx.rank // ctx.world_size: n * (ctx.rank + 1) // ctx.world_size]).to(device)
        if i == 0:
            sae.init_from_data(x, torch.Generator().manual_seed(tc.seed))
        sparse_step.loss_and_grads(sae, sparse_step.select(sae, x, config.k), dead=None, aux_alpha=tc.aux_alpha)
        if ctx.distributed:
            flat = ctx.all_reduce_sum(torch.cat([p.grad.reshape(-1) for p in params])) / ctx.world_size
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        sae.normalize_decoder_()
        on_progress(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_size(world: int, args) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="bench-dist-") as out:
        mp.start_processes(worker, args=(world, free_port(), args, out), nprocs=world, join=True,
                           start_method="spawn")
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]


def row(world: int, ranks: list[dict], base_tps: float | None, batch: int) -> tuple:
    step = max(r["step_s"] for r in ranks)             # the step ends when the slowest rank is done
    comm = statistics.mean(r["comm_s"] for r in ranks)
    tps = batch / step
    eff = "—" if base_tps is None else f"{tps / (world * base_tps):.2f}"
    alone = max(r["allreduce_alone_s"] for r in ranks)
    cpu = statistics.mean(r["cpu_s"] for r in ranks)
    return (world, f"{step * 1e3:.0f}", f"{1 / step:.2f}", f"{tps / world:,.0f}", f"{tps:,.0f}", eff,
            f"{cpu * 1e3:.0f}", f"{comm * 1e3:.0f} ({comm / step:.0%})",
            f"{alone * 1e3:.1f}" if world > 1 else "—"), tps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", default="1,2", help="process counts to compare (comma-separated; the first is the base)")
    p.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--m", type=int, default=8192)
    p.add_argument("--k", type=int, default=12)
    p.add_argument("--batch-tokens", type=int, default=4096, help="global batch (the reference trains on 16384)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps (step 0 also initialises b_dec)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    with tempfile.TemporaryDirectory(prefix="bench-dist-store-") as tmp:
        per_batch = max(1, round(args.batch_tokens / IMAGE_TOKENS))
        n_images = per_batch * (args.warmup + args.steps)
        args.batch_tokens = per_batch * IMAGE_TOKENS          # whole images: every batch is exactly this size
        args.store = str(write_store(Path(tmp) / "store", n_images, args.d))
        from insight_desktop.core.dist import launched_by_torchrun

        if launched_by_torchrun():                            # torchrun started us: one size, its ranks
            result = run_rank(args)
            print(json.dumps(result))
            return 0
        sizes = [int(s) for s in args.procs.split(",")]
        results = {w: run_size(w, args) for w in sizes}

    first = results[sizes[0]][0]
    if args.json:
        print(json.dumps({str(w): r for w, r in results.items()}))
        return 0
    print(f"SAE d {args.d}, m {args.m}, k {args.k}; global batch {args.batch_tokens} tokens (images of {IMAGE_TOKENS}) "
          f"from a synthetic float16 token store; backend {args.backend}; {first['threads']} thread(s) per process; "
          f"torch {first['torch']}; {args.steps} timed steps after {args.warmup} warm-up (median)")
    print(f"training: {first['mode']}; gradient: {first['grad_numel'] / 1e6:.1f} M floats "
          f"({first['grad_numel'] * 4 / 1e6:.1f} MB float32)\n")
    head = ("procs", "step ms", "steps/s", "tokens/s/rank", "tokens/s total", "efficiency", "CPU ms/rank",
            "collectives ms (share)", "grad all-reduce alone ms")
    rows, base = [], None
    for w in sizes:
        r, tps = row(w, results[w], base, args.batch_tokens)
        base = tps if base is None else base
        rows.append(r)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for r in (head, *rows):
        print("  ".join(str(x).rjust(n) for x, n in zip(r, widths)))
    print("\nefficiency = tokens/s of W processes ÷ (W × tokens/s of the first row). CPU ms/rank: the process "
          "time one rank used per step (wall time above it is waiting: for a core on a busy machine, or for the "
          "other ranks). Collectives include waiting for the slowest rank.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
