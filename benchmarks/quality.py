"""Quality of the bundled demo concept model, concept path vs. opaque path (issue: demo model).

* Segmentation: composite images with exact masks — 2×2 mosaics of crops of different sample
  photos (classes named by the photo's content); mIoU through concepts and from raw features.
* Zero-shot classification: crops labelled by their source photo, both paths.
* SAE quality on those images: FVU, mean active concepts per patch, concepts alive.

The crops are drawn with a seed different from the one that made the demo model's training
views, but they come from the same seven photos: this measures the pipeline, not generalisation
to unseen photos (no other licensed photos ship with the project).

    .venv/bin/python benchmarks/quality.py [--model resources/models/demo-concepts.zip] [--n 24]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from PIL import Image

from insight_desktop.core.engine import Analyzer
from insight_desktop.core.images import load_image
from insight_desktop.core.paths import resource_path
from insight_desktop.core.tasks.datasets import confusion, mean_iou

CLASSES = {  # sample photo → class prompt named by its content
    "chelsea.png": "cat", "coffee.png": "coffee cup", "rocket.jpg": "rocket", "astronaut.png": "astronaut",
    "flower.jpg": "flower", "camera.png": "camera", "china.jpg": "temple",
}


def crop(rgb: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return np.asarray(Image.fromarray(rgb[top:top + side, left:left + side]).resize((size, size), Image.BICUBIC))


def mosaic(photos: dict[str, np.ndarray], rng: np.random.Generator, tile: int = 224):
    names = list(photos)
    picks = rng.choice(len(names), size=4, replace=False)
    image = np.zeros((2 * tile, 2 * tile, 3), np.uint8)
    mask = np.zeros((2 * tile, 2 * tile), np.int64)
    for q, k in enumerate(picks):
        y, x = divmod(q, 2)
        image[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile] = crop(photos[names[k]], tile, rng)
        mask[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile] = k
    return image, mask


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(resource_path("models", "demo-concepts.zip")))
    p.add_argument("--n", type=int, default=24, help="mosaics (and crops per photo / 2)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()
    analyzer = Analyzer(args.model, device=args.device)
    photos = {name: load_image(resource_path("samples", name)) for name in CLASSES}
    classes = list(CLASSES.values())
    C = len(classes)

    conf_concept, conf_opaque = np.zeros((C, C + 1), np.int64), np.zeros((C, C + 1), np.int64)
    fvus, l0s, alive = [], [], np.zeros(analyzer.model.n_concepts, bool)
    for _ in range(args.n):
        image, mask = mosaic(photos, rng)
        a = analyzer.analyze(image, classes=classes, classify=False)
        seg = a.segmentation
        conf_concept += confusion(seg.labels, mask, C)
        conf_opaque += confusion(seg.opaque_labels, mask, C)
        fvus.append(a.faithfulness.fvu)
        l0s.append(a.codes.values.size / (a.grid[0] * a.grid[1]))
        alive[a.codes.indices] = True

    correct_concept = correct_opaque = total = 0
    for k, name in enumerate(CLASSES):
        crops = [crop(photos[name], 224, rng) for _ in range(max(2, args.n // 2))]
        for pooled in analyzer.pooled(crops):
            res = analyzer.zero_shot(pooled, classes)
            correct_concept += int(np.argmax(res.logits) == k)
            correct_opaque += int(np.argmax(res.opaque_logits) == k)
            total += 1

    miou_c, miou_o = mean_iou(conf_concept), mean_iou(conf_opaque)
    rows = [
        ("segmentation mIoU (2×2 mosaics, %d images)" % args.n, f"{miou_c:.3f}", f"{miou_o:.3f}",
         f"{miou_c / miou_o:.2f}×" if miou_o else "—"),
        ("zero-shot accuracy (%d crops, %d classes)" % (total, C), f"{correct_concept / total:.3f}",
         f"{correct_opaque / total:.3f}", f"{correct_concept / max(correct_opaque, 1):.2f}×"),
    ]
    print(f"model: {args.model}\nbackbone: {analyzer.backbone.id}\n")
    print(f"{'':<46}{'concepts':>10}{'opaque':>10}{'ratio':>8}")
    for r in rows:
        print(f"{r[0]:<46}{r[1]:>10}{r[2]:>10}{r[3]:>8}")
    print(f"\nSAE on these images: FVU {np.mean(fvus):.3f} (mean per image), "
          f"{np.mean(l0s):.1f} active concepts per patch (k = {analyzer.model.sae_config.k}), "
          f"{alive.sum()} / {alive.size} concepts fired")
    print(f"({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
