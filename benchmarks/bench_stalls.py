"""GUI-thread stalls with big photos: open, analysis arrival, concept switches and overlay changes.

Run: ``.venv/bin/python benchmarks/bench_stalls.py`` (offscreen; demo model on the CPU; a few
minutes on two cores). ``--profile`` adds a cProfile of the GUI thread while the 8000×6000
photo's analysis arrives (what the panels do with it).

A heartbeat ``QTimer`` fires every 5 ms on the GUI thread; the longest gap between two beats
during an action is that action's *stall* (the time the window could not repaint or react).
Each action's *time* runs from the call until what it changes is on screen (the image shown,
the layers drawn — big layers are made on a thread, so time can exceed the stall). The photos
are chelsea (451×300, the baseline) and chelsea upscaled to 4000×3000 and 8000×6000 JPEGs,
all opened in the same process; ratios are against the baseline. Targets at 8000×6000: concept
switch ≤ 50 ms, opacity ≤ 16 ms, no stall over 100 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = ((451, 300), (4000, 3000), (8000, 6000))  # (width, height); the first is chelsea itself
HEARTBEAT_MS = 5


def child(tmp: str, profile: bool) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import QSettings, Qt, QTimer

    from insight_desktop.core.paths import resource_path
    from insight_desktop.gui.app import create_application
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    chelsea = resource_path("samples", "chelsea.png")
    photos = [chelsea]
    with Image.open(chelsea) as im:
        for w, h in SIZES[1:]:
            path = Path(tmp) / f"chelsea-{w}x{h}.jpg"
            im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC).save(path, quality=90)
            photos.append(path)

    app = create_application()
    settings = AppSettings(QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat))
    if hasattr(settings, "set_analysis_cache_limit"):
        settings.set_analysis_cache_limit(0)  # every analysis computed, none read back from disk
    window = MainWindow(settings)
    window.status.set_device_choice("cpu")
    window.resize(1500, 940)
    window.show()
    app.processEvents()

    beat = {"last": time.perf_counter(), "max": 0.0, "cpu_last": time.thread_time(), "cpu_max": 0.0}

    def heartbeat() -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        beat["max"] = max(beat["max"], now - beat["last"])
        beat["cpu_max"] = max(beat["cpu_max"], cpu - beat["cpu_last"])
        beat["last"], beat["cpu_last"] = now, cpu

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(heartbeat)
    timer.start(HEARTBEAT_MS)

    canvas, doc = window.canvas, window.document

    def settled() -> bool:
        return not window.loader.is_loading() and not canvas.layers.pending()

    def measure(action, done, limit=600.0) -> tuple[float, float, float]:
        """(time until ``done()``, largest heartbeat gap, largest GUI-thread CPU time between two
        beats) of ``action``, gaps counted to the next beat after."""
        app.processEvents()
        beat["last"], beat["max"] = time.perf_counter(), 0.0
        beat["cpu_last"], beat["cpu_max"] = time.thread_time(), 0.0
        t0 = time.perf_counter()
        action()
        while not done() and time.perf_counter() - t0 < limit:
            app.processEvents()
            time.sleep(0.001)
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        while beat["last"] < t1:  # the beat after the end closes the last gap
            app.processEvents()
            time.sleep(0.0005)
        return elapsed, beat["max"], beat["cpu_max"]

    window.load_model(resource_path("models", "demo-concepts.zip"))
    while doc.catalog is None:
        app.processEvents()
        time.sleep(0.01)

    results: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for path in photos:
        rows: dict[str, list[tuple[float, float, float]]] = {}
        profiler = None
        if profile and path == photos[-1]:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        rows["open (decode → shown)"] = [measure(lambda p=path: window.open_images([p]),
                                                lambda p=path: doc.image_path == Path(p) and settled())]
        rows["analysis (request → drawn)"] = [measure(
            lambda: None, lambda: doc.analysis is not None and not window.worker.is_busy and settled())]
        if profiler is not None:
            profiler.disable()
            import pstats

            print("PROFILE of the GUI thread, open and analysis of " + path.name, file=sys.stderr)
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats("insight_desktop|pyqtgraph|numpy", 40)
        concepts = [c.concept for c in doc.analysis.concepts[1:9]]
        rows["switch concept"] = [measure(lambda j=j: doc.select_concept(j), settled) for j in concepts]
        rows["next active concept"] = [measure(window.next_concept, settled) for _ in range(5)]
        rows["opacity"] = [measure(lambda v=v: doc.set_overlay(heatmap_opacity=v), settled)
                           for v in (0.2, 0.4, 0.8, 0.5, 0.6)]
        rows["threshold"] = [measure(lambda v=v: doc.set_overlay(threshold=v), settled) for v in (0.2, 0.5, 0.0)]
        rows["colormap"] = [measure(lambda v=v: doc.set_overlay(colormap=v), settled)
                            for v in ("viridis", "magma", "inferno")]
        rows["fixed scale on/off"] = [measure(lambda v=v: doc.set_overlay(heat_scale=v), settled)
                                      for v in ("model", "image")]
        rows["segmentation layer on"] = [measure(lambda: doc.set_overlay(show_segmentation=True), settled)]
        rows["residual layer on"] = [measure(lambda: doc.set_overlay(show_residual=True), settled)]
        doc.set_overlay(show_segmentation=False, show_residual=False)
        results[f"{doc.image.shape[1]}×{doc.image.shape[0]}"] = rows
    window.close()
    print("BENCH " + json.dumps(results))


def main() -> None:
    profile = "--profile" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
        args = [sys.executable, __file__, "--child", tmp] + (["--profile"] if profile else [])
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if profile:
        print(proc.stderr[-20000:])
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"the app did not finish:\n{proc.stdout}\n{proc.stderr[-5000:]}")
    results = json.loads(line[6:])
    sizes = list(results)
    base = results[sizes[0]]
    print(f"GUI-thread stalls — demo model on the CPU, heartbeat {HEARTBEAT_MS} ms. time: median until drawn; "
          "stall: largest heartbeat gap; cpu: largest GUI-thread CPU time between two beats (the stall our "
          "own work causes, without waits for a busy machine); all ms; ×: time vs " + sizes[0])
    print(f"{'action':<28}" + "".join(f"{s:>33}" for s in sizes))
    print(f"{'':<28}" + "".join(f"{'time  stall    cpu       ×':>33}" for _ in sizes))
    worst = {s: [0.0, 0.0] for s in sizes}
    for action in base:
        cells = []
        b = statistics.median(x[0] for x in base[action])
        for s in sizes:
            v = results[s][action]
            t, stall, cpu = statistics.median(x[0] for x in v), max(x[1] for x in v), max(x[2] for x in v)
            worst[s] = [max(worst[s][0], stall), max(worst[s][1], cpu)]
            ratio = t / b if b > 0 else float("nan")
            cells.append(f"{t * 1000:>9.1f} {stall * 1000:>6.1f} {cpu * 1000:>6.1f} {ratio:>7.2f}×")
        print(f"{action:<28}" + "".join(f"{c:>33}" for c in cells))
    print(f"{'largest stall / cpu':<28}" + "".join(f"{worst[s][0] * 1000:>16.1f} {worst[s][1] * 1000:>6.1f}         "
                                                  for s in sizes))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], "--profile" in sys.argv)
    else:
        main()
