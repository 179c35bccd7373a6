"""Benchmark of the relation pass (docs/method.md §4): speed and memory of RelationsAccumulator at the
reference size (m = 8192, k = 12, batches of 16 k tokens) against the dense storage the authors
use (a [m, 30, m] float32 top-30 tensor ≈ 8 GB plus two dense m×m float32 matrices ≈ 0.5 GB).

Synthetic codes with realistic structure (see :class:`SyntheticCodes`): Zipf-like concept
frequencies, a planted concept hierarchy (ancestors co-fire with their descendants) and
topic-correlated co-occurrence, so C and D are neither trivially small nor dense.

Peak memory is measured as peak-RSS growth: each measurement runs in a fresh subprocess, and the
same subprocess that does everything *except* the measured step (same imports, same synthetic
data generation) is the baseline subtracted from it.

    .venv/bin/python benchmarks/bench_relations.py                 # 10 M tokens (≈ 2 min on 2 cores)
    .venv/bin/python benchmarks/bench_relations.py --tokens 1e6    # quick run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

GB = 1e9


class SyntheticCodes:
    """A stream of [n, k] top-k codes with structure.

    * Levels as in the reference SAE (group fractions of docs/method.md §2); every concept below level 1
      has a parent one level up, so each concept has an ancestor chain of up to 5 concepts.
    * Each token belongs to a *topic* (Zipf-popular, ``n_topics`` of them), whose vocabulary is
      ``topic_size`` concepts of levels ≥ 3. A token fires ``seeds`` concepts of its topic
      (Zipf within the topic) and each of their ancestors with probability ``p_ancestor`` —
      so D̂(child, parent) ≈ p_ancestor, and parents are planted — plus ``noise`` concepts drawn
      from a global Zipf law (the long tail of rare, unrelated co-occurrences).
    * Duplicates are removed, at most ``k`` concepts kept, values log-normal.
    """

    def __init__(self, m: int = 8192, k: int = 12, seed: int = 0, n_topics: int = 2048, topic_size: int = 64,
                 seeds: int = 3, p_ancestor: float = 0.9, noise: int = 1, zipf: float = 1.1):
        self.m, self.k, self.seeds, self.noise, self.p_ancestor = m, k, seeds, noise, p_ancestor
        self.rng = np.random.default_rng(seed)
        ends = np.cumsum(_group_sizes(m))
        self.group_ends = tuple(int(e) for e in ends)
        starts = np.r_[0, ends[:-1]]
        self.parent = np.full(m, -1, dtype=np.int64)
        for lvl in range(1, len(ends)):
            self.parent[starts[lvl]:ends[lvl]] = self.rng.integers(starts[lvl - 1], ends[lvl - 1],
                                                                   ends[lvl] - starts[lvl])
        depth = len(ends) - 1
        self.ancestors = np.full((m, depth), -1, dtype=np.int64)
        cur = np.arange(m)
        for d in range(depth):
            cur = np.where(cur >= 0, self.parent[np.maximum(cur, 0)], -1)
            self.ancestors[:, d] = cur
        self.topic_vocab = self.rng.integers(starts[2], m, size=(n_topics, topic_size))
        self.topic_cdf = _zipf_cdf(n_topics, zipf)
        self.within_cdf = _zipf_cdf(topic_size, 1.0)
        self.noise_perm = self.rng.permutation(m)
        self.noise_cdf = _zipf_cdf(m, zipf)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng, m = self.rng, self.m
        topic = _draw(rng, self.topic_cdf, n)
        seeds = self.topic_vocab[topic[:, None], _draw(rng, self.within_cdf, (n, self.seeds))]
        chain = np.concatenate([seeds[:, :, None], self.ancestors[seeds]], axis=2)        # [n, s, 1+depth]
        chain[:, :, 1:][rng.random(chain[:, :, 1:].shape) >= self.p_ancestor] = -1
        noise = self.noise_perm[_draw(rng, self.noise_cdf, (n, self.noise))]
        cand = np.concatenate([chain.reshape(n, -1), noise], axis=1)
        # Keep the first occurrence of every concept, in candidate order, then the first k.
        prio = np.broadcast_to(np.arange(cand.shape[1]), cand.shape).copy()
        prio[cand < 0] = 1 << 20
        order = np.lexsort((prio, np.where(cand < 0, m, cand)), axis=1)
        sc = np.take_along_axis(cand, order, 1)
        dup = np.zeros_like(sc, dtype=bool)
        dup[:, 1:] = sc[:, 1:] == sc[:, :-1]
        sp_ = np.take_along_axis(prio, order, 1)
        sp_[dup | (sc < 0)] = 1 << 20
        first = np.argsort(sp_, axis=1, kind="stable")[:, :self.k]
        idx = np.take_along_axis(sc, first, 1)
        valid = np.take_along_axis(sp_, first, 1) < (1 << 20)
        val = rng.lognormal(0.0, 0.6, idx.shape).astype(np.float32) * valid
        return np.where(valid, idx, 0), val


def _group_sizes(m: int) -> list[int]:
    """docs/method.md §2 group sizes (same as sae.config.group_sizes_from_fractions, which would import torch
    through the sae package and blur the memory baseline)."""
    sizes = [int(f * m) for f in (0.008, 0.03, 0.06, 0.12, 0.24)]
    return sizes + [m - sum(sizes)]


def _zipf_cdf(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return np.cumsum(p / p.sum())


def _draw(rng, cdf: np.ndarray, size) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), cdf.size - 1)


# ------------------------------------------------------------------------------- child
def child(args) -> dict:
    """One measured run; ``args.mode`` is 'baseline', 'pass' or 'full' (pass + relations + derived)."""
    from insight_desktop.core.concepts.codes import SparseCodes
    from insight_desktop.core.concepts.compute import RelationsAccumulator

    gen = SyntheticCodes(m=args.m, k=args.k, seed=args.seed)
    acc = RelationsAccumulator(args.m, top_n=args.top_n) if args.mode != "baseline" else None
    t_update = t_gen = 0.0
    active = held_peak = 0
    done = 0
    t_start = time.perf_counter()
    while done < args.tokens:
        n = min(args.batch, args.tokens - done)
        t0 = time.perf_counter()
        idx, val = gen.batch(n)
        codes = SparseCodes.from_topk(idx, val, args.m)
        ids = np.arange(done, done + n, dtype=np.int64)
        t1 = time.perf_counter()
        t_gen += t1 - t0
        active += codes.nnz
        if acc is not None:
            acc.update(codes, ids)
            t_update += time.perf_counter() - t1
            held_peak = max(held_peak, acc.memory_bytes())
        done += n
    out = {"mode": args.mode, "tokens": done, "active_per_token": active / max(done, 1), "t_gen": t_gen,
           "t_update": t_update, "t_total": time.perf_counter() - t_start, "held_peak": held_peak,
           "maxrss_pass": _maxrss()}
    if args.mode == "pass":
        c, d = acc.pair_matrices(release=True)  # what finishing the pass costs, without the rest
        out["nnz"], out["c_equals_d_pattern"] = int(d.nnz), bool(c.nnz == d.nnz)
    elif args.mode == "full":
        t0 = time.perf_counter()
        rel = acc.to_relations(gen.group_ends, release=True)
        del acc
        _ = rel.d_hat, rel.display_parent, rel.mu
        out["t_finalize"] = time.perf_counter() - t0
        out["nnz"] = int(rel.D.nnz)
        out["edges"] = int(rel.parent_matrix.nnz)
        out["dropped"] = int(len(rel.dropped_edges))
        out["mu_nnz"] = int(rel.mu.nnz)
        out["top_codes_nnz"] = int(rel.top_codes.nnz)
        arrays, _meta = rel.to_arrays()
        out["file_bytes"] = int(sum(a.nbytes for a in arrays.values()))
        # Planted parents recovered: concepts that fired ≥ 50 times whose planted parent
        # passes τ (D̂ ≈ p_ancestor = 0.9 by construction).
        child_ids = np.flatnonzero((gen.parent >= 0) & (rel.f >= 50))
        planted = np.asarray(rel.d_hat[child_ids, gen.parent[child_ids]]).ravel()
        out["planted_checked"] = int(child_ids.size)
        out["planted_recovered"] = float((planted > rel.tau).mean()) if child_ids.size else float("nan")
    out["maxrss"] = _maxrss()
    return out


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_child(mode: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--tokens", str(args.tokens), "--batch", str(args.batch),
           "--m", str(args.m), "--k", str(args.k), "--top-n", str(args.top_n), "--seed", str(args.seed)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=float, default=10_000_000, help="synthetic tokens (default 10 M)")
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--m", type=int, default=8192)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--top-n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", choices=["baseline", "pass", "full"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.tokens = int(args.tokens)
    if args.child:
        args.mode = args.child
        print(json.dumps(child(args)))
        return

    print(f"relations benchmark: {args.tokens:,} synthetic tokens, m = {args.m}, k = {args.k}, "
          f"batch {args.batch:,}, top-{args.top_n}", flush=True)
    base = run_child("baseline", args)
    print(f"  baseline (generation only) done: {base['t_total']:.1f} s", flush=True)
    ps = run_child("pass", args)
    print(f"  pass done: {ps['t_update']:.1f} s in update()", flush=True)
    full = run_child("full", args)
    print(f"  pass + relations done: {full['t_finalize']:.1f} s to finalise", flush=True)

    m, n_top = args.m, args.top_n
    dense_top = m * n_top * m * 4
    dense_cd = 2 * m * m * 4
    dense = dense_top + dense_cd
    pass_peak = ps["maxrss_pass"] - base["maxrss"]
    full_peak = full["maxrss"] - base["maxrss"]
    rows = [
        ("tokens", f"{ps['tokens']:,}", ""),
        ("active concepts / token", f"{ps['active_per_token']:.2f}", f"k = {args.k}"),
        ("update() throughput", f"{ps['tokens'] / ps['t_update']:,.0f} tokens/s", f"{ps['t_update']:.1f} s"),
        ("finalise (C, D, D̂, DAG, tree, μ)", f"{full['t_finalize']:.1f} s", ""),
        ("nnz(C) = nnz(D)", f"{ps['nnz']:,}", f"{ps['nnz'] / m**2:.1%} of m²"),
        ("nnz(μ), nnz(top codes)", f"{full['mu_nnz']:,}, {full['top_codes_nnz']:,}", ""),
        ("parent edges (τ = 0.75), dropped", f"{full['edges']:,}, {full['dropped']:,}",
         f"planted parents recovered {full['planted_recovered']:.1%} of {full['planted_checked']:,}"),
        ("accumulator arrays, peak", f"{ps['held_peak'] / GB:.3f} GB", "sum of array sizes during the pass"),
        ("peak RSS growth, pass", f"{pass_peak / GB:.3f} GB", "vs. same process without update()"),
        ("peak RSS growth, pass + C, D out", f"{(ps['maxrss'] - base['maxrss']) / GB:.3f} GB",
         "accumulator released block by block"),
        ("peak RSS growth, pass + finalise", f"{full_peak / GB:.3f} GB", "Relations with D̂, DAG, tree, μ"),
        ("Relations arrays (file size)", f"{full['file_bytes'] / GB:.3f} GB", ""),
        (f"dense reference: top-{n_top} [m,{n_top},m] f32", f"{dense_top / GB:.3f} GB", ""),
        ("dense reference: C, D [m,m] f32", f"{dense_cd / GB:.3f} GB", ""),
        ("dense reference total", f"{dense / GB:.3f} GB", ""),
        ("ours / dense (pass peak)", f"{pass_peak / dense:.3f}", f"{dense / max(pass_peak, 1):.1f}× smaller"),
        ("ours / dense (pass + finalise)", f"{full_peak / dense:.3f}", f"{dense / max(full_peak, 1):.1f}× smaller"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    print(f"| {'quantity'.ljust(w0)} | {'value'.ljust(w1)} | note")
    print(f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|------")
    for name, value, note in rows:
        print(f"| {name.ljust(w0)} | {value.ljust(w1)} | {note}")


if __name__ == "__main__":
    main()
