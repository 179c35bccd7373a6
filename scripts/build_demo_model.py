"""Build the bundled demo concept model (seeded, reproducible): `make demo-model`.

Augmented views (random resized crops, flips) of the sample photos in resources/samples are
written to a temporary folder and turned into a bundle by the project's own `build_model`, on the
offline `demo-effnet-minilm` backbone. Output: resources/models/demo-concepts.zip (≤ 25 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "models" / "demo-concepts.zip"


def write_views(folder: Path, per_image: int, size: int, seed: int) -> int:
    from insight_desktop.core.images import load_image
    from insight_desktop.core.paths import sample_images

    rng = np.random.default_rng(seed)
    n = 0
    for path in sample_images():
        rgb = load_image(path)
        h, w = rgb.shape[:2]
        for i in range(per_image):
            side = int(min(h, w) * np.sqrt(rng.uniform(0.25, 1.0)))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            view = Image.fromarray(rgb[top:top + side, left:left + side]).resize((size, size), Image.BICUBIC)
            if rng.random() < 0.5:
                view = view.transpose(Image.FLIP_LEFT_RIGHT)
            view.save(folder / f"{path.stem}-{i:03d}.png")
            n += 1
    return n


def main(argv=None) -> int:
    from insight_desktop.core.backbones import create_backbone
    from insight_desktop.core.build import BuildOptions, StageProgress, build_model
    from insight_desktop.core.fileio import atomic_write_bytes

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--views", type=int, default=48, help="augmented views per sample photo")
    p.add_argument("--concepts", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    backbone = create_backbone("demo-effnet-minilm", device="cpu")
    # 4 top patches per thumbnail keeps the bundle under 25 MB.
    options = BuildOptions(size=448, n_concepts=args.concepts, k=12, thumbnails_per_concept=4,
                           train={"epochs": 25, "batch_tokens": 4096, "lr": 1e-3, "dead_tokens": 200_000,
                                  "threshold_start_step": 100, "seed": args.seed, "checkpoint_every": 0})
    last = {"stage": None}

    def progress(p: StageProgress) -> None:
        if p.stage != last["stage"]:
            last["stage"] = p.stage
            print(f"[{time.monotonic() - t0:6.1f} s] {p.stage}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        n = write_views(Path(tmp), args.views, 448, args.seed)
        print(f"{n} augmented views", file=sys.stderr)
        tmp_out = Path(tmp) / "demo-concepts.zip"
        build_model(tmp, tmp_out, backbone, options, device="cpu", command="scripts/build_demo_model.py",
                    on_progress=progress)
        atomic_write_bytes(args.out, tmp_out.read_bytes())
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB) in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
