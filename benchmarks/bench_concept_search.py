"""Concept search costs at the model sizes the app supports (synthetic names and embeddings).

Per model size m: building the name index (once per model and per rename), one name/id query on
the GUI thread, the baseline it replaced (the tree's plain name substring, ``name_mask``), and
ranking m hierarchy-aware concept embeddings against one query vector (the worker's part after
the text tower; the text tower itself costs ≈ 0.2–1.9 s per uncached query on the demo backbone
on 2 CPU cores, once, then the query cache answers).

    .venv/bin/python benchmarks/bench_concept_search.py [--sizes 8192 20000] [--d 768]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from insight_desktop.core.concepts.naming import ConceptNames, NameCandidate
from insight_desktop.core.concepts.search import NameIndex, rank_text

WORDS = ("space", "shuttle", "rocket", "cat", "dog", "boat", "river", "tree", "bridge", "glass", "rust", "sky",
         "stone", "wheel", "leaf", "window", "coffee", "violin", "tower", "sand")
QUERIES = ("space shuttle", "cat", "#730", "xyzzy")


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def synthetic_names(m: int, rng: np.random.Generator) -> ConceptNames:
    def term() -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 3))))

    names = tuple(f"{term()} ({i})" for i in range(m))
    cands = tuple(tuple(NameCandidate(term(), "noun", "v", 0.2) for _ in range(5)) for _ in range(m))
    return ConceptNames(names, cands, "hierarchy")


def measure(names: ConceptNames, lower: tuple[str, ...], E: np.ndarray, m: int) -> tuple[float, ...]:
    """Seconds: index build, rebuild after a rename, median and slowest query, slowest baseline
    query, text ranking."""
    build = best_of(lambda: NameIndex(names), 3)
    index = NameIndex(names)
    renamed = best_of(lambda: NameIndex(names, previous=index), 3)
    query = [best_of(lambda q=q: index.match(q)) for q in QUERIES]
    base = max(best_of(lambda q=q: np.fromiter((q in n for n in lower), bool, count=m)) for q in QUERIES)
    v = E[7].copy()
    rank = best_of(lambda: rank_text("q", v, E, 0.2))
    return build, renamed, float(np.median(query)), max(query), base, rank


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[8192, 20000])
    p.add_argument("--d", type=int, default=768)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'m':>7} {'index build':>12} {'after rename':>12} {'query median':>13} {'slowest':>9} "
          f"{'baseline name_mask':>19} {'ratio':>6} {'text ranking':>13}")
    for m in args.sizes:
        names = synthetic_names(m, rng)
        lower = tuple(n.lower() for n in names.display_names)
        E = rng.standard_normal((m, args.d)).astype(np.float32)
        E /= np.linalg.norm(E, axis=1, keepdims=True)
        row = measure(names, lower, E, m)
        print(f"{m:>7} {row[0] * 1e3:>9.1f} ms {row[1] * 1e3:>9.1f} ms {row[2] * 1e3:>10.1f} ms "
              f"{row[3] * 1e3:>6.1f} ms {row[4] * 1e3:>16.1f} ms {row[3] / row[4]:>5.1f}× {row[5] * 1e3:>10.1f} ms")
    print("\nqueries:", ", ".join(repr(q) for q in QUERIES), "(best of 5 each; the slowest is 'cat', which "
          "matches a third of these synthetic concepts); the name index matches the shown name and 5 candidate "
          "names per concept, the baseline the shown name only (ratio: slowest query / slowest baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
