"""SAE benchmark at the reference size (SPEC §2: d 512, m 8192, k 12, batches of 16 k tokens):
training throughput and inference latency of Insight Desktop's trainer against the reference
implementation the authors used, dictionary_learning's ``MatryoshkaBatchTopKTrainer``.

The reference runs in its own virtualenv (``.venv-bench``, made by ``setup_bench_env.sh``) as a
subprocess of this script, in the same run, on the same random data distribution (N(0, 1)
tokens), with the same torch version and thread count. Training is timed per step after warm-up
(median); inference is encode + decode with an inference threshold θ = 3.0 (≈ k active concepts
per token on this data) of one image (196 tokens) and of one 16 k batch.

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
    result = train_sae(ArrayTokenSource(tokens), config,
                       TrainConfig(batch_tokens=args.batch_tokens, epochs=1.0, checkpoint_every=0),
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

    # Reference first: it allocates more, and the two runs must not overlap.
    theirs = "skipped (--skip-reference)" if args.skip_reference else bench_reference(args)
    ours = bench_ours(args)
    print_table(args, ours, theirs)
    if args.json:
        print(json.dumps({"ours": ours, "reference": theirs}, indent=2))
    return 0


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
