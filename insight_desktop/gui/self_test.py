"""``insight-desktop --self-test``: the whole app on the bundled demo model, offscreen, then exit.

The same check runs on the source tree and on a frozen (PyInstaller) build: it opens the main
window with settings in a temporary file (the user's are not touched), loads the demo concept
model, analyses a sample photo with classes, and checks that concepts, a segmentation and heat
pixels over the photo came out. Exit code 0 on success, 1 with the reason otherwise.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any, Callable

TIMEOUT_S = 600


def run(create_application: Callable[[], Any]) -> int:
    """The self-test; ``create_application`` is :func:`.app.create_application` (passed in, as
    :mod:`.app` runs this), called once the environment is set for an offscreen run."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a self-test must never wait on a network
    t0 = time.monotonic()
    from PySide6.QtCore import QSettings

    from .main_window import MainWindow
    from .settings import AppSettings

    app = create_application()
    with tempfile.TemporaryDirectory(prefix="insight-self-test-") as tmp:
        window = MainWindow(AppSettings(QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat)))
        failures: list[str] = []
        window.worker.failed.connect(lambda failure: failures.append(f"{failure.title}: {failure.message}"))
        window.show()
        shown = time.monotonic() - t0
        window.start()
        doc = window.document
        while (doc.analysis is None or window.worker.is_busy) and not failures:
            if time.monotonic() - t0 > TIMEOUT_S:
                failures.append(f"no analysis after {TIMEOUT_S} s")
                break
            app.processEvents()
            time.sleep(0.01)
        app.processEvents()
        problem = failures[0] if failures else _check(window)
        catalog, analysis = doc.catalog, doc.analysis
        window.close()
    if problem:
        print(f"self-test FAILED: {problem}", file=sys.stderr)
        return 1
    print(f"self-test passed: window in {shown:.2f} s; model {os.path.basename(catalog.path)} "
          f"({catalog.n_concepts} concepts) on {catalog.device}; {doc.image_path.name}: "
          f"{len(analysis.concepts)} concepts active, {len(analysis.segmentation.class_names)} classes segmented; "
          f"{time.monotonic() - t0:.1f} s in all")
    return 0


def _check(window) -> str | None:
    import numpy as np

    doc = window.document
    a = doc.analysis
    if a is None or not a.concepts:
        return "the analysis found no concepts"
    if a.segmentation is None or a.classification is None:
        return "the analysis has no segmentation or classification"
    shown = window.canvas.composite_rgb()
    if not np.any(shown != doc.image):
        return "no heatmap pixels were drawn over the image"
    return None
