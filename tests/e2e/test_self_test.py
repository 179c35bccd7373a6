"""`insight-desktop --self-test` on the source tree: the app, the demo model and a sample photo, offscreen."""

from __future__ import annotations

import os
import subprocess
import sys


def test_self_test_passes_in_a_clean_environment(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "INSIGHT_CACHE_DIR":
           os.environ.get("INSIGHT_CACHE_DIR", str(tmp_path / "cache"))}
    out = subprocess.run([sys.executable, "-m", "insight_desktop", "--self-test"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "self-test passed" in out.stdout and "demo-concepts.zip" in out.stdout
    assert not (tmp_path / ".config" / "Insight Desktop").exists()  # the user's settings were not touched
