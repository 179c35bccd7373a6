"""Quitting while the app works: during the model load, during the analysis, and after it.

The real app in a child process (offscreen, a fresh HOME, the demo model) closes its window by
itself at the chosen moment (``INSIGHT_STARTUP_QUIT``, :mod:`insight_desktop.gui.startup_trace`).
Before, quitting during a load or an analysis aborted the process (SIGABRT: "QThread: Destroyed
while thread … is still running") or kept it alive for seconds; now it must exit 0, with the
window's settings saved, whatever the worker was doing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from insight_desktop.core.paths import demo_model_path, resource_path

pytestmark = pytest.mark.skipif(demo_model_path() is None, reason="the demo model is not built")


def run_app(tmp_path: Path, quit_when: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    trace = tmp_path / "trace.txt"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen",
           "HF_HUB_OFFLINE": "1", "INSIGHT_CACHE_DIR": str(tmp_path / "cache"),
           "INSIGHT_STARTUP_TRACE": str(trace), "INSIGHT_STARTUP_QUIT": quit_when}
    cmd = [sys.executable, "-m", "insight_desktop", "--model", str(demo_model_path()),
           str(resource_path("samples", "chelsea.png"))]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    events = [line.split()[0] for line in trace.read_text().splitlines()] if trace.exists() else []
    return out, events


@pytest.mark.parametrize("quit_when", ["loading", "analysing", "heatmap"])
def test_quitting_at_any_moment_exits_cleanly(tmp_path, quit_when):
    out, events = run_app(tmp_path, quit_when)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "QThread: Destroyed" not in out.stderr
    assert events[0] == "window" and events[-2:] == ["closing", "closed"]
    assert ("heatmap" in events) == (quit_when == "heatmap")  # it quit where it was asked to
    settings = list((tmp_path / ".config").rglob("*.conf")) + list((tmp_path / ".config").rglob("*.ini"))
    assert settings, "the window's settings were not saved"
