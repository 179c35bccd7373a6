"""``insight`` subcommands that measure a concept model or add to it: eval-seg, eval-cls, train-probe."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from .common import CLIError, add_model_args, add_window_args, atomic_text, finite, graceful_interrupt, open_analyzer


# -- eval-seg ---------------------------------------------------------------------------------
def cmd_eval_seg(args) -> int:
    from tqdm import tqdm

    from ..core.engine import AnalysisStopped
    from ..core.images import load_image
    from ..core.tasks.datasets import (
        confusion,
        iou_per_class,
        load_mask,
        mean_iou,
        pixel_accuracy,
        segmentation_dataset,
    )

    data = segmentation_dataset(args.dataset)
    n = len(data.classes)
    bg = [i for i, c in enumerate(data.classes) if c.casefold() == "background"]
    if args.background and not bg:
        raise CLIError("--background needs a class called 'background' in classes.txt (FOUND's label maps to it)")
    prompts = [c for i, c in enumerate(data.classes) if not (args.background and i in bg)]
    # prediction label → dataset label (FOUND background, the last label, → the 'background' class)
    mapping = np.array([i for i in range(n) if not (args.background and i in bg)] + (bg[:1] if args.background else []))
    pairs = data.pairs[:args.limit] if args.limit else data.pairs
    if data.unmatched:
        print(f"note: {len(data.unmatched)} image(s) have no mask and are left out", file=sys.stderr)
    analyzer = open_analyzer(args)
    from ..core.tasks.windows import MODE_MEANING

    print(f"windows: {args.window_mode} ({MODE_MEANING[args.window_mode]})")
    conf = {"concepts": np.zeros((n, n + 1), np.int64), "opaque": np.zeros((n, n + 1), np.int64)}
    with graceful_interrupt() as stop:
        for image_path, mask_path in tqdm(pairs, desc="eval-seg", unit="img", disable=args.quiet):
            rgb, mask = load_image(image_path), load_mask(mask_path)
            if mask.shape != rgb.shape[:2]:
                raise CLIError(f"mask '{mask_path}' is {mask.shape[1]}×{mask.shape[0]}, its image "
                               f"{rgb.shape[1]}×{rgb.shape[0]}")
            try:
                if args.window_mode == "reference":  # labels only: no concept maps or explanations to compute
                    seg = analyzer.segment_windows(rgb, prompts, background=args.background, window=args.window,
                                                   stride=args.stride, should_stop=stop)
                else:
                    seg = analyzer.analyze(rgb, prompts, background=args.background, window=args.window,
                                           stride=args.stride, classify=False, should_stop=stop).segmentation
            except AnalysisStopped:
                print("stopped", file=sys.stderr)
                return 130
            conf["concepts"] += confusion(mapping[seg.labels], mask, n)
            conf["opaque"] += confusion(mapping[seg.opaque_labels], mask, n)
    iou = {k: iou_per_class(v) for k, v in conf.items()}
    print(f"{'class':<24} {'concepts':>9} {'opaque':>9}")
    for i, name in enumerate(data.classes):
        print(f"{name[:24]:<24} {_pct(iou['concepts'][i]):>9} {_pct(iou['opaque'][i]):>9}")
    summary = {k: {"mIoU": mean_iou(v), "pixel_accuracy": pixel_accuracy(v)} for k, v in conf.items()}
    print(f"{'mIoU':<24} {_pct(summary['concepts']['mIoU']):>9} {_pct(summary['opaque']['mIoU']):>9}")
    print(f"{'pixel accuracy':<24} {_pct(summary['concepts']['pixel_accuracy']):>9} "
          f"{_pct(summary['opaque']['pixel_accuracy']):>9}")
    print(f"{len(pairs)} images, {len(prompts)} prompts" + (" + FOUND background" if args.background else ""))
    if args.out:
        atomic_text(Path(args.out), json.dumps({
            "dataset": str(args.dataset), "images": len(pairs), "classes": list(data.classes),
            "background": args.background, "window_mode": args.window_mode,
            **{k: {"mIoU": finite(v["mIoU"]), "pixel_accuracy": finite(v["pixel_accuracy"]),
                   "iou": [finite(float(x)) for x in iou[k]]} for k, v in summary.items()},
        }, indent=2, allow_nan=False) + "\n")
    return 0


def _pct(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{100 * v:.1f}"


# -- eval-cls and train-probe -----------------------------------------------------------------
def _folder_batches(folder, batch_size, quiet, desc):
    """Yield (class names, labels, images) batches of a class-folder dataset with a progress bar."""
    from tqdm import tqdm

    from ..core.tasks.datasets import labelled_image_batches

    names, total, batches = labelled_image_batches(folder, batch_size,
                                                   lambda err: print(f"skipped: {err}", file=sys.stderr))
    with tqdm(total=total, desc=desc, unit="img", disable=quiet) as bar:
        for labels, images, done in batches:
            yield names, labels, images
            bar.n = done
            bar.refresh()


def cmd_eval_cls(args) -> int:
    from ..core.tasks.datasets import prompt_name

    analyzer = open_analyzer(args)
    probe = analyzer.model.probe
    hits = {"concepts": 0, "opaque": 0, "probe": 0}
    total, names = 0, None
    with graceful_interrupt() as stop:
        for names, labels, images in _folder_batches(args.folder, args.batch_size, args.quiet, "eval-cls"):
            if stop():
                print("stopped", file=sys.stderr)
                return 130
            prompts = [prompt_name(n) for n in names]
            for label, pooled in zip(labels, analyzer.pooled(images, batch_size=args.batch_size)):
                zs = analyzer.zero_shot(pooled, prompts)
                hits["concepts"] += zs.predicted == label
                hits["opaque"] += zs.opaque_predicted == label
                if probe is not None:
                    hits["probe"] += analyzer.probe_classify(pooled).predicted_name == names[label]
                total += 1
    if not total:
        raise CLIError(f"no readable images under '{args.folder}'")
    print(f"{'zero-shot through concepts':<30} {100 * hits['concepts'] / total:6.1f} %")
    print(f"{'zero-shot, opaque features':<30} {100 * hits['opaque'] / total:6.1f} %")
    if probe is None:
        print(f"{'concept-bottleneck probe':<30}      — (the model has no probe: insight train-probe)")
    else:
        missing = sorted(set(names) - set(probe[1]))
        print(f"{'concept-bottleneck probe':<30} {100 * hits['probe'] / total:6.1f} %"
              + (f"  (probe lacks classes: {', '.join(missing)})" if missing else ""))
    print(f"{total} images, {len(names)} classes")
    return 0


def cmd_train_probe(args) -> int:
    from tqdm import tqdm

    from ..core.concepts.bundle import add_probe
    from ..core.tasks.probe import train_probe

    analyzer = open_analyzer(args)
    with graceful_interrupt() as stop, tqdm(desc="train-probe", unit="img", disable=args.quiet) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        fit = train_probe(args.folder, analyzer, lam=args.lam, holdout=args.holdout, seed=args.seed,
                          batch_size=args.batch_size, on_progress=progress, should_stop=stop)
    analyzer.close()  # the bundle file may be rewritten next (a zip is replaced whole)
    if fit is None:
        print("stopped; nothing was saved", file=sys.stderr)
        return 130
    for lam, acc in zip(fit.lambdas, fit.heldout_accuracy):
        if math.isfinite(acc):
            print(f"λ {lam:<12.4g} held-out accuracy {100 * acc:5.1f} %" + ("  ← chosen" if lam == fit.lam else ""))
    add_probe(args.model, fit.W, fit.class_names, fit.metadata())
    print(f"probe saved into {args.model}: {len(fit.class_names)} classes, λ = {fit.lam:.4g}, {fit.nnz} non-zero "
          f"weights, training accuracy {100 * fit.train_accuracy:.1f} %")
    return 0


# -- wiring -----------------------------------------------------------------------------------


def add_parsers(sub) -> None:
    p = sub.add_parser("eval-seg", help="mIoU of the concept path and the opaque path on a segmentation dataset")
    p.add_argument("dataset", help="folder with images/, masks/ (label PNGs, 255 = ignore) and classes.txt")
    add_model_args(p)
    p.add_argument("--background", action="store_true", help="FOUND background for the class named 'background'")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    add_window_args(p, default_mode="reference")
    p.set_defaults(func=cmd_eval_seg)

    p = sub.add_parser("eval-cls", help="accuracy of concept and opaque zero-shot classification (and the probe)")
    p.add_argument("folder", help="one sub-folder of images per class")
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_eval_cls)

    p = sub.add_parser("train-probe", help="train a sparse concept-bottleneck probe and store it in the model")
    p.add_argument("folder", help="one sub-folder of images per class")
    add_model_args(p)
    p.add_argument("--lambda", dest="lam", type=float, default=None,
                   help="fixed λ (default: chosen on a held-out split)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of each class held out to choose λ")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_train_probe)
