"""Folder index: bytes per image, build speed and query latency on synthetic indexes of 1 k and 10 k images.

The synthetic images are planted sparse codes written straight through the store API (no
analysis): ViT-B/16 at 448 px (28 × 28 = 784 patches), m = 8192 concepts, k = 12 per patch.
Codes are spatially coherent like real ones: each image has a few regions, each region a pool
of ~20 concepts drawn with Zipf popularity, and every patch takes 12 of its region's pool;
activations are log-normal. Two sub-folders, ``healthy`` and ``diseased``, differ in a few
planted concepts (so the contrast has something to find).

Real analysis: a few sample images through the demo model (``resources/models/demo-concepts.zip``)
with the analysis + insert rate, when the demo model is there.

    python benchmarks/bench_index.py [--sizes 1000 10000] [--runs 7] [--real 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insight_desktop.core.index import FolderIndex, ImageEntry, IndexStore  # noqa: E402
from insight_desktop.core.tasks.codes import PatchCodes  # noqa: E402

M, GRID, K = 8192, (28, 28), 12
PLANTED = (101, 202, 303)  # fire in most "diseased" images, rarely in "healthy" ones


def planted_codes(rng: np.random.Generator, diseased: bool) -> PatchCodes:
    h, w = GRID
    n = h * w
    popularity = 1.0 / np.arange(1, M + 1) ** 0.8
    popularity /= popularity.sum()
    regions = int(rng.integers(3, 7))
    centres = rng.integers(0, [h, w], size=(regions, 2))
    yy, xx = np.mgrid[:h, :w]
    dist = (yy.reshape(-1, 1) - centres[:, 0]) ** 2 + (xx.reshape(-1, 1) - centres[:, 1]) ** 2
    region = dist.argmin(axis=1)
    pools = [rng.choice(M, size=20, replace=False, p=popularity) for _ in range(regions)]
    if diseased or rng.random() < 0.1:
        pools[0][:3] = PLANTED
    rows = np.empty((n, K), np.int64)
    for r in range(regions):
        where = np.flatnonzero(region == r)
        picks = np.argsort(rng.random((where.size, 20)), axis=1)[:, :K]
        rows[where] = pools[r][picks]
    rows.sort(axis=1)
    values = rng.lognormal(0.0, 0.7, size=(n, K)).astype(np.float32)
    indptr = np.arange(0, n * K + 1, K)
    return PatchCodes(GRID, M, indptr, rows.reshape(-1), values.reshape(-1))


def build_synthetic(path: Path, n_images: int, seed: int = 0) -> tuple[float, float]:
    """Write ``n_images`` planted images; (seconds, codes-generation seconds) — the rate excludes the generation."""
    rng = np.random.default_rng(seed)
    generate = 0.0
    start = time.perf_counter()
    with IndexStore(path, model_identity="synthetic" * 8, n_concepts=M, folder=path.parent) as store:
        for i in range(n_images):
            t = time.perf_counter()
            diseased = i % 2 == 1
            codes = planted_codes(rng, diseased)
            generate += time.perf_counter() - t
            entry = ImageEntry(f"{'diseased' if diseased else 'healthy'}/img{i:05d}.jpg", 100_000 + i, i)
            store.put_image(entry, codes, image_size=(448, 448), analysis_size=(448, 448), patch_size=16,
                            fvu=0.3)  # one transaction per image, as a build commits
        store.compact()
    return time.perf_counter() - start, generate


def median_ms(fn, runs: int) -> float:
    fn()  # warm the page cache once, as an app that has the index open would be
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def query_table(path: Path, runs: int) -> dict[str, float]:
    with FolderIndex(path) as index:
        common = index.top_images(PLANTED[0], 1)[0]
        assert common.max > 0
        frequent = 0  # the most popular concept under Zipf: fires in most images
        return {
            "top 20 images (planted concept)": median_ms(lambda: index.top_images(PLANTED[0], 20), runs),
            "top 20 images (most frequent concept)": median_ms(lambda: index.top_images(frequent, 20), runs),
            "top 20 patches, 1 per image": median_ms(lambda: index.top_patches(PLANTED[0], 20), runs),
            "top 50 patches, no per-image limit": median_ms(lambda: index.top_patches(frequent, 50, per_image=None),
                                                           runs),
            "A and not B (50)": median_ms(lambda: index.a_not_b(PLANTED[0], frequent, 50), runs),
            "frequency per sub-folder": median_ms(lambda: index.frequency(frequent), runs),
            "contrast healthy vs diseased": median_ms(lambda: index.contrast("healthy", "diseased"), runs),
            "image activations (filmstrip sort)": median_ms(lambda: index.image_activations(frequent), runs),
        }


def sizes(path: Path, n_images: int) -> dict[str, float]:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        per_table = dict(con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    except sqlite3.OperationalError:  # SQLite built without dbstat
        per_table = {}
    con.close()
    out = {"file": path.stat().st_size / n_images}
    out.update({name: b / n_images for name, b in sorted(per_table.items())})
    return out


def real_rate(n: int) -> str:
    from insight_desktop.core.index import build_index
    from insight_desktop.core.paths import demo_model_path, sample_images

    model = demo_model_path()
    if n <= 0:
        return "real analysis skipped (--real 0)"
    if model is None:
        return "demo model not built: no real-analysis rate"
    from insight_desktop.core.engine import Analyzer

    analyzer = Analyzer(model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, src in enumerate((sample_images() * n)[:n]):
            (folder / f"{i}{src.suffix}").write_bytes(src.read_bytes())
        start = time.perf_counter()
        summary = build_index(folder, analyzer, index=Path(tmp) / "real.sqlite")
        seconds = time.perf_counter() - start
        import sqlite3

        con = sqlite3.connect(Path(tmp) / "real.sqlite")
        patches, nnz, blobs, raw = con.execute(
            "SELECT avg(n_patches), avg(nnz), avg(length(indptr) + length(concepts) + length(activations)), "
            "avg(4 * (n_patches + 1) + 4 * nnz) FROM images JOIN codes ON id = image_id").fetchone()
        stats_rows = con.execute("SELECT count(*) FROM stats").fetchone()[0] / max(summary.analysed, 1)
        con.close()
    m = analyzer.model.n_concepts
    return (f"real analysis + insert, demo model on CPU (m = {m}): {summary.analysed / seconds:.2f} images/s "
            f"({seconds / max(summary.analysed, 1):.2f} s/image)\n"
            f"  real codes: {patches:.0f} patches, {nnz / patches:.1f} codes/patch, codes blobs {blobs:,.0f} B/image "
            f"(uncompressed {raw:,.0f} B: zlib {raw / blobs:.2f}x), {stats_rows:.0f} stats rows/image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--real", type=int, default=3, help="real images through the demo model (0: skip)")
    ap.add_argument("--dir", default=None, help="keep the synthetic indexes here and reuse them on later runs")
    args = ap.parse_args()
    dense = M * GRID[0] * GRID[1] * 4
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(args.dir or tmp) / f"index{n}.sqlite"
            if args.dir and path.exists():  # built by an earlier run: queries only
                seconds = generate = float("nan")
            else:
                seconds, generate = build_synthetic(path, n)
            results[n] = (seconds, generate, sizes(path, n), query_table(path, args.runs))
    print(f"synthetic: m = {M}, grid {GRID[0]}x{GRID[1]}, k = {K}; dense float32 maps: {dense / 1e6:.1f} MB/image")
    for n, (seconds, generate, size, _) in results.items():
        print(f"\n{n:,} images: build {n / (seconds - generate):,.0f} images/s (one commit per image; "
              f"planting the codes excluded)")
        print(f"  bytes/image: {size['file']:,.0f} ({size['file'] / 1024:.1f} KB; dense / index = "
              f"{dense / size['file']:,.0f}x)")
        for name, b in size.items():
            if name != "file":
                print(f"    {name:<28} {b:>10,.0f}")
    names = list(next(iter(results.values()))[3])
    data = np.random.default_rng(0).random(1_000_000)
    baseline = median_ms(lambda: np.sort(data), args.runs)  # this machine's speed now, to compare runs by
    print(f"\nquery latency, median of {args.runs} runs (ms; same-process baseline: np.sort of 1e6 floats "
          f"= {baseline:.1f} ms):")
    print(f"  {'query':<40}" + "".join(f"{n:>10,}" for n in results))
    for q in names:
        print(f"  {q:<40}" + "".join(f"{results[n][3][q]:>10.2f}" for n in results))
    print()
    print(real_rate(args.real))


if __name__ == "__main__":
    main()
