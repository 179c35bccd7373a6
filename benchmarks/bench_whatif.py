"""How long "what if" takes: concepts switched off and the prediction recomputed from the Analysis
alone (insight_desktop/core/tasks/whatif.py), on the demo model, a 448-px image and 8 classes.

    .venv/bin/python benchmarks/bench_whatif.py [--image resources/samples/chelsea.png] [--size 448] [--repeat 7]

Target: one switch-off ≤ 100 ms (the app recomputes on the GUI side, no worker round trip). The
baseline is analysing the same image in the same process (prompts cached, so backbone + SAE +
segmentation + classification): the ratio says what a switch costs against asking the worker again.
The first switch of an Analysis also computes its "before" (kept for the next ones): shown apart.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from timing import timed

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "person", "grass", "sky", "building", "flower", "car"]


def main() -> None:
    from PIL import Image

    from insight_desktop.core.engine import Analyzer
    from insight_desktop.core.tasks import deletion, whatif

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "resources/models/demo-concepts.zip"))
    parser.add_argument("--image", default=str(ROOT / "resources/samples/chelsea.png"))
    parser.add_argument("--size", type=int, default=448, help="the image is resized to size × size")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rgb = np.asarray(Image.open(args.image).convert("RGB").resize((args.size, args.size), Image.BICUBIC))
    analyzer = Analyzer(args.model, device=args.device, prompt_cache=False)
    analyzer.analyze(rgb, CLASSES)  # warm-up: class prompts encoded once
    analysis = None

    def analyse():
        nonlocal analysis
        analysis = analyzer.analyze(rgb, CLASSES)

    baseline = timed(analyse, max(3, args.repeat // 2))
    assert analysis is not None
    active = analysis.codes.active_concepts()
    top = analysis.concepts[0].concept
    catalog = analyzer.catalog()
    trees = {c.concept: whatif.subtree(catalog, c.parents[0] if c.parents else c.concept) for c in analysis.concepts}
    root, tree = max(trees.items(), key=lambda kv: (len(kv[1]), -kv[0]))
    rejected = np.random.default_rng(0).choice(active, size=min(50, active.size), replace=False)

    def first_switch():
        fresh = analyzer.analyze(rgb, CLASSES)
        t = time.perf_counter()
        whatif.switch_off(fresh, [top])
        return time.perf_counter() - t

    largest = max(analysis.segmentation.segments, key=lambda s: s.pixels)
    seg_target = deletion.Target(deletion.SEGMENTATION, largest.label)
    cls_target = deletion.Target(deletion.CLASSIFICATION, analysis.classification.predicted)
    whatif.switch_off(analysis, [], keep_residual=False)
    whatif.switch_off(analysis, [], keep_residual=True)
    rows = [
        ("analysis (baseline, same process)", baseline),
        ("first switch-off (+ its 'before')", statistics.median(first_switch() for _ in range(3))),
        ("switch off 1 concept", timed(lambda: whatif.switch_off(analysis, [top]), args.repeat)),
        ("  the same, concepts + residual",
         timed(lambda: whatif.switch_off(analysis, [top], keep_residual=True), args.repeat)),
        (f"switch off a subtree ({len(tree)}, {np.isin(tree, active).sum()} active)",
         timed(lambda: whatif.switch_off(analysis, tree), args.repeat)),
        (f"switch off {rejected.size} 'rejected' concepts",
         timed(lambda: whatif.switch_off(analysis, rejected), args.repeat)),
        ("full explanations of those codes", timed(lambda: whatif.explain(
            analysis, whatif.switch_off(analysis, rejected).codes), args.repeat)),
        ("level prefix (explained)", timed(lambda: whatif.level_prefix(analysis, 3), args.repeat)),
        ("level curve (all levels)", timed(lambda: whatif.level_curve(analysis), max(3, args.repeat // 2))),
        ("deletion curve, segment, top (20 steps)", timed(lambda: deletion.deletion_curve(analysis, seg_target), 3)),
        ("deletion curve, segment, random ×3", timed(lambda: deletion.deletion_curve(
            analysis, seg_target, order=deletion.RANDOM), 3)),
        ("deletion curve, class logit, top (20)", timed(lambda: deletion.deletion_curve(analysis, cls_target), 3)),
    ]
    h, w = analysis.image_size
    print(f"{Path(args.image).name} at {h}×{w}, grid {analysis.grid}, {active.size} active concepts, "
          f"{len(CLASSES)} classes, d = {analysis.decoder.dim}; subtree of concept {root}")
    print(f"{'step':<42} {'median ms':>10} {'× analysis':>11}")
    for name, t in rows:
        print(f"{name:<42} {1000 * t:>10.1f} {t / baseline:>11.4f}")
    one = rows[2][1]
    print(f"target: one switch-off ≤ 100 ms: {'met' if one <= 0.1 else 'NOT met'} ({1000 * one:.0f} ms)")
    analyzer.close()


if __name__ == "__main__":
    main()
