"""Naming quality of the old and the new demo model on the held-out photos, side by side.

The held-out photos are those marked ``heldout`` in ``resources/demo-photos/photos.csv``
(``scripts/fetch_demo_photos.py`` fetches them into its cache); docs/demo-model.md describes
them. Cut-outs (Tux Paint stamps, with transparency) are laid on a backdrop, mid-grey unless
``--backdrop`` names a photo; their alpha channel (≥ 128) is the foreground mask. Rows:

* **name precision@10** — per photo, the share of the model's 10 strongest concepts (pooled max
  activation) whose names are consistent with the photo's written content: the name (or its
  WordNet lemma) is a word of the description, or a WordNet relation links it to the label
  (same synset, hypernym/hyponym at any depth below the abstract top, or siblings); mean over photos;
* **concreteness** — share of all m concept names in the concrete-word list (``visual.txt``,
  compared by WordNet lemma); **duplicate names** — share of concepts whose name another has;
* **FVU** — fraction of variance unexplained per photo (docs/method.md §6.3), mean over photos;
* **zero-shot top-1 / top-5** among the held-out labels (all distinct ``label`` values), on the
  analysed grid as the app classifies: concept path (decoded max-pooled codes) and opaque path
  (mean raw feature), docs/method.md §6.2;
* **segmentation mIoU** — each cut-out segmented with the classes [its label, "background"]
  (FOUND background off), IoU of both classes against the alpha mask, averaged per photo, then over
  photos; concept path (x̂) and opaque path (raw x), docs/method.md §6.1.

Columns: the old model and the new model with the names in their bundles, and two naming
variants that change names only ("·" in the other rows): the old model renamed with the
visual vocabulary as the build names (isolates the vocabulary from the training photos), and
the new model renamed with the hubness (CSLS) correction. The visual vocabulary is embedded
with the backbone once (cached on disk; about 10 minutes on 2 CPU cores the first time) and
shared when both models use the same backbone; ``--no-variants`` skips the two columns.

    .venv/bin/python benchmarks/naming_quality.py [--old OLD.zip] [--new NEW.zip]
        [--photos ~/.cache/insight-desktop/demo-photos] [--backdrop grey|PHOTO_ID] [--no-variants]
        [--cache DIR | --no-cache] [--limit N]

Every photo is analysed once with all the classes, every cut-out once more with its two: with the
demo backbone on 2 CPU cores shared with other jobs that took 18 min per model (14 s a photo),
less on idle cores. Each model's analyses are kept (``--cache``, keyed by the bytes of the bundle
and the photos and by the backbone's id), so the old model is analysed once for all later runs.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fetch_demo_photos import MANIFEST, default_cache  # noqa: E402
from naming_eval import (  # noqa: E402
    Judge,
    ModelRun,
    Photo,
    constant_miou,
    duplicate_rate,
    evaluate,
    load_run,
    print_progress,
    run_key,
    save_run,
)
from wordnet_lite import WordNet  # noqa: E402

from insight_desktop.core.concepts.name_choice import ALTERNATIVE_MARGIN, HUBNESS_K  # noqa: E402
from insight_desktop.core.concepts.naming import embed_vocabulary, load_vocabulary, name_model  # noqa: E402
from insight_desktop.core.engine import Analyzer  # noqa: E402
from insight_desktop.core.paths import DEMO_MODEL, resources_dir, user_cache_dir  # noqa: E402

OLD_BUNDLE = Path("/tmp/old-demo-concepts.zip")
#: the last commit whose resources/models/demo-concepts.zip is the old demo model (seven photos)
OLD_COMMIT = "af3c040"
SAME = "·"
TARGETS = {"precision": 2.0, "concreteness": 0.9, "duplicates": 0.02, "fvu": 0.35, "miou_ratio": 0.95}


def old_bundle_default() -> Path:
    """/tmp/old-demo-concepts.zip if present, else the bundle of :data:`OLD_COMMIT` in a temp file."""
    if OLD_BUNDLE.exists():
        return OLD_BUNDLE
    fd, name = tempfile.mkstemp(suffix="-old-demo-concepts.zip")
    atexit.register(lambda: os.path.exists(name) and os.unlink(name))
    with os.fdopen(fd, "wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:{'/'.join(('resources',) + DEMO_MODEL)}"],
                       stdout=fh, check=True)
    return Path(name)


def read_heldout(photos_dir: Path) -> list[Photo] | None:
    with open(MANIFEST, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "heldout"]
    found = {r["id"]: sorted((photos_dir / "photos" / "heldout").glob(r["id"] + ".*")) for r in rows}
    missing = [i for i, f in found.items() if not f]
    if missing:
        print(f"{len(missing)} of {len(rows)} held-out photos are not in {photos_dir} "
              f"(e.g. {missing[0]}): run scripts/fetch_demo_photos.py first", file=sys.stderr)
        return None
    return [Photo(r["id"], r["label"], r["description"], found[r["id"]][0]) for r in rows]


def open_analyzers(old: Path, new: Path, device: str) -> tuple[Analyzer, Analyzer]:
    """Both models; the new one reuses the old one's backbone (and so its cached vocabulary
    embedding) when both record the same backbone."""
    a_old = Analyzer(old, device=device)
    if old.resolve() == new.resolve() or filecmp.cmp(old, new, shallow=False):
        return a_old, a_old
    from insight_desktop.core.concepts.bundle import ConceptModel

    m_new = ConceptModel.load(new)
    same = m_new.manifest.backbone == a_old.model.manifest.backbone
    return a_old, Analyzer(m_new, backbone=a_old.backbone if same else None, device=device)


def model_run(analyzer: Analyzer, bundle: Path, photos: list[Photo], classes: list[str], source: Path | None,
              cache: Path | None, what: str) -> tuple[ModelRun, bool]:
    """The model's run on the photos, from the cache when nothing it depends on changed (the old
    model's run is then computed once for all later runs); True when it came from the cache."""
    path = None if cache is None else cache / f"{run_key(bundle, analyzer.backbone.id, photos, classes, source)}.npz"
    run = None if path is None else load_run(path)
    if run is not None:
        return run, True
    run = evaluate(analyzer, photos, classes, backdrop_source=source, progress=print_progress(what))
    if path is not None:
        save_run(path, run)
    return run, False


def renamed(analyzer: Analyzer, vocab, hubness_k: int, margin: float) -> tuple[str, ...]:
    """The model's concepts named with ``vocab`` as the build names them (same method)."""
    emb = embed_vocabulary(analyzer.backbone, vocab)  # cached on disk per backbone and vocabulary
    model = analyzer.model
    sae, rel = model.sae, model.relations
    hier = model.names.method == "hierarchy"
    W, b = sae.W_dec.detach().cpu().numpy(), sae.b_dec.detach().cpu().numpy()
    return name_model(W, b, [(emb, vocab)], d_hat=rel.d_hat if hier else None, mu=rel.mu if hier else None,
                      tau=rel.tau, hubness_k=hubness_k, margin=margin).names


def table(columns: dict[str, tuple[tuple[str, ...], ModelRun | None, ModelRun]], photos: list[Photo],
          judge: Judge) -> tuple[list[tuple[str, list[float | None], str]], dict[str, list[float | None]]]:
    """Rows (label, one value per column or None for "same as the model's", target text)."""
    def per_model(f):
        return [None if own is None else f(own) for _, own, _ in columns.values()]

    v: dict[str, list[float | None]] = {
        "precision": [float(np.mean([judge.precision(names, p.label, p.description, ids)
                                     for p, ids in zip(photos, run.top)])) for names, _, run in columns.values()],
        "concreteness": [float(np.mean([judge.is_concrete(n) for n in names])) for names, _, _ in columns.values()],
        "duplicates": [duplicate_rate(names) for names, _, _ in columns.values()],
        "fvu": per_model(lambda r: float(np.mean(r.fvu))),
        "top1": per_model(lambda r: r.accuracy(1)), "top1_op": per_model(lambda r: r.accuracy(1, opaque=True)),
        "top5": per_model(lambda r: r.accuracy(5)), "top5_op": per_model(lambda r: r.accuracy(5, opaque=True)),
        "miou": per_model(lambda r: float(np.mean(r.miou))),
        "miou_op": per_model(lambda r: float(np.mean(r.miou_opaque))),
    }
    v["miou_ratio"] = [None if a is None else a / b for a, b in zip(v["miou"], v["miou_op"])]
    ref = v["precision"][0]
    v["precision_ratio"] = [p / ref if ref else float("nan") for p in v["precision"]]
    n_masks = next(r.miou.size for _, _, r in columns.values())
    rows = [("name precision@10", v["precision"], ""),
            ("  ratio vs old", v["precision_ratio"], f"≥ {TARGETS['precision']:g}×"),
            ("concreteness", v["concreteness"], f"≥ {TARGETS['concreteness']:g}"),
            ("duplicate-name rate", v["duplicates"], f"≤ {TARGETS['duplicates']:g}"),
            ("FVU (mean per photo)", v["fvu"], f"≤ {TARGETS['fvu']:g}"),
            ("zero-shot top-1, concept", v["top1"], ""), ("zero-shot top-1, opaque", v["top1_op"], ""),
            ("zero-shot top-5, concept", v["top5"], ""), ("zero-shot top-5, opaque", v["top5_op"], ""),
            (f"mIoU, concept ({n_masks} masks)", v["miou"], ""), ("mIoU, opaque", v["miou_op"], ""),
            ("  concept ÷ opaque", v["miou_ratio"], f"≥ {TARGETS['miou_ratio']:g}")]
    return rows, v


def verdicts(v: dict[str, list[float | None]], new: int) -> list[str]:
    """Pass/fail of the issue's targets for column ``new`` (the new model's bundle names)."""
    def check(ok: bool, text: str) -> str:
        return f"{'PASS' if ok else 'FAIL'}  {text}"

    def at(key: str) -> float:
        x = v[key][new]
        return float("nan") if x is None else float(x)

    return [check(at("precision_ratio") >= TARGETS["precision"],
                  f"precision@10 {at('precision'):.3f} = {at('precision_ratio'):.2f}× old (target ≥ 2×)"),
            check(at("concreteness") >= TARGETS["concreteness"],
                  f"concreteness {at('concreteness'):.3f} (target ≥ 0.9)"),
            check(at("duplicates") <= TARGETS["duplicates"],
                  f"duplicate names {at('duplicates'):.1%} (target ≤ 2 %)"),
            check(at("fvu") <= TARGETS["fvu"], f"held-out FVU {at('fvu'):.3f} (target ≤ 0.35)"),
            check(at("miou_ratio") >= TARGETS["miou_ratio"],
                  f"mIoU concept {at('miou'):.3f} = {at('miou_ratio'):.2f}× opaque {at('miou_op'):.3f} "
                  "(target ≥ 0.95×)")]


def print_table(rows, columns: list[str]) -> None:
    width = max(12, *(len(c) + 2 for c in columns))
    print(f"{'':<30}" + "".join(f"{c:>{width}}" for c in columns) + "   target")
    for label, vals, target in rows:
        cells = "".join(f"{SAME:>{width}}" if x is None else
                        f"{x:>{width - 1}.2f}×" if "ratio" in label or "÷" in label else f"{x:>{width}.3f}"
                        for x in vals)
        print(f"{label:<30}{cells}   {target}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", type=Path, help=f"old bundle (default {OLD_BUNDLE}, else git show {OLD_COMMIT}:…)")
    p.add_argument("--new", type=Path, help="new bundle (default the shipped resources/models/demo-concepts.zip)")
    p.add_argument("--photos", type=Path, default=default_cache(), help="cache folder of fetch_demo_photos.py")
    p.add_argument("--backdrop", default="grey", help="'grey' (128) or the id of a photo in photos.csv whose "
                   "centre crop lies under each cut-out")
    p.add_argument("--wordnet", type=Path, help="WordNet 3.0 dict folder (default: from the photo cache)")
    p.add_argument("--vocab", type=Path, default=ROOT / "resources" / "vocab" / "visual.txt")
    p.add_argument("--hubness-k", type=int, default=HUBNESS_K)
    p.add_argument("--margin", type=float, default=ALTERNATIVE_MARGIN, help="duplicate rule: relative margin")
    p.add_argument("--no-variants", action="store_true", help="only the bundles' own names (no renaming)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=user_cache_dir() / "benchmarks" / "naming-quality",
                   help="where each model's analyses are kept, keyed by bundle, photos and backbone")
    p.add_argument("--no-cache", action="store_true", help="analyse both models again, keep nothing")
    p.add_argument("--show", type=int, default=3, help="print the top names of this many photos")
    p.add_argument("--limit", type=int, help="only the first N held-out photos (a quick check of the script)")
    args = p.parse_args(argv)
    old_path = args.old or old_bundle_default()
    new_path = args.new or resources_dir().joinpath(*DEMO_MODEL)
    for what, path in (("old", old_path), ("new", new_path)):
        if not Path(path).is_file():
            print(f"the {what} bundle {path} does not exist", file=sys.stderr)
            return 2
    photos = read_heldout(args.photos)
    if photos is None:
        return 2
    photos = photos[:args.limit]
    source = None
    if args.backdrop != "grey":
        source = next(iter(sorted((args.photos / "photos").glob(f"*/{args.backdrop}.*"))), None)
        if source is None:
            print(f"--backdrop {args.backdrop}: no such photo in {args.photos / 'photos'}", file=sys.stderr)
            return 2

    from build_visual_vocab import wordnet_dir

    wn = WordNet(args.wordnet or wordnet_dir(args.photos))
    vocab = load_vocabulary(args.vocab)
    judge = Judge(wn, {t.lower() for t in vocab.terms})
    classes = sorted({ph.label for ph in photos})
    a_old, a_new = open_analyzers(Path(old_path), Path(new_path), args.device)
    cache = None if args.no_cache else args.cache
    run_old, cached_old = model_run(a_old, Path(old_path), photos, classes, source, cache, "old")
    run_new, cached_new = (run_old, cached_old) if a_new is a_old else model_run(
        a_new, Path(new_path), photos, classes, source, cache, "new")
    columns: dict[str, tuple[tuple[str, ...], ModelRun | None, ModelRun]] = {"old": (a_old.model.names.names,
                                                                                     run_old, run_old)}
    t_name = time.monotonic()
    if not args.no_variants:
        columns["old → visual"] = (renamed(a_old, vocab, 0, args.margin), None, run_old)
    columns["new"] = (a_new.model.names.names, run_new, run_new)
    if not args.no_variants:
        columns[f"new + CSLS k={args.hubness_k}"] = (renamed(a_new, vocab, args.hubness_k, args.margin), None, run_new)
    t_name = time.monotonic() - t_name
    rows, values = table(columns, photos, judge)

    print(f"\nold: {old_path} ({a_old.model.n_concepts} concepts, {a_old.model.names.method} naming)\n"
          f"new: {new_path} ({a_new.model.n_concepts} concepts, {a_new.model.names.method} naming)"
          + (" — the same bundle: evaluated once" if a_new is a_old else "") + "\n"
          f"{len(photos)} held-out photos, {len(classes)} zero-shot classes, cut-outs on "
          f"{'mid-grey' if source is None else source.name}; vocabulary {vocab.name} ({len(vocab)} terms); "
          f"{SAME} = the same model as the column to its left (only the names change)\n")
    print_table(rows, list(columns))
    print(f"(a constant prediction, all foreground or all background, scores mIoU {constant_miou(photos):.3f})\n")
    print("\n".join(verdicts(values, list(columns).index("new"))))
    def took(run: ModelRun, cached: bool) -> str:
        return f"{run.seconds:.0f} s" + (" (cached)" if cached else "")

    print(f"\ntime: analyses old {took(run_old, cached_old)}, new "
          f"{'the same' if a_new is a_old else took(run_new, cached_new)}; renaming {t_name:.0f} s "
          "(vocabulary embedding cached after the first run)")
    for i, ph in enumerate(photos[:args.show]):
        print(f"\n{ph.id} [{ph.label}] {ph.description[:70]}")
        for c, (names, _, run) in columns.items():
            print(f"  {c:<18} " + ", ".join(names[j] for j in run.top[i]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
