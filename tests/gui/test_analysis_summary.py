"""The status-bar summary of an analysis says the faithfulness in words a user can read."""

from __future__ import annotations

import dataclasses

from insight_desktop.core.paths import resource_path
from insight_desktop.gui.analysis_summary import FVU_TIP, analysis_summary, faithfulness_text
from tests.gui.conftest import wait_for_analysis


def test_an_fvu_above_one_is_not_shown_as_a_negative_percentage(tiny_analysis):
    bad = dataclasses.replace(tiny_analysis,
                              faithfulness=dataclasses.replace(tiny_analysis.faithfulness, fvu=1.3))
    text = analysis_summary(bad)
    assert "−" not in text and "-30" not in text
    assert "concepts explain none of the feature variance (FVU 1.30)" in text


def test_an_ordinary_fvu_reads_as_the_share_explained():
    assert faithfulness_text(0.29) == "concepts explain 71 % of the feature variance (FVU 0.29)"
    assert faithfulness_text(float("nan")).startswith("faithfulness unknown")
    assert "above 1" in FVU_TIP


def test_the_window_status_bar_explains_fvu(qtbot, window, tiny_bundle):
    window.start([resource_path("samples", "chelsea.png")], tiny_bundle)
    wait_for_analysis(qtbot, window)
    assert "(FVU " in window.hover.text() and window.hover.toolTip() == FVU_TIP
