"""``insight faithfulness``: deletion curves per image — switch off the concepts that contribute most
to a segment or a class, one by one, and compare how fast its pixel share or logit falls with
switching off random concepts (:func:`..core.tasks.deletion.deletion_curve`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .common import CLIError, add_model_args, graceful_interrupt, open_analyzer, skip_reason

#: classes used without --classes: the demo photos' categories (docs/demo-model.md)
DEFAULT_CLASSES = ("animal", "object", "plant", "food", "vehicle", "landscape", "person", "building")
_SHORT = {"segmentation": "seg", "classification": "cls"}


def _images(target: str) -> list[Path]:
    from ..core.images import find_images

    path = Path(target)
    if path.is_dir():
        found = find_images(path)
        if not found:
            raise CLIError(f"no images in folder '{path}'")
        return found
    if not path.exists():
        raise CLIError(f"no such file or folder: '{path}'")
    return [path]


def _classes(args) -> tuple[str, ...]:
    from ..core.tasks.prompts import parse_class_list, read_class_file

    if args.classes_file:
        try:
            return read_class_file(Path(args.classes_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CLIError(f"cannot read --classes-file '{args.classes_file}': {exc.strerror or exc}") from None
    return parse_class_list(args.classes) if args.classes is not None else DEFAULT_CLASSES


def image_curves(analysis, *, steps: int, seeds: int, keep_residual: bool) -> list[dict]:
    """Top and random deletion curves of the largest segment's class (its pixel share) and of the
    predicted class (its logit), with the area between them."""
    from ..core.tasks.deletion import CLASSIFICATION, RANDOM, SEGMENTATION, Target, area_between, deletion_curve

    targets = []
    seg = analysis.segmentation
    if seg is not None:
        segments = [s for s in seg.segments if s.label != seg.background_label]
        if segments:
            largest = max(segments, key=lambda s: (s.pixels, -s.label))
            targets.append((Target(SEGMENTATION, largest.label), "share", largest.name))
    if analysis.classification is not None:
        cls = analysis.classification
        targets.append((Target(CLASSIFICATION, cls.predicted), "logit", cls.predicted_name))
    rows = []
    for target, measure, name in targets:
        top = deletion_curve(analysis, target, steps=steps, keep_residual=keep_residual)
        rnd = deletion_curve(analysis, target, order=RANDOM, steps=steps, seeds=seeds, keep_residual=keep_residual)
        rows.append({"task": target.task, "class": name, "measure": measure, "mode": top.mode,
                     "steps": int(top.values.size - 1), "top": top.values.tolist(), "random": rnd.values.tolist(),
                     "top_concepts": list(top.concepts), "area_between": area_between(top, rnd)})
    return rows


def _summary(per_image: list[dict]) -> list[dict]:
    out = []
    for task in ("segmentation", "classification"):
        areas = np.array([r["area_between"] for img in per_image for r in img["curves"] if r["task"] == task])
        if areas.size:
            out.append({"task": task, "images": int(areas.size), "mean_area": float(areas.mean()),
                        "median_area": float(np.median(areas)), "top_faster": int((areas > 0).sum())})
    return out


def _table(per_image: list[dict], summary: list[dict]) -> str:
    lines = [f"{'image':<24} {'target':<34} {'start':>8} {'top end':>8} {'rand end':>8} {'area':>8}"]
    for img in per_image:
        for r in img["curves"]:
            what = f"{_SHORT[r['task']]} {r['measure']} {r['class']!r}"
            lines.append(f"{img['name'][:24]:<24} {what[:34]:<34} {r['top'][0]:8.3f} {r['top'][-1]:8.3f} "
                         f"{r['random'][-1]:8.3f} {r['area_between']:+8.3f}")
    lines.append("")
    lines.append(f"{'task':<16} {'images':>6} {'mean area':>10} {'median':>8} {'top falls faster':>17}")
    for s in summary:
        lines.append(f"{s['task']:<16} {s['images']:>6} {s['mean_area']:+10.3f} {s['median_area']:+8.3f} "
                     f"{s['top_faster']:>10} of {s['images']}")
    return "\n".join(lines)


def cmd_faithfulness(args) -> int:
    from tqdm import tqdm

    from ..core.engine import AnalysisStopped
    from ..core.images import load_image

    if args.steps < 1 or args.seeds < 1:
        raise CLIError("--steps and --seeds must be 1 or more")
    images = _images(args.target)
    classes = _classes(args)
    analyzer = open_analyzer(args)
    per_image, failed = [], []
    with graceful_interrupt() as stop:
        for path in tqdm(images, desc="faithfulness", unit="img", disable=args.quiet or args.json):
            try:
                analysis = analyzer.analyze(load_image(path), classes, background=args.background, should_stop=stop)
                curves = image_curves(analysis, steps=args.steps, seeds=args.seeds, keep_residual=args.keep_residual)
            except AnalysisStopped:
                print("stopped", file=sys.stderr)
                return 130
            except Exception as exc:  # noqa: BLE001 — one image's failure is reported, the others go on
                tqdm.write(f"skipped {path}: {skip_reason(exc)}", file=sys.stderr)
                failed.append(str(path))
                continue
            per_image.append({"image": str(path), "name": path.name, "curves": curves})
    summary = _summary(per_image)
    if args.json:
        print(json.dumps({"classes": list(classes), "mode": "concepts + residual" if args.keep_residual
                          else "concepts only", "steps": args.steps, "seeds": args.seeds, "images": per_image,
                          "summary": summary, "skipped": failed}, indent=2, allow_nan=False))
    else:
        print(_table(per_image, summary))
        print(f"area = mean of (random − top) over the steps: share of pixels (seg) or logit (cls); "
              f"> 0: the top-contributing concepts make it fall faster ({args.steps} steps, random: "
              f"{args.seeds} seeds)")
    return 1 if failed else 0


def add_parsers(sub) -> None:
    p = sub.add_parser("faithfulness", help="deletion curves: top-contributing vs random concepts switched off")
    p.add_argument("target", metavar="IMAGE_OR_FOLDER")
    add_model_args(p)
    classes = p.add_mutually_exclusive_group()
    classes.add_argument("--classes", default=None,
                         help=f'comma-separated class names (default: "{",".join(DEFAULT_CLASSES)}")')
    classes.add_argument("--classes-file", default=None, metavar="FILE", help="class names, one per line")
    p.add_argument("--background", action="store_true", help="label FOUND background as an extra class")
    p.add_argument("--steps", type=int, default=20, help="concepts switched off, one by one (default 20)")
    p.add_argument("--seeds", type=int, default=3, help="random orders averaged (default 3)")
    p.add_argument("--keep-residual", action="store_true",
                   help="keep what the concepts do not explain (x − removed contributions), not x̂ alone")
    p.add_argument("--json", action="store_true", help="print the curves and the summary as JSON")
    p.set_defaults(func=cmd_faithfulness)
