"""Fuzzing sessions: random JSON in every field, mutated bytes of a real session file, deep nesting.

The property: :func:`load_session` either returns a Session that applies to a Document, or raises
:class:`SessionError` — never another exception type. ``make test`` runs a few derandomised
examples per strategy; ``make fuzz`` (``INSIGHT_FUZZ_EXAMPLES=N``) runs N per strategy and prints
cases run, outcomes, unexpected types and the slowest case (reported, not asserted).
"""

from __future__ import annotations

import collections
import json
import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from insight_desktop.gui.document import Document
from insight_desktop.gui.session import Session, SessionError, apply_session_to_document, load_session
from tests.fuzzing import fuzz_settings, print_report

pytestmark = pytest.mark.fuzz

SETTINGS = fuzz_settings(25, HealthCheck.function_scoped_fixture)
STATS = {"cases": 0, "outcomes": collections.Counter(), "unexpected": collections.Counter(), "slowest": 0.0}

FIELDS = ("images", "index", "model_path", "device", "classes", "background", "concept", "segment", "overlay",
          "view", "folder")
OVERLAY = ("show_heatmap", "show_segmentation", "show_residual", "show_opaque", "colormap", "heatmap_opacity",
           "threshold", "mask_opacity", "hidden_labels")
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                           max_leaves=25)


def _valid(tmp_path) -> dict:
    (tmp_path / "a.png").write_bytes(b"")
    return {"format": "insight-desktop-session", "version": 1, "images": ["a.png", "gone.png"], "index": 1,
            "model_path": "m.zip", "device": "cpu", "classes": ["cat", "sky"], "background": True, "concept": 3,
            "segment": 1, "overlay": {"heatmap_opacity": 0.5, "colormap": "magma", "hidden_labels": [1, 2]},
            "view": {"rect": [0, 0, 10, 10]}, "folder": "."}


def _check(path) -> None:
    STATS["cases"] += 1
    start = time.perf_counter()
    try:
        session = load_session(path)
        assert isinstance(session, Session)
        apply_session_to_document(session, Document())
        STATS["outcomes"]["loaded"] += 1
    except SessionError:
        STATS["outcomes"]["SessionError"] += 1
    except Exception as exc:  # noqa: BLE001 — the property under test
        STATS["unexpected"][type(exc).__name__] += 1
        raise
    finally:
        STATS["slowest"] = max(STATS["slowest"], time.perf_counter() - start)


@pytest.fixture(scope="module", autouse=True)
def fuzz_report(request):
    yield
    print_report(request, f"session fuzz: {STATS['cases']} cases, outcomes {dict(STATS['outcomes'])}, unexpected "
                          f"{dict(STATS['unexpected'])}, slowest {STATS['slowest']:.3f} s")


@SETTINGS
@given(field=st.sampled_from(FIELDS + tuple(f"overlay.{k}" for k in OVERLAY)), value=json_values)
def test_any_json_in_any_field(tmp_path, field, value):
    data = _valid(tmp_path)
    if field.startswith("overlay."):
        data["overlay"][field.split(".", 1)[1]] = value
    else:
        data[field] = value
    path = tmp_path / "s.insight-session"
    path.write_text(json.dumps(data), encoding="utf-8")
    _check(path)


@SETTINGS
@given(cuts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6), end=st.integers(0, 10**6))
def test_mutated_bytes(tmp_path, cuts, end):
    raw = bytearray(json.dumps(_valid(tmp_path)).encode())
    for pos, byte in cuts:
        raw[pos % len(raw)] = byte
    path = tmp_path / "s.insight-session"
    path.write_bytes(bytes(raw[: max(1, end % (len(raw) + 1))]))
    _check(path)


@SETTINGS
@given(depth=st.integers(1, 200_000), opener=st.sampled_from(["[", '{"a":']), field=st.sampled_from(FIELDS))
def test_deep_nesting(tmp_path, depth, opener, field):
    closer = "]" if opener == "[" else "}"
    data = json.dumps(_valid(tmp_path))[:-1] + f', "{field}": ' + opener * depth + "1" + closer * depth + "}"
    path = tmp_path / "s.insight-session"
    path.write_text(data, encoding="utf-8")
    _check(path)
