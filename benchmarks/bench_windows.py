"""Sliding-window modes compared: "fast" (features averaged, encoded once) vs "reference"
(each window encoded, class probabilities averaged — what ``insight eval-seg`` uses).

For every sample photo (all need several 448-px windows at the analysed scale) it prints the
share of pixels whose label differs between the two modes — over the whole image and over the
pixels where windows overlap (the only place they can differ) — for the concept path and the
opaque path, and the wall time of ``analyze`` (fast), ``segment_windows`` (reference labels only,
as eval-seg runs it) and ``analyze(window_mode="reference")`` (labels plus concept maps and
explanations). Times are the best of ``--repeat`` runs after one warm-up.

The modes also place windows differently: the fast path's windows start on patch boundaries of
the padded canvas, the reference's last window is flush with the unpadded border (e.g. x = 223
instead of 224 for a 671-px-wide analysed image), so its patches are shifted and pixels outside
the overlaps can change label too.

    .venv/bin/python benchmarks/bench_windows.py [--model resources/models/demo-concepts.zip] [--background]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from insight_desktop.core.engine import Analyzer
from insight_desktop.core.images import load_image, tile_boxes
from insight_desktop.core.paths import resource_path
from insight_desktop.core.tasks.windows import analysis_size

PHOTOS = {  # sample photo → class prompt named by its content (as benchmarks/quality.py)
    "chelsea.png": "cat", "coffee.png": "coffee cup", "rocket.jpg": "rocket", "astronaut.png": "astronaut",
    "flower.jpg": "flower", "camera.png": "camera", "china.jpg": "temple",
}
#: generic scene classes, so that every photo has several plausible labels to choose from
SCENE = ["sky", "grass", "wall", "table", "person", "building", "tree", "water"]


def overlap_mask(image_size: tuple[int, int], window: int = 448, stride: int = 224) -> np.ndarray:
    """Pixels of the original image whose analysed position lies in two or more reference windows."""
    size = analysis_size(*image_size, window)
    count = np.zeros(image_size, np.int32)
    ys = (np.arange(image_size[0]) + 0.5) * size[0] / image_size[0]
    xs = (np.arange(image_size[1]) + 0.5) * size[1] / image_size[1]
    for top, left, bottom, right in tile_boxes(size[0], size[1], window, stride):
        count[np.ix_((ys >= top) & (ys < bottom), (xs >= left) & (xs < right))] += 1
    return count > 1


def best_time(fn, repeat: int) -> tuple[float, object]:
    result, best = fn(), float("inf")  # the first call warms caches (text embeddings, kernels)
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(resource_path("models", "demo-concepts.zip")))
    p.add_argument("--device", default="auto")
    p.add_argument("--background", action="store_true", help="FOUND background too (if the backbone has it)")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    analyzer = Analyzer(args.model, device=args.device)
    classes = list(PHOTOS.values()) + SCENE
    print(f"model {args.model} on {analyzer.device}; {len(classes)} classes"
          + (" + FOUND background" if args.background else ""))
    header = (f"{'photo':<14} {'size':>9} {'win':>3} {'overlap':>7} | {'differ: all':>11} {'in overlap':>10} "
              f"{'opaque':>7} | {'fast s':>7} {'ref s':>7} {'ref+expl s':>10}")
    print(header)
    print("-" * len(header))
    rows = []
    kw = dict(background=args.background)
    for name in PHOTOS:
        rgb = load_image(resource_path("samples", name))
        t_fast, fast = best_time(lambda rgb=rgb: analyzer.analyze(rgb, classes, classify=False, **kw), args.repeat)
        t_ref, ref = best_time(lambda rgb=rgb: analyzer.segment_windows(rgb, classes, **kw), args.repeat)
        t_full, _ = best_time(lambda rgb=rgb: analyzer.analyze(rgb, classes, classify=False, window_mode="reference",
                                                               **kw), args.repeat)
        seg = fast.segmentation
        overlap = overlap_mask(rgb.shape[:2])
        differ = seg.labels != ref.labels
        in_overlap = differ[overlap].mean() if overlap.any() else 0.0
        opaque = (seg.opaque_labels != ref.opaque_labels).mean()
        rows.append((fast.windows, differ.mean(), in_overlap, opaque, t_fast, t_ref, t_full))
        print(f"{name:<14} {rgb.shape[1]:>4}×{rgb.shape[0]:<4} {fast.windows:>3} {100 * overlap.mean():>6.1f}% | "
              f"{100 * differ.mean():>10.2f}% {100 * in_overlap:>9.2f}% {100 * opaque:>6.2f}% | "
              f"{t_fast:>7.3f} {t_ref:>7.3f} {t_full:>10.3f}")
    print("-" * len(header))
    for label, keep in (("mean", lambda r: True), ("mean, ≥2 win", lambda r: r[0] > 1)):
        m = np.mean([r[1:] for r in rows if keep(r)], axis=0)
        print(f"{label:<14} {'':>9} {'':>3} {'':>7} | {100 * m[0]:>10.2f}% {100 * m[1]:>9.2f}% {100 * m[2]:>6.2f}% | "
              f"{m[3]:>7.3f} {m[4]:>7.3f} {m[5]:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
