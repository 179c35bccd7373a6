"""The ``insight`` command line (entry point ``insight_desktop.cli:main``)."""

from .command import build_parser, main

__all__ = ["build_parser", "main"]
