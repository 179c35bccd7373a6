"""SAE benchmark at the reference size (docs/method.md §2: d 512, m 8192, k 12, batches of 16 k tokens):
training throughput and inference latency of Insight Desktop's trainer against the reference
implementation the authors used, dictionary_learning's ``MatryoshkaBatchTopKTrainer``.

The reference runs in its own virtualenv (``.venv-bench``, made by ``setup_bench_env.sh``) as a
subprocess of this script, in the same run, on the same random data distribution (N(0, 1)
tokens), with the same torch version and thread count. Training is timed per step after warm-up
(median); inference is encode + decode with an inference threshold θ = 3.0 (≈ k active concepts
per token on this data) of one image (196 tokens) and of one 16 k batch. Both trainers run with the
reference schedule (θ EMA after step 1000, dead after 10 M tokens), so neither runs AuxK or the θ
update in the few timed steps and both do the same work.

Before timing, the loss is checked: the reference trainer's own ``loss`` and ours
(:mod:`insight_desktop.core.sae.sparse_step`) are evaluated on the same weights, the same batch and
the same planted dead latents (AuxK active), and the loss and the gradients of all four
parameters are compared (float32; max |ours − theirs| / max |theirs| per tensor).

    .venv/bin/python benchmarks/bench_sae.py                  # ≈ 1–2 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_sae.py --steps 5 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
THRESHOLD = 3.0
#: planted dead latents for the loss check: every this-many-th latent (those that fire in the batch stay alive)
DEAD_EVERY = 7


def bench_ours(args) -> dict:
    import numpy as np
    import torch

    from insight_desktop.core.devices import resolve_device
    from insight_desktop.core.sae import ArrayTokenSource, SAEConfig, TrainConfig, train_sae

    device = resolve_device(args.device)
    config = SAEConfig.reference(d_in=args.d, expansion=args.m // args.d, k=args.k)
    n_steps = args.warmup + args.steps
    tokens = np.random.default_rng(1).standard_normal((n_steps * args.batch_tokens, args.d), dtype=np.float32)
    stamps: list[float] = []

    def on_progress(p):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    t_start = time.perf_counter()
    # The reference schedule, as the reference trainer gets: with "auto" a 4-step run would start
    # the θ EMA and AuxK within the timed steps, which the reference does not.
    result = train_sae(ArrayTokenSource(tokens), config,
                       TrainConfig(batch_tokens=args.batch_tokens, epochs=1.0, checkpoint_every=0,
                                   threshold_start_step=1000, dead_tokens=10_000_000),
                       device=str(device), on_progress=on_progress)
    steps = [b - a for a, b in zip([t_start] + stamps[:-1], stamps)]
    step_s = statistics.median(steps[args.warmup:])

    sae = result.sae.to(device)
    sae.threshold.fill_(THRESHOLD)
    gen = torch.Generator().manual_seed(2)
    latency = {}
    with torch.no_grad():
        for n in (196, args.batch_tokens):
            x = torch.randn(n, args.d, generator=gen).to(device)
            runs = []
            for _ in range(4):
                _sync(device)
                t0 = time.perf_counter()
                sae.decode(sae.encode(x))
                _sync(device)
                runs.append(time.perf_counter() - t0)
            latency[str(n)] = statistics.median(runs[1:])
    return {"impl": "insight_desktop train_sae", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "step_s": step_s, "tokens_per_s": args.batch_tokens / step_s, "latency_s": latency,
            "group_sizes": list(config.group_sizes), "device": str(device)}


def bench_reference(args) -> dict | str:
    if not BENCH_PYTHON.exists():
        return "reference not installed: run benchmarks/setup_bench_env.sh"
    cmd = [str(BENCH_PYTHON), str(Path(__file__).with_name("reference_dictionary_learning.py")),
           "--d", str(args.d), "--m", str(args.m), "--k", str(args.k), "--batch-tokens", str(args.batch_tokens),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.resolved_device,
           "--threshold", str(THRESHOLD)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return "reference failed: " + " | ".join(tail)
    return json.loads(lines[-1])


def loss_parity(args) -> dict | str:
    """Our loss and gradients against the reference trainer's ``loss`` on identical inputs."""
    import tempfile

    import torch
    from safetensors.torch import load_file, save_file

    from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig, sparse_step

    if not BENCH_PYTHON.exists():
        return "reference not installed: run benchmarks/setup_bench_env.sh"
    device = torch.device(args.resolved_device)
    config = SAEConfig.reference(d_in=args.d, expansion=args.m // args.d, k=args.k)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(args.batch_tokens, args.d, generator=gen)
    sae = MatryoshkaSAE(config)
    sae.init_from_data(x, torch.Generator().manual_seed(0))
    with torch.no_grad():                     # move off the symmetric init, so every term is generic
        sae.W_enc.add_(0.05 * torch.randn(sae.W_enc.shape, generator=gen))
        sae.b_enc.add_(0.05 * torch.randn(sae.b_enc.shape, generator=gen))
    planted = torch.zeros(args.m, dtype=torch.bool)
    planted[::DEAD_EVERY] = True
    with torch.no_grad():                     # most planted latents then lose BatchTopK: really dead
        sae.b_enc[planted] -= 1.5
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.safetensors", Path(tmp) / "out.safetensors"
        save_file({**{n: getattr(sae, n).detach().contiguous() for n in ("W_enc", "b_enc", "W_dec", "b_dec")},
                   "x": x, "dead": planted.to(torch.int8)}, str(src))
        cmd = [str(BENCH_PYTHON), str(Path(__file__).with_name("reference_dictionary_learning.py")),
               "--d", str(args.d), "--m", str(args.m), "--k", str(args.k), "--device", args.resolved_device,
               "--threshold", str(THRESHOLD), "--parity-in", str(src), "--parity-out", str(dst)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not dst.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return "reference loss failed: " + " | ".join(tail)
        ref = load_file(str(dst))
    sae = sae.to(device)
    sel = sparse_step.select(sae, x.to(device), config.k)
    dead = (planted.to(device) & ~sel.fired(args.m))             # a latent that fires now is not dead
    stats = sparse_step.loss_and_grads(sae, sel, dead=dead if dead.any() else None, aux_alpha=1 / 32)
    grads = {n: (getattr(sae, n).grad.cpu() - ref[f"grad.{n}"]).abs().max().item()
             / ref[f"grad.{n}"].abs().max().item() for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    loss, ref_loss = float(stats.loss), float(ref["loss"])
    return {"loss": loss, "reference_loss": ref_loss, "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss),
            "grad_rel_diff": grads, "n_dead": int(dead.sum()),
            "same_dead": bool(torch.equal(dead.cpu(), ref["dead_after"].bool()))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (after warm-up)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first steps (step 0 includes the init)")
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--m", type=int, default=8192)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = ap.parse_args(argv)
    from insight_desktop.core.devices import resolve_device
    args.resolved_device = str(resolve_device(args.device))

    parity = "skipped (--skip-reference)" if args.skip_reference else loss_parity(args)
    # Reference first: it allocates more, and the two runs must not overlap.
    theirs = "skipped (--skip-reference)" if args.skip_reference else bench_reference(args)
    ours = bench_ours(args)
    print_parity(parity)
    print_table(args, ours, theirs)
    if args.json:
        print(json.dumps({"ours": ours, "reference": theirs, "loss_parity": parity}, indent=2))
    return 0


def print_parity(parity: dict | str) -> None:
    if not isinstance(parity, dict):
        print(f"loss check: {parity}")
        return
    grads = ", ".join(f"{n} {v:.1e}" for n, v in parity["grad_rel_diff"].items())
    print(f"loss check against the reference trainer (same weights, batch and {parity['n_dead']} dead latents"
          f"{'' if parity['same_dead'] else ', DEAD SETS DIFFER'}): loss {parity['loss']:.6g} vs "
          f"{parity['reference_loss']:.6g} (rel. diff {parity['loss_rel_diff']:.1e}); gradients max rel. diff {grads}")


def print_table(args, ours: dict, theirs: dict | str) -> None:
    ref_name = theirs["impl"] if isinstance(theirs, dict) else "reference"
    print(f"SAE benchmark: d {args.d}, m {args.m}, k {args.k}, groups {ours['group_sizes']}, "
          f"batch {args.batch_tokens} tokens, {args.steps} timed steps after {args.warmup} warm-up, "
          f"device {ours['device']}, torch {ours['torch']}, {ours['threads']} threads")
    print(f"reference: {ref_name}" if isinstance(theirs, dict) else theirs)
    rows = [("training throughput (tokens/s)", ours["tokens_per_s"], _get(theirs, "tokens_per_s"), True),
            ("training step (s)", ours["step_s"], _get(theirs, "step_s"), False)]
    for n, v in ours["latency_s"].items():
        rows.append((f"inference encode+decode, {n} tokens (ms)", 1e3 * v,
                     None if _get(theirs, "latency_s") is None else 1e3 * theirs["latency_s"][n], False))
    print(f"{'':44s} {'ours':>12s} {'reference':>12s} {'speed-up':>9s}")
    for name, a, b, higher_is_better in rows:
        ratio = "" if b is None else f"{(a / b if higher_is_better else b / a):8.2f}×"
        print(f"{name:44s} {a:12.4g} {('—' if b is None else f'{b:.4g}'):>12s} {ratio:>9s}")


def _get(theirs, key):
    return theirs.get(key) if isinstance(theirs, dict) else None


def _sync(device) -> None:
    import torch
    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
