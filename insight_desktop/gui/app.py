"""``insight-desktop``: the desktop application.

The window is shown before anything heavy is imported: torch, open_clip and the model load on
the worker thread afterwards (ARCHITECTURE rule 5), so the user sees the app at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from .. import __version__

APP_NAME = "Insight Desktop"
#: the application's id: its X11 WM_CLASS, its Wayland app id and the name of its desktop entry
#: (packaging/insight-desktop.desktop, whose StartupWMClass must equal it) and icon
APP_ID = "insight-desktop"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="insight-desktop", description="See what a vision-language model sees.")
    p.add_argument("images", nargs="*", help="images or folders to open (default: the sample photos)")
    p.add_argument("--model",
                   help="a concept model bundle (.zip or folder); default: the last one, else the demo model")
    p.add_argument("--session", help="a saved session to restore")
    p.add_argument("--self-test", action="store_true",
                   help="open the demo model offscreen, analyse a sample photo, exit 0 if all is well")
    p.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    return p.parse_args(argv)


def _no_display() -> bool:
    """True on Linux without any display server (Qt would abort with a cryptic message)."""
    return (sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM")
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"))


def collect_garbage_on_gui_thread(app) -> None:
    """Python's cycle collector runs on whichever thread allocates when a threshold is reached.
    If that is a worker thread and the garbage holds Qt objects (a closed dialog, a menu), their
    C++ destructors run there and can deadlock with the GUI thread (both wait for a QObject lock
    and the GIL). pyqtgraph's GarbageCollector turns automatic collection off and collects on a
    GUI-thread timer instead: the cure pyqtgraph documents for exactly this."""
    from pyqtgraph.util.garbage_collector import GarbageCollector

    if getattr(app, "_insight_gc", None) is None:
        app._insight_gc = GarbageCollector(interval=0.5)


def create_application(argv: list[str] | None = None):
    # torch's OpenMP threads spin while they wait for work by default; here they share two or four
    # cores with the GUI thread and the thumbnail pool, and a spinning thread that loses its core
    # stalls the others at every barrier: on two busy cores a backbone window took 2–4 s instead
    # of 0.5 s. Passive waiting costs nothing measurable when the cores are free. (It must be set
    # before torch loads, which is later, on the worker thread; a user's own setting wins.)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    app.setApplicationName(APP_ID)  # → WM_CLASS on X11
    app.setDesktopFileName(APP_ID)  # → app id on Wayland: the desktop entry's icon and name
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setApplicationVersion(__version__)
    collect_garbage_on_gui_thread(app)
    from ..core.paths import resources_dir

    icon = resources_dir() / "icons" / "insight-desktop.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the app; once its window is closed the process ends there (:func:`_end`)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        from .self_test import run

        return run(create_application)
    if _no_display():
        print("insight-desktop: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run it in a desktop "
              "session, or try `insight demo` for the command-line demonstration.", file=sys.stderr)
        return 2
    app = create_application()
    from PySide6.QtCore import QTimer

    from .main_window import MainWindow

    window = MainWindow()
    window.show()
    # Start loading after the first paint, so the window is there before torch is imported.
    QTimer.singleShot(0, lambda: window.start([Path(p) for p in args.images], args.model, args.session))
    if not window.settings.first_run_done() and not (args.model or args.session):
        QTimer.singleShot(100, window.show_first_run)
    from . import startup_trace

    if startup_trace.enabled():
        startup_trace.install(window)
    _end(app.exec())


def _end(code: int) -> NoReturn:
    """End the process once the window is closed (its settings and session saved, the worker told
    to stop and waited for, at most ``worker.QUIT_WAIT_MS``), without Python's and Qt's teardown.

    Two reasons. A worker still busy then (a model load inside an import, which nothing can
    interrupt) must not be torn down by the interpreter while it runs (Qt aborts: "QThread:
    Destroyed while thread … is still running"), and waiting for it kept the process alive for
    seconds. And the teardown itself (every widget, torch's and Qt's libraries) took 0.8 s on two
    cores after the window had gone, for nothing: every file the app writes is written
    atomically when it is written, and the window's state was saved in ``closeEvent``."""
    import logging

    from . import startup_trace

    startup_trace.record("closed")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
