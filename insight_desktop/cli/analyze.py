"""``insight`` subcommands that use a concept model: analyze, eval-seg, eval-cls, train-probe."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from .common import CLIError, add_device_arg, graceful_interrupt, is_user_facing

#: long side of the heatmap and overlay pictures (the label mask keeps the image size)
VIEW_SIDE = 2048
TOP_JSON = 50      # concepts listed in the JSON
TOP_REASONS = 20   # contributions listed per segment / class in the JSON


def _analyzer(args):
    from ..core.engine import Analyzer

    analyzer = Analyzer(args.model, device=args.device)
    for notice in analyzer.notices:
        print(f"note: {notice}", file=sys.stderr)
    return analyzer


def _classes(args) -> tuple[str, ...] | None:
    from ..core.tasks.prompts import parse_class_list, read_class_file

    if getattr(args, "classes_file", None):
        try:
            return read_class_file(Path(args.classes_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CLIError(f"cannot read --classes-file '{args.classes_file}': {exc.strerror or exc}") from None
    return parse_class_list(args.classes) if getattr(args, "classes", None) is not None else None


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _atomic_text(path: Path, text: str) -> None:
    from ..core.fileio import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def _png(path: Path, image) -> None:
    from PIL import Image

    from ..core.fileio import atomic_write_bytes

    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


# -- analyze ----------------------------------------------------------------------------------
def _analyze_cached(analyzer, rgb, classes, args, stop):
    """The analysis of ``rgb``, read from the app's disk cache when this image was analysed before
    with the same model, classes and window settings (in the app or here), else computed and
    stored there; ``--no-cache`` computes and stores nothing. The cache is never shrunk here: its
    bound is the app's setting (Preferences), which the command line cannot read."""
    from ..core.analysis_cache import DEFAULT_LIMIT_BYTES, AnalysisCache, analysis_key, model_identity
    from ..core.tasks.windows import STRIDE, WINDOW

    def compute():
        return analyzer.analyze(rgb, classes, background=args.background, window=args.window,
                                stride=args.stride, window_mode=args.window_mode, should_stop=stop)

    if getattr(args, "no_cache", True):
        return compute()
    cache = AnalysisCache()
    cache.limit_bytes = max(DEFAULT_LIMIT_BYTES, cache.size_bytes())
    settings = (("window", args.window, WINDOW), ("stride", args.stride, STRIDE))
    options = {name: value for name, value, default in settings if value != default}  # defaults: the app's entries
    key = analysis_key(rgb, model_identity(analyzer.model.manifest), classes, background=args.background,
                       window_mode=args.window_mode, options=options)
    analysis = cache.get(key)
    if analysis is None:
        analysis = compute()
        cache.put(key, analysis)
    return analysis


def cmd_analyze(args) -> int:
    """Analyse every image; one that fails is reported (its name and why) and the batch goes on,
    so one bad file never costs the others' outputs. Exit code 1 when any image failed."""
    from tqdm import tqdm

    from ..core.engine import AnalysisStopped
    from ..core.errors import user_message
    from ..core.images import ImageLoadError, load_image

    classes = _classes(args)
    if args.top < 0:
        raise CLIError("--top must be 0 or more")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    analyzer = _analyzer(args)
    names, status_of = _curated_names(args, analyzer.model)
    failed, stems = [], set()
    with graceful_interrupt() as stop:
        for path in tqdm([Path(p) for p in args.images], desc="analyze", unit="img", disable=args.quiet):
            stem = path.stem
            while stem in stems:
                stem += "_"
            stems.add(stem)
            try:
                rgb = load_image(path, allow_truncated=args.allow_truncated)
                analysis = _analyze_cached(analyzer, rgb, classes, args, stop)
                write_analysis(analysis, rgb, out, stem, names, top=args.top, source=str(path),
                               model=str(analyzer.model.path), backbone=analyzer.model.manifest.backbone.get("id"),
                               status_of=status_of)
            except AnalysisStopped:
                print("stopped", file=sys.stderr)
                return 130
            except Exception as exc:  # noqa: BLE001 — one image's failure is reported, the batch goes on
                if os.environ.get("INSIGHT_DEBUG"):
                    raise
                why = (exc.reason if isinstance(exc, ImageLoadError) else user_message(exc) if is_user_facing(exc)
                       else f"{type(exc).__name__}: {exc}")
                tqdm.write(f"skipped {path}: {why}", file=sys.stderr)
                failed.append(path)
                continue
            if not args.quiet:
                tqdm.write(f"{path.name}: windows: {analysis.window_description}"
                           + ("; no concept fires" if not analysis.concepts else ""))
    summary = f"{len(args.images) - len(failed)} image(s) analysed into {out}"
    if failed:
        listed = ", ".join(p.name for p in failed[:10]) + (", …" if len(failed) > 10 else "")
        summary += f"; {len(failed)} skipped: {listed}"
    print(summary)
    return 1 if failed else 0


def _curated_names(args, model):
    """The names to write (a NameBook: the model's names plus the curation's) and each concept's
    review status (None with ``--no-curation``). The curation is ``--curation FILE``, else the
    user's own file for this model when there is one (a damaged one is reported and skipped)."""
    from ..core.concepts.names import NameBook
    from ..core.curation import CurationError, load_curation
    from ..core.curation.store import curation_for

    if args.no_curation:
        return NameBook(model.names), None
    if args.curation:
        from ..core.analysis_cache import model_identity

        try:
            curation = load_curation(args.curation, model_identity=model_identity(model.manifest),
                                     n_concepts=model.n_concepts)
        except CurationError as exc:
            raise CLIError(f"--curation: {exc}") from None
    else:
        try:
            curation = curation_for(model)
        except CurationError as exc:
            print(f"note: your curation of this model is not used: {exc} (--no-curation silences this)",
                  file=sys.stderr)
            return NameBook(model.names), None
    if curation.records and not args.quiet:
        print(f"note: concept names and statuses from the curation by {curation.user} ({curation.path}): "
              f"{curation.progress()}", file=sys.stderr)
    return NameBook(model.names, edits=curation.names()), curation.status


def write_analysis(analysis, rgb, out: Path, stem: str, names, *, top: int = 5, source: str = "",
                   model: str | None = None, backbone: str | None = None, status_of=None) -> dict:
    """Heatmaps of the top concepts, label mask + legend + overlay, JSON and CSVs for one image;
    concepts named by ``names`` (a :class:`~..core.concepts.names.NameBook`: the analysis holds ids only),
    with their review ``status_of(concept)`` where concepts are listed (None when no curation is used).
    The JSON's ``provenance`` (and the contributions CSV's sidecar) record the image, the concept
    model ``model``, the ``backbone`` id, the window mode and the app version."""
    from PIL import Image

    from ..core.report import provenance, save_contributions, save_label_mask
    from ..core.tasks import render

    h, w = analysis.image_size
    scale = min(1.0, VIEW_SIDE / max(h, w))
    view = (max(1, round(h * scale)), max(1, round(w * scale)))
    photo = rgb if view == (h, w) else np.asarray(Image.fromarray(rgb).resize((view[1], view[0]), Image.BICUBIC))

    def status(concept: int) -> str | None:
        return status_of(concept) if status_of is not None else None

    def reasons(contributions) -> list[dict]:
        return [{"concept": c.concept, "name": names.name(c.concept), "status": status(c.concept), "value": c.value}
                for c in contributions[:TOP_REASONS]]

    concepts = []
    for rank, c in enumerate(analysis.concepts[:TOP_JSON], start=1):
        entry = {"rank": rank, "concept": c.concept, "name": names.name(c.concept), "status": status(c.concept),
                 "activation": c.activation, "level": c.level, "parents": list(c.parents), "patches": c.patches}
        if rank <= top:
            entry["heatmap"] = f"{stem}_concept{rank:02d}_{c.concept}.png"
            _png(out / entry["heatmap"], render.heat_overlay(photo, analysis.display_map(c.concept, view)))
        concepts.append(entry)
    f = analysis.faithfulness
    origin = provenance(analysis, image=source, model=model, backbone=backbone)
    report = {"image": source, "provenance": origin,
              "image_size": [h, w], "analysis_size": list(analysis.analysis_size),
              "grid": list(analysis.grid), "windows": analysis.windows, "window_mode": analysis.window_mode,
              "window_description": analysis.window_description,
              "faithfulness": {"fvu": _finite(f.fvu), "cosine": _finite(f.cosine),
                               "residual_mean": _finite(float(f.residual.mean()))},
              "concepts": concepts, "notices": list(analysis.notices),
              "timings_s": {k: round(v, 4) for k, v in analysis.timings.items()}}
    seg = analysis.segmentation
    if seg is not None:
        colours = render.class_colours(len(seg.class_names), background=seg.background_label is not None)
        counts = [int(next((s.pixels for s in seg.segments if s.label == i), 0)) for i in range(len(seg.class_names))]
        save_label_mask(out / f"{stem}_labels.png", seg, colours)
        _png(out / f"{stem}_legend.png", render.legend_png(seg.class_names, colours, counts))
        labels_view = seg.labels if view == (h, w) else np.asarray(
            Image.fromarray(np.asarray(seg.labels, np.uint8)).resize((view[1], view[0]), Image.NEAREST))
        _png(out / f"{stem}_segmentation.png", render.label_overlay(photo, labels_view, colours))
        report["segmentation"] = {
            "labels_png": f"{stem}_labels.png", "agreement_with_opaque": seg.agreement,
            "legend": [{"label": i, "name": n, "colour": list(colours[i]), "pixels": counts[i]}
                       for i, n in enumerate(seg.class_names)],
            "segments": [{"label": s.label, "name": s.name, "pixels": s.pixels, "mean_logit": s.mean_logit,
                          "logit_sum": s.logit_sum, "bias": s.bias,
                          "contributions": reasons(s.contributions)} for s in seg.segments]}
    for key, result in (("classification", analysis.classification), ("probe", analysis.probe)):
        if result is None:
            continue
        why = result.explain()
        report[key] = {"method": result.method, "predicted": result.predicted_name,
                       "top": [{"class": n, "probability": p} for _, n, p in result.top(5)],
                       "opaque_predicted": (result.class_names[result.opaque_predicted]
                                            if result.opaque_predicted is not None else None),
                       "explanation": {"class": why.name, "logit": why.logit, "bias": why.bias,
                                       "contributions": reasons(why.contributions)}}
    _atomic_text(out / f"{stem}.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    _atomic_text(out / f"{stem}_concepts.csv", _csv(
        ["rank", "concept", "name", "status", "level", "activation", "patches", "parents"],
        [(r, c.concept, names.name(c.concept), status(c.concept), c.level, f"{c.activation:.6g}", c.patches,
          ";".join(map(str, c.parents))) for r, c in enumerate(analysis.concepts, start=1)]))
    # every class, every concept, the biases
    save_contributions(out / f"{stem}_contributions.csv", analysis, names.name, origin)
    return report


def _csv(header, rows) -> str:
    """Text cells escaped against formula injection (:func:`..core.report.csv_cell`)."""
    from ..core.report import csv_text

    return csv_text(header, rows)


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
    analyzer = _analyzer(args)
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
        _atomic_text(Path(args.out), json.dumps({
            "dataset": str(args.dataset), "images": len(pairs), "classes": list(data.classes),
            "background": args.background, "window_mode": args.window_mode,
            **{k: {"mIoU": _finite(v["mIoU"]), "pixel_accuracy": _finite(v["pixel_accuracy"]),
                   "iou": [_finite(float(x)) for x in iou[k]]} for k, v in summary.items()},
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

    analyzer = _analyzer(args)
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

    analyzer = _analyzer(args)
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
    p = sub.add_parser("analyze", help="concepts of images, with segmentation and classification explained")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _model_args(p)
    classes = p.add_mutually_exclusive_group()
    classes.add_argument("--classes", default=None, help='comma-separated class names, e.g. "cat,dog,grass"')
    classes.add_argument("--classes-file", default=None, metavar="FILE", help="class names, one per line")
    p.add_argument("--background", action="store_true", help="label FOUND background as an extra class")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--top", type=int, default=5, help="heatmaps of this many top concepts per image (default 5)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="analyse images whose file is cut short (the missing part is black) instead of skipping them")
    p.add_argument("--no-cache", action="store_true",
                   help="compute every image, neither reading nor filling the app's disk cache of analyses")
    curated = p.add_mutually_exclusive_group()
    curated.add_argument("--curation", default=None, metavar="FILE",
                         help="concept names and statuses from this curation file (default: your own curation "
                              "of the model, if any; see docs/curation.md)")
    curated.add_argument("--no-curation", action="store_true", help="the model's own concept names only")
    _window_args(p, default_mode="fast")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("eval-seg", help="mIoU of the concept path and the opaque path on a segmentation dataset")
    p.add_argument("dataset", help="folder with images/, masks/ (label PNGs, 255 = ignore) and classes.txt")
    _model_args(p)
    p.add_argument("--background", action="store_true", help="FOUND background for the class named 'background'")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    _window_args(p, default_mode="reference")
    p.set_defaults(func=cmd_eval_seg)

    p = sub.add_parser("eval-cls", help="accuracy of concept and opaque zero-shot classification (and the probe)")
    p.add_argument("folder", help="one sub-folder of images per class")
    _model_args(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_eval_cls)

    p = sub.add_parser("train-probe", help="train a sparse concept-bottleneck probe and store it in the model")
    p.add_argument("folder", help="one sub-folder of images per class")
    _model_args(p)
    p.add_argument("--lambda", dest="lam", type=float, default=None,
                   help="fixed λ (default: chosen on a held-out split)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of each class held out to choose λ")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_train_probe)


def _model_args(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="concept model (bundle folder or .zip)")
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)


def _window_args(p, default_mode: str) -> None:
    p.add_argument("--window", type=int, default=448, help="sliding-window size in pixels (default 448)")
    p.add_argument("--stride", type=int, default=224, help="sliding-window stride in pixels (default 224)")
    p.add_argument("--window-mode", choices=("fast", "reference"), default=default_mode,
                   help="how overlapping windows are combined for segmentation: 'reference' encodes each window "
                        "separately and averages class probabilities (as the paper's code), 'fast' averages "
                        f"features and encodes once (default {default_mode})")
