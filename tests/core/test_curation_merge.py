"""Merging another annotator's curation (planted conflicts), and agreement between two (Cohen's κ)."""

from __future__ import annotations

import math

import pytest

from insight_desktop.core.curation import (
    ACCEPTED,
    FLAGGED,
    REJECTED,
    Curation,
    CurationError,
    CurationModelError,
    agreement,
    merge,
    plan_merge,
)

IDENTITY = "12" * 32


def pair(n=12):
    return Curation(IDENTITY, n, user="alice"), Curation(IDENTITY, n, user="bob")


def planted():
    mine, theirs = pair()
    mine.accept([0, 1])
    mine.rename(2, "cup")
    mine.reject([3])
    mine.note(4, "mine only")
    theirs.accept([0])              # same verdict: nothing to do
    theirs.reject([1])              # conflict: accepted vs rejected
    theirs.rename(2, "mug")         # conflict: two names
    theirs.reject([3])
    theirs.note(3, "JPEG artefacts")  # conflict: same status, a note only they wrote
    theirs.flag([5])                # only theirs: merged
    theirs.rename(6, "saucer")      # only theirs: merged
    theirs.note(7, "look again")    # only theirs: merged
    return mine, theirs


def test_non_conflicting_changes_merge_and_planted_conflicts_are_listed():
    mine, theirs = planted()
    before = dict(mine.records)
    plan = plan_merge(mine, theirs)
    assert dict(mine.records) == before                      # planning changes nothing
    assert plan.change.concepts == (5, 6, 7) and plan.change.text == "Merge 3 concepts from bob"
    assert [(c.concept, c.mine.verdict(), c.theirs.verdict()) for c in plan.conflicts] == [
        (1, (ACCEPTED, None, ""), (REJECTED, None, "")),
        (2, ("renamed", "cup", ""), ("renamed", "mug", "")),
        (3, (REJECTED, None, ""), (REJECTED, None, "JPEG artefacts"))]
    merged = merge(mine, theirs)
    assert merged.conflicts == plan.conflicts
    assert mine.status(5) == FLAGGED and mine.review(6).name == "saucer" and mine.review(7).note == "look again"
    assert mine.review(6).by == "bob"                        # whose change it was is kept
    assert mine.review(0).by == "alice" and mine.status(1) == ACCEPTED and mine.review(2).name == "cup"
    assert mine.review(4).note == "mine only"
    # choosing per conflict; undo restores the state before
    after_merge = dict(mine.records)
    resolution = merged.resolution({1: "theirs", 3: "theirs"})
    mine.apply(resolution)
    assert mine.status(1) == REJECTED and mine.review(3).note == "JPEG artefacts" and mine.review(2).name == "cup"
    mine.apply(resolution.inverse())
    assert dict(mine.records) == after_merge
    mine.apply(merged.change.inverse())
    assert dict(mine.records) == before


def test_prefer_settles_every_conflict_one_way():
    mine, theirs = planted()
    merge(mine, theirs, prefer="theirs")
    for j in (1, 2, 3, 5, 6, 7):
        assert mine.review(j) == theirs.review(j)
    assert mine.review(4).note == "mine only"
    mine, theirs = planted()
    snapshot = {j: mine.review(j) for j in (1, 2, 3)}
    merge(mine, theirs, prefer="mine")
    assert {j: mine.review(j) for j in (1, 2, 3)} == snapshot
    with pytest.raises(CurationError, match="choose 'mine' or 'theirs'"):
        plan_merge(mine, theirs).resolution({1: "both"})  # type: ignore[dict-item]


def test_curations_of_different_models_do_not_merge():
    a = Curation(IDENTITY, 12, user="alice")
    with pytest.raises(CurationModelError, match="different concept models"):
        plan_merge(a, Curation("34" * 32, 12, user="bob"))
    with pytest.raises(CurationModelError):
        agreement(a, Curation(IDENTITY, 13, user="bob"))


VERDICTS_A = [ACCEPTED] * 5 + [REJECTED] * 3 + [FLAGGED] * 2
VERDICTS_B = [ACCEPTED] * 4 + [REJECTED] * 3 + [ACCEPTED, FLAGGED, REJECTED]


def annotated(n=14):
    a, b = pair(n)
    for j, (va, vb) in enumerate(zip(VERDICTS_A, VERDICTS_B)):
        a.set_status([j], va)
        b.set_status([j], vb)
    a.rename(0, "cup")          # renamed counts as accepted: still agrees with b's "accepted"
    a.accept([10])              # reviewed by one only: left out
    b.reject([11])
    b.note(12, "a note is no verdict")
    return a, b


def test_kappa_matches_a_hand_computed_example():
    # A\B       acc rej flag     p_o = 7/10; marginals A (.5, .3, .2), B (.5, .4, .1)
    # accepted   4   1   0       p_e = .25 + .12 + .02 = .39
    # rejected   1   2   0       κ = (.7 − .39) / (1 − .39) = .31 / .61
    # flagged    0   1   1
    a, b = annotated()
    result = agreement(a, b)
    assert result.matrix == ((4, 1, 0), (1, 2, 0), (0, 1, 1))
    assert result.n_both == 10 and result.n_only_one == 2
    assert result.percent == pytest.approx(70.0)
    assert result.kappa == pytest.approx(0.31 / 0.61, abs=1e-12)
    assert str(result).startswith("agreement on 10 concepts reviewed by both: 70.0 %, Cohen's κ 0.508")
    assert agreement(a, a).kappa == pytest.approx(1.0)


def test_kappa_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    import random

    rng = random.Random(7)
    a, b = pair(300)
    for j in range(300):
        va = rng.choice([ACCEPTED, REJECTED, FLAGGED, "unreviewed"])
        vb = va if rng.random() < 0.6 else rng.choice([ACCEPTED, REJECTED, FLAGGED, "unreviewed"])
        a.set_status([j], va)
        b.set_status([j], vb)
    both = [j for j in range(300) if a.review(j).reviewed and b.review(j).reviewed]
    expected = sklearn_metrics.cohen_kappa_score([a.status(j) for j in both], [b.status(j) for j in both])
    result = agreement(a, b)
    assert result.n_both == len(both)
    assert result.kappa == pytest.approx(expected, abs=1e-12)


def test_agreement_without_common_reviews_is_undefined_not_an_error():
    a, b = pair()
    a.accept([1])
    b.accept([2])
    result = agreement(a, b)
    assert result.n_both == 0 and result.n_only_one == 2 and math.isnan(result.kappa) and math.isnan(result.percent)
    assert "no concept reviewed by both" in str(result)
    a.accept([2])
    assert math.isnan(agreement(a, b).kappa) and agreement(a, b).percent == 100.0  # one verdict only: κ undefined
