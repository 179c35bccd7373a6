"""A curation's operations: verdicts, renames, notes, bulk operations, their exact inverses, progress, signals."""

from __future__ import annotations

import numpy as np
import pytest

from insight_desktop.core.concepts.names import NameBook
from insight_desktop.core.concepts.naming import ConceptNames
from insight_desktop.core.curation import (
    ACCEPTED,
    FLAGGED,
    REJECTED,
    RENAMED,
    UNREVIEWED,
    ConceptReview,
    Curation,
    CurationError,
    NameSync,
)

IDENTITY = "ab" * 32


def curation(n=10, user="alice") -> Curation:
    return Curation(IDENTITY, n, user=user, model_label="model.zip")


def state(c: Curation) -> dict:
    return dict(c.records)


def test_verdicts_renames_and_notes_are_recorded_with_who_and_when():
    c = curation()
    c.accept([1, 2])
    c.reject([3])
    c.flag([4])
    c.rename(5, "  coffee\n cup ")
    c.note(3, "fires on JPEG artefacts")
    assert [c.status(j) for j in range(7)] == ["unreviewed", ACCEPTED, ACCEPTED, REJECTED, FLAGGED, RENAMED,
                                                "unreviewed"]
    assert c.review(5).name == "coffee cup"  # one line, as the NameBook shows names
    assert c.review(3) == ConceptReview(REJECTED, None, "fires on JPEG artefacts", "alice", c.review(3).at)
    assert c.review(1).by == "alice" and c.review(1).at.endswith("Z") and c.review(1).at[:2] == "20"
    assert c.review(0) is UNREVIEWED and 0 not in c.records
    assert c.names() == {5: "coffee cup"}
    assert c.rejected() == frozenset({3})
    assert str(c.progress()) == "5 of 10 reviewed, 1 renamed, 1 rejected, 1 flagged"
    assert c.progress().reviewed == 5


def test_renamed_means_accepted_under_a_new_name():
    c = curation()
    c.accept([1])
    c.rename(1, "cup")
    assert c.status(1) == RENAMED
    c.rename(1, " ")                       # blank: the model's name again
    assert c.review(1).name is None and c.status(1) == ACCEPTED
    c.reject([2])
    c.rename(2, "maybe a cup")             # a rejected concept keeps its status
    assert c.status(2) == REJECTED and c.review(2).name == "maybe a cup"
    c.set_status([2], ACCEPTED)            # accepting a named concept: renamed
    assert c.status(2) == RENAMED
    c.set_status([2], "unreviewed")
    c.rename(2, None)
    assert 2 not in c.records               # nothing left to record


def test_every_change_is_undone_exactly_by_its_inverse_bulk_ones_too():
    c = curation(2000)
    c.rename(7, "cup")
    c.note(8, "check")
    c.reject([9])
    forward = [state(c)]
    changes = []
    for op in (lambda: c.accept(range(0, 1500)),                     # a subtree's ids: 1500 of them
               lambda: c.reject_rare(np.r_[np.full(1000, 5e-5), np.full(1000, 0.3)]),
               lambda: c.flag([7, 8, 1999]),
               lambda: c.rename(1999, "bowl"),
               lambda: c.note(7, "looks like a mug")):
        changes.append(op())
        forward.append(state(c))
    for i, change in reversed(list(enumerate(changes))):   # undo, one by one: each earlier state exactly
        c.apply(change.inverse())
        assert state(c) == forward[i]
    for i, change in enumerate(changes):                   # redo: the same records, timestamps included
        c.apply(change)
        assert state(c) == forward[i + 1]
    # bulk: what they did
    assert changes[0].text == "Accept 1499 concepts"  # 9: rejected → accepted; 7 stays renamed (accepted already)
    assert c.status(7) == FLAGGED and c.status(1200) == ACCEPTED and c.status(1600) == "unreviewed"
    assert changes[1].text == "Reject 1000 concepts firing on < 0.01 % of patches"
    assert changes[1].concepts == tuple(range(1000))


def test_reject_rare_uses_the_models_frequencies(tmp_path):
    c = curation(6)
    change = c.reject_rare([0.5, 1e-5, 0.0, 9.9e-5, 1e-4, 0.2])
    assert change.concepts == (1, 2, 3) and c.rejected() == frozenset({1, 2, 3})
    assert c.reject_rare([0.5, 1e-5, 0.0, 9.9e-5, 1e-4, 0.2]).after == {}  # nothing left to do
    with pytest.raises(CurationError, match="3 frequencies given for 6 concepts"):
        c.plan_reject_rare([0.1, 0.2, 0.3])


def test_reject_rare_on_a_real_models_relations(tmp_path):
    from insight_desktop.core.concepts.bundle import ConceptModel
    from tests.core.bundle_kit import tiny_members, write_zip

    model = ConceptModel.load(write_zip(tmp_path / "m.zip", tiny_members()))
    frequency = model.relations.frequency   # share of patches each concept fires on
    model.close()
    c = curation(len(frequency))
    below = float(np.median(frequency))
    change = c.reject_rare(frequency, below=below)
    assert change.concepts == tuple(np.flatnonzero(frequency < below)) and 0 < len(change.concepts) < len(frequency)
    c.apply(change.inverse())
    assert c.records == {}


def test_planning_changes_nothing_and_unchanged_concepts_are_left_out():
    c = curation()
    c.accept([1])
    plan = c.plan_status([1, 2, 2, 3], ACCEPTED)
    assert plan.concepts == (2, 3) and plan.text == "Accept 2 concepts"
    assert c.status(2) == "unreviewed"
    assert not c.plan_status([1], ACCEPTED)


def test_the_signal_says_which_concepts_changed():
    c = curation()
    seen = []
    c.changed.connect(seen.append)
    change = c.accept([3, 1, 2])
    c.accept([1])                 # no change: no signal
    c.apply(change.inverse())
    assert seen == [(1, 2, 3), (1, 2, 3)]


def test_bad_input_is_refused_with_the_projects_error():
    c = curation(4)
    with pytest.raises(CurationError, match="concept 4 does not exist"):
        c.accept([4])
    with pytest.raises(CurationError, match="unknown status 'maybe'"):
        c.set_status([1], "maybe")
    with pytest.raises(CurationError, match="at most 10,000 characters"):
        c.note(1, "x" * 10_001)
    c.rename(1, "y" * 500)
    assert len(c.review(1).name) == 200 and c.review(1).name.endswith("…")  # as the NameBook shortens
    assert isinstance(CurationError("x"), ValueError)


def names_of(n):
    return ConceptNames(names=tuple(f"word{i}" for i in range(n)), candidates=((),) * n, method="vanilla")


def test_a_rename_in_the_curation_or_the_name_book_shows_in_both_at_once():
    c = curation(5)
    c.rename(1, "cup")
    book = NameBook(names_of(5), edits={3: "from a session"})
    shown = []
    book.renamed.connect(shown.append)
    sync = NameSync(c, book)
    assert book.name(1) == "cup" and book.name(3) == "from a session"
    assert c.review(3).name == "from a session" and c.status(3) == RENAMED  # adopted, not lost
    assert sync.adopted is not None and sync.adopted.concepts == (3,)
    c.rename(2, "saucer")                 # curation → book
    assert book.name(2) == "saucer" and shown[-1] == 2
    book.rename(4, "spoon")               # book (the tree's editor) → curation
    assert c.review(4).name == "spoon" and c.status(4) == RENAMED
    change = c.rename(2, "plate")
    c.apply(change.inverse())             # undo shows at once too
    assert book.name(2) == "saucer"
    c.apply(c.plan_status([2], "unreviewed"))
    c.rename(2, None)
    assert book.name(2) == "word2" and 2 not in book.edits
    sync.close()
    c.rename(0, "after close")
    assert book.name(0) == "word0"
