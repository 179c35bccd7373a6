"""Review mode: from a key press to the next concept shown, on the demo model.

Run: ``.venv/bin/python benchmarks/bench_review.py`` (offscreen; demo model on the CPU; the
curation goes to a temporary data folder). The window analyses chelsea, review mode is switched
on, then each key is pressed 30 times on the review panel, as a user would; a press is timed
until Qt has handled every event it caused (the heatmap of the next concept drawn, the tree,
inspector and panel refreshed). The baseline is selecting a concept directly (what a click in
the tree costs), in the same process. Target: ≤ 50 ms per key.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

N = 30


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="bench-review-")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["INSIGHT_DATA_DIR"] = os.path.join(tmp, "data")
    os.environ.setdefault("INSIGHT_CACHE_DIR", os.path.join(tmp, "cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest

    from insight_desktop.core.paths import resource_path
    from insight_desktop.gui.app import create_application
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    app = create_application()
    window = MainWindow(AppSettings(QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat)))
    window.status.set_device_choice("cpu")
    window.show()
    window.start([resource_path("samples", "chelsea.png")])
    t0 = time.time()
    while (window.document.analysis is None or window.worker.is_busy) and time.time() - t0 < 600:
        app.processEvents()
        time.sleep(0.002)
    doc, review = window.document, window.review
    if doc.analysis is None or review.controller.curation is None:
        sys.exit("the demo model did not load")
    window.actions.review_mode.setChecked(True)
    panel = review.panel
    app.processEvents()

    def press(k, modifier=Qt.KeyboardModifier.NoModifier) -> float:
        panel.setFocus()
        t = time.perf_counter()
        QTest.keyClick(panel, k, modifier)
        app.processEvents()
        return time.perf_counter() - t

    def select(j: int) -> float:
        t = time.perf_counter()
        doc.select_concept(j)
        app.processEvents()
        return time.perf_counter() - t

    rows: dict[str, list[float]] = {}
    order = list(review.mode.navigator.order[:2 * N])
    select(int(order[0]))
    rows["select a concept directly (baseline)"] = [select(int(j)) for j in order[N:2 * N]]
    select(int(order[0]))
    rows["J: next concept"] = [press(Qt.Key.Key_J) for _ in range(N)]
    rows["K: previous concept"] = [press(Qt.Key.Key_K) for _ in range(N)]
    rows["A: accept + advance"] = [press(Qt.Key.Key_A) for _ in range(N)]
    rows["U: next unreviewed"] = [press(Qt.Key.Key_U) for _ in range(N)]
    window.actions.hide_rejected.setChecked(True)
    rows["X: reject + advance (rejected hidden)"] = [press(Qt.Key.Key_X) for _ in range(N)]
    window.actions.hide_rejected.setChecked(False)
    rejected = len(review.controller.curation.rejected())
    rows["Ctrl+Z: undo a verdict"] = [press(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier) for _ in range(N)]
    undone = rejected - len(review.controller.curation.rejected())
    saves = []
    for _ in range(5):
        review.controller.set_status([int(order[0])], "flagged" if len(saves) % 2 else "accepted")
        t = time.perf_counter()
        review.controller.flush()
        saves.append(time.perf_counter() - t)

    m = doc.catalog.n_concepts
    base = statistics.median(rows["select a concept directly (baseline)"])
    print(f"Review mode — demo model ({m} concepts) on {doc.catalog.device}, chelsea, median of {N} presses")
    print(f"{'key':<40}{'median':>10}{'max':>10}{'vs baseline':>13}")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"{name:<40}{med * 1000:>8.1f} ms{max(values) * 1000:>8.1f} ms{med / base:>12.2f}×")
    print(f"(the {N} undos took back {undone} of the {rejected} rejections: a verdict undone stays on its concept)")
    print(f"{'autosave (flush) of this curation':<40}{statistics.median(saves) * 1000:>8.1f} ms"
          f"{max(saves) * 1000:>8.1f} ms   ({len(review.controller.curation.records)} records)")
    window.close()


if __name__ == "__main__":
    main()
