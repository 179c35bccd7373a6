"""Runs INSIDE .venv-bench: times dictionary_learning's MatryoshkaBatchTopKTrainer (the authors'
reference implementation, PyPI ``dictionary-learning`` 0.1.0) and prints one JSON line.

Started as a subprocess by ``bench_sae.py``; not part of the app. It imports the third-party
package at run time; nothing of it is copied here. The trainer is used as its authors use it:
``trainer.update(step, activations)`` per batch (step 0 also sets b_dec to the geometric median).

With ``--parity-in IN --parity-out OUT`` it instead evaluates the trainer's own ``loss`` once, on
the weights, batch and planted dead latents in IN (written by ``bench_sae.py``), and writes the
loss and the gradients of W_enc, b_enc, W_dec, b_dec to OUT, for ``bench_sae.py`` to compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import types


def _import_trainer():
    try:
        from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKTrainer
    except ModuleNotFoundError as exc:
        if exc.name != "nnsight":
            raise
        # The package __init__ imports nnsight for ActivationBuffer, which is not used here; an
        # empty stand-in keeps a --no-deps install usable. The trainer code itself is unchanged.
        stub = types.ModuleType("nnsight")
        stub.LanguageModel = object
        sys.modules["nnsight"] = stub
        from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKTrainer
    return MatryoshkaBatchTopKTrainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--m", type=int, default=8192)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fractions", default="0.008,0.03,0.06,0.12,0.24,0.542")
    ap.add_argument("--threshold", type=float, required=True, help="inference threshold θ for the latency test")
    ap.add_argument("--parity-in", default=None, help="safetensors file: weights, batch x, planted dead latents")
    ap.add_argument("--parity-out", default=None, help="where to write the reference loss and gradients")
    args = ap.parse_args()
    if args.parity_in:
        loss_and_grads(args)
        return

    import importlib.metadata as md

    import torch

    Trainer = _import_trainer()
    torch.manual_seed(0)
    fractions = [float(f) for f in args.fractions.split(",")]
    total = args.warmup + args.steps
    trainer = Trainer(steps=total + 1, activation_dim=args.d, dict_size=args.m, k=args.k, layer=0,
                      lm_name="benchmark", group_fractions=fractions, lr=1e-4, warmup_steps=0,
                      threshold_start_step=1000, device=args.device, seed=0)
    gen = torch.Generator().manual_seed(1)
    times = []
    for step in range(total):
        x = torch.randn(args.batch_tokens, args.d, generator=gen).to(args.device)
        _sync(args.device)
        t0 = time.perf_counter()
        trainer.update(step, x)
        _sync(args.device)
        times.append(time.perf_counter() - t0)
    train_s = statistics.median(times[args.warmup:])

    ae = trainer.ae.eval()
    ae.threshold.fill_(args.threshold)
    latency = {}
    with torch.no_grad():
        for n in (196, args.batch_tokens):
            x = torch.randn(n, args.d, generator=gen).to(args.device)
            runs = []
            for _ in range(4):
                _sync(args.device)
                t0 = time.perf_counter()
                ae.decode(ae.encode(x))
                _sync(args.device)
                runs.append(time.perf_counter() - t0)
            latency[str(n)] = statistics.median(runs[1:])
    print(json.dumps({"impl": f"dictionary_learning {md.version('dictionary-learning')} MatryoshkaBatchTopKTrainer",
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "step_s": train_s, "tokens_per_s": args.batch_tokens / train_s,
                      "latency_s": latency, "group_sizes": trainer.group_sizes}))


def loss_and_grads(args) -> None:
    """One call of the reference ``MatryoshkaBatchTopKTrainer.loss`` (step 0: no θ update) + backward."""
    import torch
    from safetensors.torch import load_file, save_file

    Trainer = _import_trainer()
    data = load_file(args.parity_in, device=args.device)
    fractions = [float(f) for f in args.fractions.split(",")]
    trainer = Trainer(steps=10, activation_dim=args.d, dict_size=args.m, k=args.k, layer=0, lm_name="benchmark",
                      group_fractions=fractions, lr=1e-4, warmup_steps=0, device=args.device, seed=0)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(trainer.ae, name).copy_(data[name])
        # Planted dead latents: "not fired for ≥ dead_feature_threshold tokens" before this batch.
        trainer.num_tokens_since_fired.zero_()
        trainer.num_tokens_since_fired[data["dead"].bool()] = trainer.dead_feature_threshold
    trainer.ae.zero_grad()
    loss = trainer.loss(data["x"], step=0)
    loss.backward()
    out = {f"grad.{n}": getattr(trainer.ae, n).grad.detach().cpu().contiguous()
           for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    out["loss"] = loss.detach().cpu().reshape(1)
    out["dead_after"] = (trainer.num_tokens_since_fired >= trainer.dead_feature_threshold).cpu().to(torch.int8)
    save_file(out, args.parity_out)
    print(json.dumps({"loss": float(loss), "n_dead": int(trainer.dead_features)}))


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
