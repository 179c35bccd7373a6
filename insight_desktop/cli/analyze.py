"""``insight analyze``: concepts of images, with segmentation and classification explained (files in a folder)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from .common import (
    CLIError,
    add_model_args,
    add_window_args,
    atomic_text,
    finite,
    graceful_interrupt,
    open_analyzer,
    skip_reason,
)

#: long side of the heatmap and overlay pictures (the label mask keeps the image size)
VIEW_SIDE = 2048
TOP_JSON = 50      # concepts listed in the JSON
TOP_REASONS = 20   # contributions listed per segment / class in the JSON




def _classes(args) -> tuple[str, ...] | None:
    from ..core.tasks.prompts import parse_class_list, read_class_file

    if getattr(args, "classes_file", None):
        try:
            return read_class_file(Path(args.classes_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CLIError(f"cannot read --classes-file '{args.classes_file}': {exc.strerror or exc}") from None
    return parse_class_list(args.classes) if getattr(args, "classes", None) is not None else None






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
    from ..core.images import load_image

    classes = _classes(args)
    if args.top < 0:
        raise CLIError("--top must be 0 or more")
    ablate = _ablate_ids(args, classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    analyzer = open_analyzer(args)
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
                if ablate is not None:
                    print_ablation(analysis, ablate, names, out, stem, keep_residual=args.keep_residual,
                                   label=path.name)
            except AnalysisStopped:
                print("stopped", file=sys.stderr)
                return 130
            except Exception as exc:  # noqa: BLE001 — one image's failure is reported, the batch goes on
                tqdm.write(f"skipped {path}: {skip_reason(exc)}", file=sys.stderr)
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


def _ablate_ids(args, classes) -> tuple[int, ...] | None:
    """``--ablate N,M,…`` as concept ids (None without it); it needs classes to have something to change."""
    text = getattr(args, "ablate", None)
    if text is None:
        if getattr(args, "keep_residual", False):
            raise CLIError("--keep-residual goes with --ablate")
        return None
    try:
        ids = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise CLIError(f"--ablate takes comma-separated concept ids, e.g. 12,40 (not {text!r})") from None
    if not ids or min(ids) < 0:
        raise CLIError("--ablate takes one or more concept ids (0 or more), e.g. 12,40")
    if classes is None:
        raise CLIError("--ablate needs --classes or --classes-file: it shows how the segmentation and "
                       "classification change")
    return ids


def print_ablation(analysis, concepts, names, out: Path, stem: str, *, keep_residual: bool, label: str) -> dict:
    """Switch ``concepts`` off (:func:`..core.tasks.whatif.switch_off`), print what changed (class shares
    and classification before → after) and write it to ``{stem}_ablation.json``."""
    from ..core.tasks.whatif import switch_off

    result = switch_off(analysis, concepts, keep_residual=keep_residual)
    active = set(analysis.codes.active_concepts().tolist())
    missing = [c for c in result.switched_off if c not in active]
    listed = ", ".join(f"{c} {names.name(c)!r}" for c in result.switched_off if c in active) or "nothing active"
    lines = [f"{label}: switched off {listed} ({result.mode})"]
    if missing:
        lines.append(f"  not active in this image (no change): {', '.join(map(str, missing))}")
    report: dict = {"image": label, "mode": result.mode, "switched_off": list(result.switched_off),
                    "not_active": missing}
    seg = result.segmentation
    if seg is not None:
        lines.append(f"  segmentation: {100 * seg.changed_share:.1f}% of the pixels change label")
        rows = [(n, float(a), float(b)) for n, a, b in zip(seg.class_names, seg.shares_before, seg.shares_after)
                if a > 0 or b > 0]
        lines += [f"    {n:<20} {100 * a:6.1f}% → {100 * b:6.1f}%" for n, a, b in rows]
        report["segmentation"] = {"changed_share": seg.changed_share,
                                  "shares": [{"class": n, "before": a, "after": b} for n, a, b in rows]}
    cls = result.classification
    if cls is not None:
        before, after = cls.predicted_before, cls.predicted_after
        lines.append(f"  classification: {cls.class_names[before]} → {cls.class_names[after]}")
        order = np.argsort(-np.maximum(cls.probabilities_before, cls.probabilities_after), kind="stable")[:5]
        lines += [f"    {cls.class_names[c]:<20} p {cls.probabilities_before[c]:.3f} → {cls.probabilities_after[c]:.3f}"
                  f"  (logit {cls.logits_before[c]:.2f} → {cls.logits_after[c]:.2f})" for c in order]
        report["classification"] = {
            "predicted_before": cls.class_names[before], "predicted_after": cls.class_names[after],
            "classes": [{"class": n, "logit_before": float(lb), "logit_after": float(la),
                         "probability_before": float(pb), "probability_after": float(pa)}
                        for n, lb, la, pb, pa in zip(cls.class_names, cls.logits_before, cls.logits_after,
                                                     cls.probabilities_before, cls.probabilities_after)]}
    print("\n".join(lines))
    atomic_text(out / f"{stem}_ablation.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


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
              "faithfulness": {"fvu": finite(f.fvu), "cosine": finite(f.cosine),
                               "residual_mean": finite(float(f.residual.mean()))},
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
    atomic_text(out / f"{stem}.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_text(out / f"{stem}_concepts.csv", _csv(
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


def add_parsers(sub) -> None:
    p = sub.add_parser("analyze", help="concepts of images, with segmentation and classification explained")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_args(p)
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
    p.add_argument("--ablate", default=None, metavar="N,M",
                   help="switch these concepts off (z = 0) and print how the segmentation's class shares and the "
                        "classification change (also written to <image>_ablation.json); needs --classes")
    p.add_argument("--keep-residual", action="store_true",
                   help="with --ablate: keep what the concepts do not explain (x − removed contributions) instead "
                        "of the concepts alone (x̂ without them)")
    add_window_args(p, default_mode="fast")
    p.set_defaults(func=cmd_analyze)
