"""Start-up and quit times of the real app: launch → window shown → first heatmap, cold and warm.

    .venv/bin/python benchmarks/bench_startup.py [--repeat N] [dist/insight-desktop/insight-desktop]

The app is launched the way a user launches it (``python -m insight_desktop`` in the source
tree; the frozen executable when its path is given, or when ``dist/insight-desktop/`` holds one),
offscreen, in a clean environment (only HOME, PATH and the settings below), on the demo model
and a sample photo (``--model`` and a file, so no welcome dialog waits). It records its events
with ``INSIGHT_STARTUP_TRACE`` (:mod:`insight_desktop.gui.startup_trace`): window shown, first
heatmap, closing, closed; this script adds the launch and the moment the process ended, on the
same clock.

* **cold**: the files of the app (``.venv`` + source + resources, or the frozen folder) are
  dropped from the page cache with posix_fadvise, as after a reboot, and HOME is new: no
  settings, no class-prompt cache, no analysis cache.
* **warm**: the same again at once, with the same HOME (what a user sees on the next start).
* **quit while loading / while analysing**: a new HOME, the window closes while the model loads
  (just after it was asked for) or as soon as the analysis runs.

Each run closes the window by itself (after the first heatmap, or at the busy moment), so
"quit" is closing → process gone; "CPU" is the process's CPU time, launch to exit (less
sensitive than wall time to what else the machine runs). Targets (issue: laptop demos): window ≤ 1.5 s, first heatmap
≤ 3 s on two cores, quit ≤ 1 s. The table's last column is each time as a multiple of "window"
in the same run (a same-process baseline that carries the machine's load of the moment).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples" / "chelsea.png"
MODEL = ROOT / "resources" / "models" / "demo-concepts.zip"


def evict(*folders: Path) -> int:
    """Drop every file under ``folders`` from the page cache; returns how many files."""
    n = 0
    for folder in folders:
        for path in folder.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)
                    n += 1
            except OSError:
                pass
    return n


def launch(cmd: list[str], home: Path, quit_when: str) -> dict[str, float]:
    """Run the app once; seconds from launch to each event, plus ``exit``."""
    trace = home / f"trace-{time.monotonic_ns()}.txt"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1",
           "INSIGHT_STARTUP_TRACE": str(trace), "INSIGHT_STARTUP_QUIT": quit_when}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    t_exit = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} exited with {out.returncode}:\n{out.stderr[-3000:]}")
    events = {}
    for line in trace.read_text().splitlines():
        name, stamp = line.split()
        events.setdefault(name, float(stamp) - t0)
    events["exit"] = t_exit - t0
    events["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    trace.unlink()
    return events


def row(name: str, runs: list[dict[str, float]]) -> str:
    def med(key: str) -> float | None:
        values = [r[key] for r in runs if key in r]
        return statistics.median(values) if values else None

    window, heatmap, closing, end, cpu = med("window"), med("heatmap"), med("closing"), med("exit"), med("cpu")
    quit_s = None if closing is None or end is None else end - closing
    cells = [f"{window:8.2f} s" if window is not None else f"{'—':>10}",
             f"{heatmap:8.2f} s" if heatmap is not None else f"{'—':>10}",
             f"{quit_s:8.2f} s" if quit_s is not None else f"{'—':>10}"]
    ratio = f"{heatmap / window:9.1f}×" if heatmap and window else f"{'':>10}"
    return f"{name:<40}" + "".join(f"{c:>12}" for c in cells) + f"{ratio:>16}" + f"{cpu:9.2f} s"


def measure(name: str, cmd: list[str], folders: list[Path], repeat: int) -> list[str]:
    lines = []
    cold, warm = [], []
    busy: dict[str, list[dict[str, float]]] = {"loading": [], "analysing": []}
    with tempfile.TemporaryDirectory(prefix="insight-startup-") as tmp:
        for i in range(repeat):
            home = Path(tmp) / f"home{i}"
            home.mkdir()
            evict(*folders)
            cold.append(launch(cmd, home, "heatmap"))
            warm.append(launch(cmd, home, "heatmap"))
            for mode in busy:
                fresh = Path(tmp) / f"{mode}{i}"
                fresh.mkdir()
                busy[mode].append(launch(cmd, fresh, mode))
            print(f"  {name} run {i + 1}/{repeat} done", file=sys.stderr, flush=True)
    lines.append(row(f"{name}: cold (fresh home)", cold))
    lines.append(row(f"{name}: warm (second start)", warm))
    lines.append(row(f"{name}: quit while loading the model", busy["loading"]))
    lines.append(row(f"{name}: quit while analysing", busy["analysing"]))
    return lines


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("frozen", nargs="?", help="the frozen executable (default: dist/insight-desktop/insight-desktop "
                                             "if it exists)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each kind; the table shows medians")
    args = p.parse_args(argv)
    python = ROOT / ".venv" / "bin" / "python"
    app_args = ["--model", str(MODEL), str(SAMPLE)]
    variants = [("source", [str(python), "-m", "insight_desktop", *app_args],
                 [ROOT / ".venv" / "lib", ROOT / "insight_desktop", ROOT / "resources"])]
    frozen = Path(args.frozen or ROOT / "dist" / "insight-desktop" / "insight-desktop").resolve()
    if frozen.is_file():
        variants.append(("frozen", [str(frozen), *app_args], [frozen.parent]))
    elif args.frozen:
        raise SystemExit(f"no frozen build at {frozen}")
    lines = []
    for name, cmd, folders in variants:
        lines += measure(name, cmd, folders, max(1, args.repeat))
    load = os.getloadavg()[0]
    print(f"Insight Desktop start-up — demo model, {SAMPLE.name}, offscreen, {os.cpu_count()} CPUs "
          f"(load average {load:.1f} at the end)")
    print(f"{'run':<40}{'window':>12}{'heatmap':>12}{'quit':>12}{'heatmap/window':>16}{'CPU':>11}")
    print("\n".join(lines))
    print("targets: window ≤ 1.5 s, first heatmap ≤ 3 s (two cores), quit ≤ 1 s")


if __name__ == "__main__":
    main(sys.argv[1:])
