"""The bundled demo concept model (real offline weights): it loads, names concepts, explains."""

from __future__ import annotations

import re

import pytest

from insight_desktop.core.paths import demo_model_path


@pytest.mark.skipif(demo_model_path() is None, reason="resources/models/demo-concepts.zip not built")
def test_make_run_shows_named_concepts_of_a_real_photo(capsys):
    from insight_desktop.__main__ import main

    assert main(["demo", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "chelsea.png: 451×300 px" in out
    rows = re.findall(r"^ +(\d+)  (\S.{0,19}?) +(\d) +([0-9.]+) +(\d+)  ", out, flags=re.M)
    assert len(rows) >= 5, out  # named concepts with levels and activations
    fvu = float(re.search(r"FVU ([0-9.]+)", out).group(1))
    assert fvu < 0.5, out
    first_class = re.search(r"zero-shot classification through concepts:\n +(.+?) +\d", out).group(1)
    assert first_class == "cat", out


def test_demo_bundle_is_small_and_complete():
    from insight_desktop.core.concepts.bundle import ConceptModel

    path = demo_model_path()
    if path is None:
        pytest.skip("demo model not built")
    assert path.stat().st_size <= 25 * 2**20
    model = ConceptModel.load(path)
    assert model.manifest.backbone["spec"]["name"] == "demo-effnet-minilm"
    assert model.manifest.thumbnails["count"] > 100
    assert len(set(model.names.names)) > 100  # names are varied, not one word everywhere
