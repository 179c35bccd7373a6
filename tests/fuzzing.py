"""What the fuzz test files share (``make fuzz``): how many examples, the hypothesis settings and
the report printed at the end of each file.

``make test`` runs a few fixed (derandomised) examples per strategy; ``INSIGHT_FUZZ_EXAMPLES=N``
(``make fuzz``) runs N random ones and prints each file's report, also appended to the file named
by ``INSIGHT_FUZZ_REPORT`` when set.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

#: random examples per strategy (0: the few fixed ones of ``make test``)
EXAMPLES = int(os.environ.get("INSIGHT_FUZZ_EXAMPLES", "0") or 0)


def fuzz_settings(fixed_examples: int, *health_checks: HealthCheck) -> settings:
    """Hypothesis settings: ``EXAMPLES`` random cases, else ``fixed_examples`` derandomised ones;
    no deadline (the test measures time itself) and no example database."""
    return settings(max_examples=EXAMPLES or fixed_examples, deadline=None, derandomize=not EXAMPLES,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *health_checks])


def print_report(request, report: str) -> None:
    """Show ``report`` past pytest's output capture, and append it to ``INSIGHT_FUZZ_REPORT``."""
    if not EXAMPLES:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + report, flush=True)
    if os.environ.get("INSIGHT_FUZZ_REPORT"):
        with Path(os.environ["INSIGHT_FUZZ_REPORT"]).open("a") as fh:
            fh.write(report + "\n")
