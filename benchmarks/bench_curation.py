"""How long saving (and reading) a curation takes: 8192 concepts, all reviewed, every one with a note.

    .venv/bin/python benchmarks/bench_curation.py [--concepts 8192] [--repeat 20]

The app saves after every change (issue: autosave), so "save after one change" is the number that
matters: it is the whole file rewritten atomically (temporary file, fsync, rename), with the
records' lines kept serialised between saves. The baseline is writing the same bytes with the
same atomic write (:func:`insight_desktop.core.fileio.atomic_write_bytes`) in the same process:
the ratio says how much the curation adds on top of what the disk costs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from timing import timed

from insight_desktop.core.curation import Curation, load_curation
from insight_desktop.core.fileio import atomic_write_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    n = args.concepts
    c = Curation("ab" * 32, n, user="annotator", model_label="bench.zip")
    c.accept(range(0, n, 2))
    for j in range(1, n, 2):
        c.rename(j, f"a longer concept name {j}")
    for j in range(n):
        c.note(j, f"note on concept {j}: fires on the rims of cups and bowls, not on plates; check again")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.insight-curation.json"
        data = c.to_bytes()
        baseline = timed(lambda: atomic_write_bytes(Path(tmp) / "baseline.json", data), args.repeat)
        first = timed(lambda: (c._lines.clear(), c.save(path)), args.repeat)
        k = iter(range(10**9))
        after_one = timed(lambda: (c.rename(next(k) % n, f"renamed {next(k)}"), c.save(path)), args.repeat)
        serialise = timed(c.to_bytes, args.repeat)
        load = timed(lambda: load_curation(path), max(3, args.repeat // 4))
        size = path.stat().st_size
    print(f"curation of {n} concepts, all reviewed with notes: {size / 1e6:.2f} MB")
    print(f"{'step':<34} {'median ms':>10} {'× baseline':>11}")
    for name, t in (("atomic write of the bytes (baseline)", baseline), ("save, nothing cached", first),
                    ("change one concept + save", after_one), ("serialise only (cached lines)", serialise),
                    ("load + validate", load)):
        print(f"{name:<34} {1000 * t:>10.1f} {t / baseline:>11.2f}")


if __name__ == "__main__":
    main()
