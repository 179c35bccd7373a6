"""``insight curation export|merge|stats``: annotators' curation files from the command line.

A curation file is named by its path, or, with ``--model BUNDLE``, is the user's own file for that
model (the one the app autosaves; docs/curation.md). Exit codes: 0 done, 1 a file could not be
read or written (one line says why), 2 wrong arguments, 3 ``merge`` wrote the merged file but left
conflicts as mine (listed; ``--prefer`` settles them).
"""

from __future__ import annotations

import math
import sys

from .common import CLIError

#: ``merge`` wrote the file but conflicts remain (kept as mine)
EXIT_CONFLICTS = 3


def _model(args):
    from ..core.concepts.bundle import ConceptModel

    return ConceptModel.load(args.model, eager=False) if getattr(args, "model", None) else None


def _curations(args, files: list[str], *, at_least: int, at_most: int):
    """The curations named by ``files``, or the user's own for ``--model`` when none is named."""
    from ..core.analysis_cache import model_identity
    from ..core.curation import load_curation
    from ..core.curation.store import curation_for

    model = _model(args)
    try:
        if model is not None:
            identity, n = model_identity(model.manifest), model.n_concepts
            found = [load_curation(f, model_identity=identity, n_concepts=n) for f in files]
            if not files:
                own = curation_for(model)
                if own.path is None or not own.path.exists():
                    raise CLIError(f"you have no curation of '{args.model}' yet (looked for {own.path})")
                found = [own]
        else:
            found = [load_curation(f) for f in files]
    finally:
        if model is not None:
            model.close()
    if not at_least <= len(found) <= at_most:
        raise CLIError(f"give {at_least}{f' to {at_most}' if at_most != at_least else ''} curation file(s), "
                       "or --model for your own")
    return found


def cmd_stats(args) -> int:
    from ..core.curation import agreement

    curations = _curations(args, args.files, at_least=1, at_most=2)
    for c in curations:
        print(f"{c.user} ({c.path}): {c.progress()}")
    if len(curations) == 2:
        result = agreement(*curations)
        print(result)
        if result.n_both:
            kappa = "undefined" if math.isnan(result.kappa) else f"{result.kappa:.4f}"
            print(f"percent agreement {result.percent:.2f} %, Cohen's kappa {kappa}, on {result.n_both} concepts")
    return 0


def cmd_export(args) -> int:
    from ..core.curation.export import export_verdicts, write_curated_bundle

    if not args.out and not args.bundle:
        raise CLIError("say what to write: --out FILE.csv|FILE.json (the verdicts) and/or --bundle OUT (a curated "
                       "copy of the model)")
    if args.bundle and not args.model:
        raise CLIError("--bundle needs --model: the bundle to copy")
    curation, = _curations(args, [args.file] if args.file else [], at_least=1, at_most=1)
    if args.out:
        model = _model(args)
        try:
            names = model.names if model is not None else None
            path = export_verdicts(curation, args.out, names, all_concepts=not args.reviewed_only)
        finally:
            if model is not None:
                model.close()
        print(f"verdicts written to {path}")
    if args.bundle:
        out = write_curated_bundle(args.model, curation, args.bundle, overwrite=args.overwrite)
        print(f"curated bundle written to {out}: {curation.progress()}")
    return 0


def cmd_merge(args) -> int:
    from ..core.curation import merge

    mine, theirs = _curations(args, [args.mine, args.theirs], at_least=2, at_most=2)
    plan = merge(mine, theirs, prefer=args.prefer)
    out = mine.save(args.out or mine.path)
    print(f"merged {len(plan.change.after)} concept(s) from {theirs.user} into {out}")
    if not plan.conflicts:
        return 0
    settled = {"mine": "kept mine", "theirs": "took theirs"}.get(args.prefer or "", "kept mine for now")
    print(f"{len(plan.conflicts)} conflict(s), {settled}:")
    for c in plan.conflicts:
        print(f"  concept {c.concept}: mine {_shown(c.mine)} | theirs {_shown(c.theirs)}")
    if args.prefer is None:
        print("choose with --prefer mine|theirs, or in the app's review mode", file=sys.stderr)
        return EXIT_CONFLICTS
    return 0


def _shown(review) -> str:
    parts = [review.status]
    if review.name is not None:
        parts.append(repr(review.name))
    if review.note:
        note = " ".join(review.note.split())
        parts.append(f"note {note[:60]!r}{'…' if len(note) > 60 else ''}")
    return " ".join(parts)


# -- wiring -----------------------------------------------------------------------------------
def add_parsers(sub) -> None:
    p = sub.add_parser("curation", help="export, merge or summarise annotators' curation files")
    cmds = p.add_subparsers(dest="curation_command", required=True, metavar="ACTION")

    s = cmds.add_parser("stats", help="progress of one curation, and agreement (Cohen's κ) between two")
    s.add_argument("files", nargs="*", metavar="FILE", help="curation files (default: yours for --model)")
    _model_arg(s)
    s.set_defaults(func=cmd_stats)

    e = cmds.add_parser("export", help="the verdicts as CSV/JSON, or a curated copy of the model bundle")
    e.add_argument("file", nargs="?", metavar="FILE", help="curation file (default: yours for --model)")
    _model_arg(e)
    e.add_argument("--out", default=None, help="verdicts file: .csv (formula-safe) or .json")
    e.add_argument("--reviewed-only", action="store_true", help="list only concepts with a record")
    e.add_argument("--bundle", default=None, metavar="OUT",
                   help="write a copy of --model with the curated names, statuses and provenance (.zip or folder)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --bundle")
    e.set_defaults(func=cmd_export)

    m = cmds.add_parser("merge", help="merge another annotator's curation into yours")
    m.add_argument("mine", metavar="MINE", help="your curation file")
    m.add_argument("theirs", metavar="THEIRS", help="theirs")
    m.add_argument("--out", default=None, help="where to write the merged curation (default: over MINE, atomically)")
    m.add_argument("--prefer", choices=("mine", "theirs"), default=None,
                   help="settle every conflict this way (default: keep mine, list them, exit code 3)")
    _model_arg(m)
    m.set_defaults(func=cmd_merge)


def _model_arg(p) -> None:
    p.add_argument("--model", default=None, metavar="BUNDLE",
                   help="the concept model: checks the files belong to it, names concepts, finds your own file")

