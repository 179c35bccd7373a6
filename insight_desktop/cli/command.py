"""The ``insight`` command: a thin argparse layer over the core; ``main`` is its entry point.

This module wires the subcommand modules together; they share :mod:`.common` and never import
each other or this module.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..core.errors import user_message
from . import analyze, build, curation, evaluate, faithfulness, index, models, stages
from .common import CLIError, add_device_arg, is_user_facing


def cmd_info(args) -> int:
    from ..core.inspect import describe

    print(describe(Path(args.file)))
    return 0


def cmd_demo(args) -> int:
    from ..core.demo import run_demo

    run_demo(image=args.image, device=args.device, quiet=args.quiet, tiny=args.tiny)
    return 0


# -- wiring -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insight",
                                     description="Insight Desktop: concepts of a vision-language encoder")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build.add_parsers(sub)
    stages.add_parsers(sub)
    analyze.add_parsers(sub)
    evaluate.add_parsers(sub)
    models.add_parsers(sub)
    curation.add_parsers(sub)
    index.add_parsers(sub)
    faithfulness.add_parsers(sub)

    p = sub.add_parser("info", help="describe a concept model, token store, SAE, checkpoint or image")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="a short demonstration on a tiny model it builds (no downloads)")
    p.add_argument("--image", default=None, help="image to analyse (default: a bundled sample)")
    p.add_argument("--tiny", action="store_true",
                   help="build and use a tiny random model instead of the bundled demo model")
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in model provenance
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    except CLIError as exc:
        print(f"insight: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 — known failures become one clear line
        if not is_user_facing(exc) or os.environ.get("INSIGHT_DEBUG"):
            raise
        print(f"insight {args.command}: error: {user_message(exc)}", file=sys.stderr)
        return 1
