"""Start-up time of ``--self-test``: the frozen build against the source tree, cold and warm.

    .venv/bin/python benchmarks/bench_startup.py [dist/insight-desktop/insight-desktop]

Each variant runs twice in a clean environment (``env -i``, a fresh HOME shared by both runs):
first *cold* (the files of the app, or of .venv and the source tree, are dropped from the page
cache beforehand with posix_fadvise, so they are read from disk as on a first start after boot),
then *warm*. The self-test's own line says when the window was up and how long the whole check
(load the demo model, analyse a photo) took; the wall time adds interpreter and import start-up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def run(cmd: list[str], home: Path) -> tuple[float, str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    t0 = time.monotonic()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} --self-test failed ({out.returncode}):\n{out.stderr[-3000:]}")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("self-test passed"))
    return wall, line


def main(argv: list[str]) -> None:
    frozen = Path(argv[0] if argv else ROOT / "dist" / "insight-desktop" / "insight-desktop").resolve()
    python = ROOT / ".venv" / "bin" / "python"
    variants = [
        ("source", [str(python), "-m", "insight_desktop", "--self-test"],
         [ROOT / ".venv" / "lib", ROOT / "insight_desktop", ROOT / "resources"]),
        ("frozen", [str(frozen), "--self-test"], [frozen.parent]),
    ]
    with tempfile.TemporaryDirectory(prefix="insight-startup-") as tmp:
        for name, cmd, folders in variants:
            home = Path(tmp) / name
            home.mkdir()
            for state in ("cold", "warm"):
                if state == "cold":
                    evict(*folders)
                wall, line = run(cmd, home)
                window = re.search(r"window in ([\d.]+) s", line).group(1)
                total = re.search(r"([\d.]+) s in all", line).group(1)
                print(f"{name:6} {state}: {wall:6.1f} s wall; window after {window} s, self-test {total} s "
                      f"(from the self-test's first line of code)", flush=True)
            written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
            print(f"{name:6} wrote under HOME: {written or 'nothing'}")


if __name__ == "__main__":
    main(sys.argv[1:])
