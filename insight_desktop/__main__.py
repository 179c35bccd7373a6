"""``python -m insight_desktop``: the ``insight`` subcommands; with no arguments, the demonstration.

(The desktop window takes over the no-argument case once the GUI lands.)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    argv = sys.argv[1:] if argv is None else argv
    return cli_main(argv or ["demo"])


if __name__ == "__main__":
    sys.exit(main())
