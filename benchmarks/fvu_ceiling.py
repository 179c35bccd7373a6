"""How low can held-out FVU go on the demo backbone? SAEs of several sizes, sparsities, training
lengths and data shares, one table (docs/demo-model.md, "Why held-out FVU stays far above 0.35").

Every run trains a Matryoshka BatchTopK SAE with the demo build's training settings
(``scripts/build_demo_model.py``) and reports:

* **held-out FVU**: per photo against its own mean, averaged over the 76 held-out photos of
  ``resources/demo-photos/photos.csv`` (cut-outs on mid-grey), on the features the app analyses
  (sliding windows), as ``benchmarks/naming_quality.py`` measures it;
* **train FVU**: the same on 40 of the training views;
* **L0**: active concepts per held-out patch at inference (the learned threshold θ).

A run is ``SOURCE:M:K:EPOCHS``; SOURCE is ``heldout`` (trained on the held-out photos themselves:
the memorisation limit no honest model can beat), ``all`` or ``fracF`` (a seeded share F of the
training views). The default runs are the table of docs/demo-model.md (about 45 min on two idle
cores); ``--quick`` divides every epoch count by 10 to check the script.

Features are extracted once into ``--work`` (the 987 seeded training views of the build, a token
store, and the held-out features: about 8 min) and reused by later runs.

Usage: ``python benchmarks/fvu_ceiling.py [--work DIR] [--runs heldout:1024:12:50 all:1024:32:10 …] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from build_demo_model import SIZE, training_photos, write_views  # noqa: E402
from fetch_demo_photos import default_cache  # noqa: E402
from naming_eval import backdrop, composite, load_rgba  # noqa: E402
from naming_quality import read_heldout  # noqa: E402

DEFAULT_RUNS = ("heldout:1024:12:50", "frac0.25:1024:12:40", "frac0.5:1024:12:20", "all:1024:12:10",
                "all:4096:12:10", "all:1024:32:10", "all:1024:64:10")
#: the demo build's training settings (scripts/build_demo_model.py)
TRAIN = {"batch_tokens": 4096, "lr": 1e-3, "dead_tokens": 200_000, "threshold_start_step": 100, "seed": 0,
         "checkpoint_every": 0}
TRAIN_VIEWS_MEASURED = 40


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Fraction of variance unexplained against the photo's own mean (docs/method.md §6.3)."""
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def heldout_features(analyzer, photos_dir: Path, out: Path) -> dict[str, np.ndarray]:
    """The analysed (window-averaged) features of every held-out photo, cached in ``out``."""
    import torch

    from insight_desktop.core.engine import STRIDE, WINDOW
    from insight_desktop.core.tasks.windows import WindowRunner, averaged_features, window_geometry

    if out.exists():
        with np.load(out) as z:
            return {k: z[k] for k in z.files}
    feats = {}
    for p in read_heldout(photos_dir) or ():
        rgba = load_rgba(p.path)
        rgb = composite(rgba, backdrop(rgba.shape[:2], None))
        geo = window_geometry(rgb, analyzer.backbone.preprocessing, WINDOW, STRIDE)
        runner = WindowRunner(analyzer.backbone, [geo.canvas_boxes], lambda: None, lambda f: None)
        with torch.inference_mode():
            x, _ = averaged_features(runner, geo)
        feats[p.id] = x.float().cpu().numpy()
    if not feats:
        raise SystemExit("no held-out photos: run scripts/fetch_demo_photos.py first")
    np.savez(out, **feats)
    return feats


def training_store(backbone, photos_dir: Path, work: Path):
    """The token store of the build's seeded training views (written and extracted once)."""
    from insight_desktop.core.features import TokenStore, extract_features

    views, done = work / "views", work / "views" / ".complete"
    if not done.exists():
        views.mkdir(parents=True, exist_ok=True)
        scenes, cutouts = training_photos(photos_dir)
        write_views(views, scenes, cutouts, scene_views=12, cutout_views=3, seed=0)
        done.write_text("views of build_demo_model.py, seed 0\n")
    extract_features(views, work / "store", backbone, mode="crop", size=SIZE, dtype="float16")  # resumes
    return TokenStore(work / "store")


def source_for(spec: str, store, heldout: dict[str, np.ndarray]):
    from insight_desktop.core.sae.data import ArrayTokenSource

    if spec == "all":
        return store
    if spec == "heldout":
        counts = {x.shape[0] for x in heldout.values()}  # whole photos per batch when they are alike
        return ArrayTokenSource(np.concatenate(list(heldout.values())).astype(np.float32),
                                counts.pop() if len(counts) == 1 else 1)
    if spec.startswith("frac"):
        keep = np.sort(np.random.default_rng(0).permutation(store.n_images)[:int(float(spec[4:]) * store.n_images)])
        tokens = [np.asarray(store.image_tokens(int(i)), np.float32) for i in keep]
        return ArrayTokenSource(np.concatenate(tokens), tokens[0].shape[0])
    raise SystemExit(f"unknown source {spec!r}: heldout, all or fracF")


def run(spec: str, store, heldout: dict[str, np.ndarray], quick: bool) -> tuple[float, float, float, float]:
    """(held-out FVU, train FVU, held-out L0, seconds) of one ``SOURCE:M:K:EPOCHS`` run."""
    import torch

    from insight_desktop.core.sae import SAEConfig, TrainConfig, group_sizes_from_fractions, train_sae
    from insight_desktop.core.sae.config import REFERENCE_GROUP_FRACTIONS

    what, m, k, epochs = spec.split(":")
    m, k, epochs = int(m), int(k), float(epochs) / (10 if quick else 1)
    t0 = time.monotonic()
    source = source_for(what, store, heldout)
    config = SAEConfig(d_in=source.d, n_concepts=m, k=k,
                       group_sizes=group_sizes_from_fractions(m, REFERENCE_GROUP_FRACTIONS))
    sae = train_sae(source, config, TrainConfig(epochs=epochs, **TRAIN), device="cpu").sae
    held, l0 = [], []
    with torch.no_grad():
        for x in heldout.values():
            z = sae.encode(torch.from_numpy(x))
            held.append(fvu(x, sae.decode(z).numpy()))
            l0.append(float((z > 0).sum(1).float().mean()))
        step = max(1, store.n_images // TRAIN_VIEWS_MEASURED)
        train = [fvu(x, sae.decode(sae.encode(torch.from_numpy(x))).numpy())
                 for x in (np.asarray(store.image_tokens(i), np.float32) for i in range(0, store.n_images, step))]
    return float(np.mean(held)), float(np.mean(train)), float(np.mean(l0)), time.monotonic() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=Path, default=default_cache(), help="cache folder of fetch_demo_photos.py")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "insight-fvu-ceiling",
                   help="where the views, the token store and the held-out features are kept between runs")
    p.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="SOURCE:M:K:EPOCHS …")
    p.add_argument("--quick", action="store_true", help="a tenth of every run's epochs")
    args = p.parse_args(argv)

    import torch

    from insight_desktop.core.engine import Analyzer
    from insight_desktop.core.paths import resources_dir

    torch.manual_seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    analyzer = Analyzer(resources_dir() / "models" / "demo-concepts.zip", device="cpu")
    heldout = heldout_features(analyzer, args.photos, args.work / "heldout.npz")
    store = training_store(analyzer.backbone, args.photos, args.work)
    print(f"{len(heldout)} held-out photos, {store.n_images} training views ({store.n_tokens:,} tokens, "
          f"d = {store.d}){'; --quick: epochs / 10' if args.quick else ''}\n")
    print(f"{'run':<24}{'held-out FVU':>14}{'train FVU':>11}{'L0':>7}{'seconds':>9}")
    for spec in args.runs:
        held, train, l0, seconds = run(spec, store, heldout, args.quick)
        print(f"{spec:<24}{held:>14.3f}{train:>11.3f}{l0:>7.1f}{seconds:>9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
