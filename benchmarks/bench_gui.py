"""Desktop-app responsiveness: launch → window shown → first heatmap, and re-render times.

Run: ``.venv/bin/python benchmarks/bench_gui.py`` (offscreen; demo model on the CPU).

A child process starts the app the way a user does (``insight_desktop.gui.app``), so the launch
figures include Python start-up and imports. In the same child, after the first analysis,
switching the selected concept, the opacity, the threshold and the colormap is timed; those
re-render from the Analysis already in the window — the table compares them with the worker
round trip of the analysis itself (the baseline, measured in the same process).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time


def child(t0: float) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from insight_desktop.core.paths import resource_path
    from insight_desktop.gui.app import create_application
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    out = {}
    app = create_application()
    window = MainWindow(AppSettings(QSettings(os.path.join(os.environ["BENCH_TMP"], "s.ini"),
                                              QSettings.Format.IniFormat)))
    window.status.set_device_choice("cpu")
    window.show()
    app.processEvents()
    out["window shown"] = time.time() - t0
    out["torch imported at window shown"] = "torch" in sys.modules
    requested = time.time()
    window.start([resource_path("samples", "chelsea.png")])
    while window.document.analysis is None and time.time() - t0 < 600:
        app.processEvents()
        time.sleep(0.002)
    app.processEvents()
    out["first heatmap"] = time.time() - t0
    out["model load + analysis (worker)"] = time.time() - requested
    doc = window.document
    # The baseline: a worker round trip for the same image (model already loaded), with classes whose
    # prompts are already embedded (one fewer: a new analysis, no text tower).
    window.requests.forget()
    doc.set_classes(doc.classes[:-1])
    t = time.perf_counter()
    window.request_analysis()
    while window.worker.is_busy:
        app.processEvents()
        time.sleep(0.002)
    app.processEvents()
    out["analysis round trip (baseline)"] = time.perf_counter() - t

    def timed(change) -> float:
        t = time.perf_counter()
        change()
        app.processEvents()
        return time.perf_counter() - t

    concepts = [c.concept for c in doc.analysis.concepts[:30]]
    out["switch concept (new)"] = [timed(lambda j=j: doc.select_concept(j)) for j in concepts[:15]]
    out["switch concept (seen)"] = [timed(lambda j=j: doc.select_concept(j)) for j in concepts[8:15]]
    out["opacity"] = [timed(lambda v=v: doc.set_overlay(heatmap_opacity=v)) for v in (0.2, 0.4, 0.6, 0.8, 0.5) * 3]
    out["threshold"] = [timed(lambda v=v: doc.set_overlay(threshold=v)) for v in (0.1, 0.3, 0.5, 0.0) * 3]
    out["colormap"] = [timed(lambda v=v: doc.set_overlay(colormap=v)) for v in ("viridis", "magma", "inferno") * 3]
    out["image size"] = list(doc.image.shape[:2])
    out["device"] = doc.catalog.device
    window.close()
    print("BENCH " + json.dumps(out))


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        # a fresh cache folder: no class prompts or analyses from earlier runs
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1", "BENCH_TMP": tmp,
               "INSIGHT_CACHE_DIR": os.path.join(tmp, "cache")}
        t0 = time.time()
        proc = subprocess.run([sys.executable, __file__, "--child", repr(t0)], env=env, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"the app did not finish:\n{proc.stdout}\n{proc.stderr}")
    r = json.loads(line[6:])
    base = r["analysis round trip (baseline)"]
    print(f"Insight Desktop GUI benchmark — demo model on {r['device']}, "
          f"chelsea {r['image size'][1]}×{r['image size'][0]} px")
    print(f"{'measure':<34}{'time':>12}{'vs analysis':>14}")
    print(f"{'launch → window shown':<34}{r['window shown']:>10.2f} s{'':>14}   "
          f"(torch imported: {r['torch imported at window shown']})")
    print(f"{'launch → first heatmap':<34}{r['first heatmap']:>10.2f} s")
    print(f"{'  of which model load + analysis':<34}{r['model load + analysis (worker)']:>10.2f} s")
    print(f"{'analysis round trip (baseline)':<34}{base * 1000:>10.0f} ms{1.0:>13.3f}×")
    for key in ("switch concept (new)", "switch concept (seen)", "opacity", "threshold", "colormap"):
        v = r[key]
        med, worst = statistics.median(v), max(v)
        print(f"{'re-render: ' + key:<34}{med * 1000:>10.1f} ms{med / base:>13.4f}×   "
              f"(max {worst * 1000:.1f} ms, n={len(v)})")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(float(sys.argv[2]))
    else:
        main()
