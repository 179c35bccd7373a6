"""``insight index`` (a folder's images → a concept index, resumable) and ``insight search`` (query it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import CLIError, add_device_arg, graceful_interrupt, open_analyzer


def cmd_index(args) -> int:
    from tqdm import tqdm

    from ..core.index import IndexStopped, build_index

    if not Path(args.folder).is_dir():
        raise CLIError(f"'{args.folder}' is not a folder")
    analyzer = open_analyzer(args)
    bar_format = "{desc:<9} {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}{postfix}]"
    with graceful_interrupt() as stop, tqdm(total=0, disable=args.quiet, unit="img", bar_format=bar_format,
                                            desc="indexing") as bar:
        def progress(p) -> None:
            bar.total = p.total
            bar.n = p.done
            bar.set_postfix_str(f"{p.failed} unreadable" if p.failed else "", refresh=False)
            bar.refresh()

        try:
            summary = build_index(args.folder, analyzer, index=args.index, recursive=not args.flat,
                                  on_progress=progress, should_stop=stop)
        except IndexStopped as exc:
            bar.close()
            print(str(exc), file=sys.stderr)
            return 130
        finally:
            analyzer.close()
    print(summary.describe())
    print(f"index: {summary.path}")
    return 0


def _resolve_index(target: str, model_identity: str | None) -> Path:
    """An index file, or the index of a folder (by ``--model`` when it has several)."""
    from ..core.index import index_path, indexes_of

    path = Path(target)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CLIError(f"'{target}' is neither a folder index file nor a folder")
    if model_identity is not None:
        found = index_path(path, model_identity)
        if not found.is_file():
            raise CLIError(f"'{target}' has no index for this model yet: run insight index {target} --model …")
        return found
    candidates = indexes_of(path)
    if not candidates:
        raise CLIError(f"'{target}' has not been indexed: run insight index {target} --model MODEL")
    if len(candidates) > 1:
        raise CLIError(f"'{target}' is indexed with {len(candidates)} models: choose one with --model")
    return candidates[0]


def cmd_search(args) -> int:
    from ..core.index import FolderIndex

    modes = sum(x is not None for x in (args.text, args.concept, args.contrast, args.a_not_b))
    if modes != 1:
        raise CLIError('give exactly one of "text", --concept N, --contrast A B or --a-not-b A B')
    if args.text is not None and not args.model:
        raise CLIError("a text search needs the concept model: add --model BUNDLE")
    model = _load_model(args.model) if args.model else None
    path = _resolve_index(args.index, model.model_identity if model is not None else None)
    names = tuple(model.names.display_names) if model is not None else None
    with FolderIndex(path) as index:
        if model is not None and index.meta.get("model_identity") != model.model_identity:
            raise CLIError(f"'{path}' was built with another concept model than '{args.model}'")
        if args.text is not None:
            out = _text(args, index)
        elif args.concept is not None:
            out = _concept(index, args.concept, args)
        elif args.contrast is not None:
            out = _contrast(index, args.contrast[0], args.contrast[1], args)
        else:
            out = _a_not_b(index, args.a_not_b[0], args.a_not_b[1], args)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(_table(out, names))
    return 0


def _load_model(path: str):
    from ..core.concepts.bundle import ConceptModel

    return ConceptModel.load(path)


# -- the queries, as JSON-ready dicts ---------------------------------------------------------------
def _concept(index, concept: int, args) -> dict:
    from dataclasses import asdict

    freq = index.frequency(concept, min_activation=args.min_activation)
    return {"query": "concept", "concept": concept,
            "frequency": {"images": freq.images, "total": freq.total, "share": freq.share,
                          "per_folder": [{**asdict(f), "share": f.share} for f in freq.per_folder]},
            "images": [asdict(h) for h in index.top_images(concept, args.top, min_activation=args.min_activation)],
            "patches": [asdict(h) for h in index.top_patches(concept, args.top, per_image=args.per_image)]}


def _contrast(index, a: str, b: str, args) -> dict:
    from dataclasses import asdict

    result = index.contrast(a, b, args.top)
    return {"query": "contrast", "group_a": a, "group_b": b, "images_a": result.n_a, "images_b": result.n_b,
            "statistic": "Haldane-corrected log odds ratio and its Wald z",
            "toward_a": [asdict(c) for c in result.toward_a], "toward_b": [asdict(c) for c in result.toward_b]}


def _a_not_b(index, a: str, b: str, args) -> dict:
    from dataclasses import asdict

    ca, cb = _concept_id(a), _concept_id(b)
    hits = index.a_not_b(ca, cb, args.top, min_activation=args.min_activation)
    return {"query": "a-not-b", "a": ca, "b": cb, "images": [asdict(h) for h in hits]}


def _text(args, index) -> dict:
    from ..core.concepts.search import ConceptSearcher

    analyzer = open_analyzer(args)  # the text tower
    try:
        result = ConceptSearcher(analyzer.model, analyzer.backbone).search(args.text)
    finally:
        analyzer.close()
    concepts = []
    for hit in result.hits[:args.concepts]:
        found = _concept(index, hit.concept, args)
        concepts.append({"concept": hit.concept, "why": hit.why, "similarity": hit.similarity,
                         "frequency": found["frequency"], "images": found["images"], "patches": found["patches"]})
    return {"query": "text", "text": args.text, "reason": result.reason, "concepts": concepts}


def _concept_id(text: str) -> int:
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise CLIError(f"--a-not-b takes concept ids, not {text!r}") from None


# -- tables -------------------------------------------------------------------------------------------
def _table(out: dict, names: tuple[str, ...] | None) -> str:
    def name(c: int) -> str:
        return f"{c} {names[c]}" if names is not None and 0 <= c < len(names) else str(c)

    lines: list[str] = []
    if out["query"] == "concept":
        _concept_lines(lines, out, name)
    elif out["query"] == "text":
        if not out["concepts"]:
            lines.append(f"no concept found for {out['text']!r}" + (f": {out['reason']}" if out["reason"] else ""))
        for c in out["concepts"]:
            lines.append(f"== concept {name(c['concept'])} ({c['why']})")
            _concept_lines(lines, c, name)
    elif out["query"] == "contrast":
        lines.append(f"{out['group_a']} ({out['images_a']} images) vs {out['group_b']} ({out['images_b']} images); "
                     f"ranked by z of the log odds ratio")
        for side, label in (("toward_a", out["group_a"]), ("toward_b", out["group_b"])):
            lines.append(f"more frequent in {label}:")
            lines.append(f"  {'concept':<30} {'share A':>8} {'share B':>8} {'log odds':>9} {'z':>7}")
            for c in out[side]:
                lines.append(f"  {name(c['concept'])[:30]:<30} {c['share_a']:>8.1%} {c['share_b']:>8.1%} "
                             f"{c['log_odds']:>9.2f} {c['z']:>7.2f}")
    else:
        lines.append(f"images where {name(out['a'])} fires and {name(out['b'])} does not: {len(out['images'])}")
        _image_lines(lines, out["images"])
    return "\n".join(lines)


def _concept_lines(lines: list[str], out: dict, name) -> None:
    f = out["frequency"]
    lines.append(f"concept {name(out['concept'])}: fires in {f['images']} of {f['total']} images ({f['share']:.1%})")
    for s in f["per_folder"]:
        lines.append(f"  {s['folder'] or '(top folder)':<30} {s['images']:>6} / {s['total']:<6} {s['share']:>7.1%}")
    lines.append("top images:")
    _image_lines(lines, out["images"])
    lines.append("top patches:")
    for p in out["patches"]:
        lines.append(f"  {p['value']:>8.3f}  {p['path']}  patch ({p['row']}, {p['col']})")


def _image_lines(lines: list[str], images: list[dict]) -> None:
    for h in images:
        lines.append(f"  {h['max']:>8.3f}  {h['path']}  ({h['patches']} of {h['n_patches']} patches)")


def add_parsers(sub) -> None:
    p = sub.add_parser("index", help="index a folder's images with a concept model (incremental, resumable)")
    p.add_argument("folder")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="concept model (bundle folder or .zip)")
    p.add_argument("--index", default=None, metavar="FILE",
                   help="index file (default: under the user data folder, one per folder and model)")
    p.add_argument("--flat", action="store_true", help="only the folder's own images, not its sub-folders")
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="query a folder index: text, a concept, a contrast between sub-folders")
    p.add_argument("index", metavar="INDEX_OR_FOLDER", help="an index file, or an indexed folder")
    p.add_argument("text", nargs="?", default=None, help="free text, a concept name or id (needs --model)")
    p.add_argument("--concept", type=int, default=None, metavar="N", help="top images, patches and frequency")
    p.add_argument("--contrast", nargs=2, default=None, metavar=("A", "B"),
                   help="concepts that tell sub-folder A from sub-folder B")
    p.add_argument("--a-not-b", nargs=2, default=None, metavar=("A", "B"),
                   help="images where concept A fires and concept B does not")
    p.add_argument("--model", default=None, metavar="BUNDLE", help="concept model: names in tables, text search")
    p.add_argument("--top", type=int, default=10, help="rows per list (default 10)")
    p.add_argument("--per-image", type=int, default=1, help="top patches taken from one image at most (default 1)")
    p.add_argument("--concepts", type=int, default=3, help="text search: concepts shown (default 3)")
    p.add_argument("--min-activation", type=float, default=0.0, help="a concept fires above this (default 0)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=cmd_search)
