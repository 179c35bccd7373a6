"""The disk cache of analyses: what a put and a get cost, against computing the analysis again.

For a 448-px image and an 8000×6000 photo (the sample photo resized), one analysis each with
classes and FOUND background on the reference architecture with random weights (ViT-B/16
clip-dinoiser + an SAE of d 512, m 8192, k 12, as ``bench_analyze.py`` builds it) — or on a real
bundle with ``--model`` (e.g. the demo model once ``make demo-model`` has built it). Reported per
image: the time to compute it, the key (sha256 of the pixels), a put (write + fsync + eviction
scan), a get (the file read and the arrays mapped; the page cache is warm, as right after a
put or on a revisit — a cold read adds the disk's transfer time for the bytes shown), the bytes
on disk, and compute ÷ (key + get): how many times faster a revisit is.

    .venv/bin/python benchmarks/bench_analysis_cache.py              # ≈ 2 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_analysis_cache.py --model resources/models/demo-concepts.zip
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CLASSES = ["sky", "rocket", "tower", "grass", "cloud"]


def timed(fn, runs: int = 1):
    times, value = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def row(name: str, rgb, analyzer, cache, model: str, runs: int) -> None:
    """Compute, key, put and get one image's analysis; print one line of the table."""
    import numpy as np

    from insight_desktop.core.analysis_cache import analysis_key, image_digest
    from insight_desktop.core.fileio import format_size

    compute_s, analysis = timed(lambda: analyzer.analyze(rgb, CLASSES, background=True))
    key_s, digest = timed(lambda: image_digest(rgb), runs)
    key = analysis_key(digest, model, CLASSES, background=True)
    put_s, _ = timed(lambda: cache.put(key, analysis))
    get_s, back = timed(lambda: cache.get(key), runs)
    assert back is not None and np.array_equal(back.segmentation.labels, analysis.segmentation.labels)
    size = cache.path(key).stat().st_size
    print(f"{name:>11} {compute_s:>10.2f} {key_s:>7.3f} {put_s:>7.3f} {get_s:>7.3f} {format_size(size):>9} "
          f"{compute_s / (key_s + get_s):>17.0f}×", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a concept bundle (default: the reference architecture, random weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=3, help="timed gets per image (median)")
    ap.add_argument("--large", default="8000x6000", help="W×H of the large image")
    args = ap.parse_args(argv)
    import numpy as np
    from PIL import Image

    from insight_desktop.core.analysis_cache import AnalysisCache, model_identity
    from insight_desktop.core.engine import Analyzer
    from insight_desktop.core.images import load_image
    from insight_desktop.core.paths import sample_images

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            analyzer, what = Analyzer(args.model, device=args.device), Path(args.model).name
        else:
            from bench_analyze import build

            backbone, bundle, _, _ = build(Path(tmp), args.device, 512, 8192, 12, 448)
            analyzer, what = Analyzer(bundle, backbone=backbone, device=args.device), "ViT-B/16 (random) + SAE 8192"
        photo = Image.fromarray(load_image(sample_images()[-1]))
        w, h = (int(v) for v in args.large.lower().split("x"))
        images = {"448×448": np.asarray(photo.resize((448, 448), Image.BICUBIC)),
                  f"{w}×{h}": np.asarray(photo.resize((w, h), Image.BICUBIC))}
        model = model_identity(analyzer.model.manifest)
        cache = AnalysisCache(Path(tmp) / "cache", limit_bytes=10**12)
        analyzer.analyze(images["448×448"], CLASSES, background=True)  # warm-up (text embeddings, kernels)
        print(f"analysis cache benchmark: {what} on {args.device}, {len(CLASSES)} classes + background; "
              f"get = median of {args.runs} (warm page cache)")
        print(f"{'image':>11} {'compute s':>10} {'key s':>7} {'put s':>7} {'get s':>7} {'on disk':>9} "
              f"{'compute/(key+get)':>18}", flush=True)
        for name, rgb in images.items():
            row(name, rgb, analyzer, cache, model, args.runs)
        analyzer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
