"""`insight demo --tiny`: the core end to end on a tiny model it builds, then fast from the cache."""

from __future__ import annotations

import re

from insight_desktop.__main__ import main


def test_demo_runs_end_to_end_and_reuses_its_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSIGHT_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["demo", "--tiny", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "chelsea.png: 451×300 px → 28×19 patches" in out
    fvu = float(re.search(r"FVU ([0-9.]+)", out).group(1))
    assert fvu < 0.5, out  # the small dictionary explains most of the photo's features
    rows = re.findall(r"^ +(\d+) +([12]) +([0-9.]+) +(\d+)$", out, flags=re.M)
    assert rows, out  # at least one concept fires, with its level
    cached = list((tmp_path / "cache").rglob("sae.safetensors"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert main(["demo", "--tiny", "--device", "cpu", "-q"]) == 0  # second run: loads, does not retrain
    assert cached[0].stat().st_mtime_ns == mtime
    assert capsys.readouterr().out.splitlines()[4] == out.splitlines()[4]  # same codes line
