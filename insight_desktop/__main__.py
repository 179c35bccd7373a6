"""``python -m insight_desktop``: the desktop app; ``python -m insight_desktop <subcommand> …`` the
``insight`` command line (``python -m insight_desktop --help`` lists its subcommands)."""

from __future__ import annotations

import sys


def _cli_subcommands() -> set[str]:
    import argparse

    from .cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in ("-h", "--help") or argv[0] in _cli_subcommands()):
        from .cli import main as cli_main

        return cli_main(argv)
    from .gui.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
