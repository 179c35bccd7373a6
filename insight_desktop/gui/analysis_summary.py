"""The one-line summary of an analysis in the status bar, and the faithfulness in words.

FVU (the fraction of the feature variance the concepts leave unexplained) is unbounded above:
above 1 the reconstruction from the concepts is further from the features than their mean is.
Shown as "explains 1 − FVU" it would read as a negative percentage, so that case is said in words.
"""

from __future__ import annotations

import math

FVU_TIP = ("How faithful the concepts are on this image. FVU, the fraction of variance unexplained, "
           "is Σ‖x − x̂‖² / Σ‖x − x̄‖² over the image's patches: the error of rebuilding each patch's features "
           "from its concepts, relative to the spread of the features. 0 is perfect; 1 is no better than "
           "the mean feature; above 1 the concepts describe these features worse than the mean does "
           "(often an image unlike the model's training images).")


def faithfulness_text(fvu: float) -> str:
    """"concepts explain 71 % of the feature variance", or words for an FVU the percentage cannot show."""
    if not math.isfinite(fvu):
        return "faithfulness unknown (FVU undefined)"
    if fvu > 1:
        return f"concepts explain none of the feature variance (FVU {fvu:.2f})"
    return f"concepts explain {100 * (1 - max(fvu, 0.0)):.0f} % of the feature variance (FVU {fvu:.2f})"


def analysis_summary(analysis) -> str:
    """Concepts active, patch grid, faithfulness and time, for the status bar."""
    return (f"{len(analysis.concepts)} concepts active · {analysis.grid[1]}×{analysis.grid[0]} patches"
            f" · {faithfulness_text(analysis.faithfulness.fvu)} · {sum(analysis.timings.values()):.2f} s")
