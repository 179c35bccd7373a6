"""Start-up and quit timestamps for ``benchmarks/bench_startup.py`` (and the quit tests).

With ``INSIGHT_STARTUP_TRACE=<file>`` in the environment, the app appends one line per event,
``<event> <time.time()>``: ``window`` (the first event-loop turn after the window was shown, so
it has been painted), ``heatmap`` (the first analysis is in the window), ``closing`` (the window
is asked to close) and ``closed`` (settings saved, worker stopped or left behind). A benchmark
compares them with the time it launched the process (the same clock), so they include Python's
start-up and every import, in the source tree as in a frozen build.

``INSIGHT_STARTUP_QUIT`` closes the window by itself: ``heatmap`` after the first heatmap,
``loading`` while the model loads (right after it was asked for), ``analysing`` as soon as the
first analysis is running: the last two are the "quit while busy" cases.
"""

from __future__ import annotations

import os
import time
from typing import Any

from PySide6.QtCore import QTimer

TRACE_ENV = "INSIGHT_STARTUP_TRACE"
QUIT_ENV = "INSIGHT_STARTUP_QUIT"
QUIT_MODES = ("heatmap", "loading", "analysing")


def enabled() -> bool:
    return bool(os.environ.get(TRACE_ENV))


def record(event: str) -> None:
    path = os.environ.get(TRACE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{event} {time.time():.6f}\n")


def install(window: Any) -> None:
    """Record the window's start-up events and, if asked, close it at the chosen moment."""
    mode = os.environ.get(QUIT_ENV, "")
    QTimer.singleShot(0, lambda: record("window"))

    def close_now() -> None:
        record("closing")
        window.close()

    state = {"heatmap": False, "analysing": False}

    def on_shown(_analysis: object) -> None:
        if not state["heatmap"]:
            state["heatmap"] = True
            record("heatmap")
            if mode == "heatmap":
                QTimer.singleShot(0, close_now)

    def on_busy(text: str, fraction: float) -> None:
        # the first progress of the analysis itself (not the request's own "Analysing …" at fraction 0)
        if mode == "analysing" and not state["analysing"] and text.startswith("Analysing") and ":" in text:
            state["analysing"] = True
            QTimer.singleShot(0, close_now)

    window.requests.shown.connect(on_shown)
    window.worker.busy.connect(on_busy)
    if mode == "loading":
        QTimer.singleShot(50, close_now)  # start() runs first (its timer is older): the load is under way
