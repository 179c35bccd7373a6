"""The one name source: a NameBook gives the model's names plus the user's edits, and tells
listeners when a shown name changes; analysis values carry concept ids only."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from insight_desktop.core.analysis import Analysis, ConceptActivation
from insight_desktop.core.concepts.names import NameBook
from insight_desktop.core.concepts.naming import ConceptNames, NameCandidate
from insight_desktop.core.tasks.classification import ClassExplanation, ClassificationResult
from insight_desktop.core.tasks.codes import ConceptContribution
from insight_desktop.core.tasks.segmentation import PixelExplanation, Segment, SegmentationResult


def model_names() -> ConceptNames:
    """Four concepts; the bundle itself carries an annotator's name for concept 2."""
    candidates = ((NameCandidate("cat", "object", "everyday", 0.3),), (), (), ())
    return ConceptNames(("cat", "sky", "castle", "road"), candidates, "vanilla", edited=(None, None, "Burg", None))


def test_names_are_the_models_until_the_user_renames_one():
    book = NameBook(model_names())
    assert len(book) == 4 and book.all() == ("cat", "sky", "Burg", "road")
    assert book.name(2) == "Burg" and book.model_name(2) == "Burg"   # the bundle's edit is the model's name
    assert book.candidates(0)[0].term == "cat" and dict(book.edits) == {}
    heard = []
    book.renamed.connect(heard.append)
    book.rename(1, "  open\n sky ")                 # one line, trimmed: names sit in rows and bars
    assert book.name(1) == "open sky" and book.model_name(1) == "sky"
    assert book.names([3, 1]) == ("road", "open sky") and book.all() == ("cat", "open sky", "Burg", "road")
    assert dict(book.edits) == {1: "open sky"} and heard == [1]
    assert list(book.find("SKY")) == [1] and list(book.find("")) == [0, 1, 2, 3]
    book.rename(1, "open sky")                       # no change: nobody is told
    book.rename(3, "road")                           # the model's own name: no edit kept
    assert heard == [1] and dict(book.edits) == {1: "open sky"}
    book.clear(1)
    assert book.name(1) == "sky" and dict(book.edits) == {} and heard == [1, 1]
    book.rename(0, "  ")                             # blank: back to the model's name (it already is)
    assert heard == [1, 1]


def test_edits_can_be_given_back_and_are_a_copy():
    book = NameBook(model_names(), edits={3: "street", 0: "cat"})
    assert book.all() == ("cat", "sky", "Burg", "street") and dict(book.edits) == {3: "street"}
    edits = book.edits
    with pytest.raises(TypeError):
        edits[0] = "x"  # read-only: edits go through rename, so listeners hear of them
    book.rename(3, "lane")
    assert edits[3] == "street" and book.edits[3] == "lane"


def test_unknown_concepts_are_refused():
    book = NameBook(model_names())
    for bad in (-1, 4):
        with pytest.raises(IndexError, match="does not exist"):
            book.name(bad)
        with pytest.raises(IndexError):
            book.rename(bad, "x")


def test_listeners_are_held_weakly():
    book = NameBook(model_names())
    heard = []

    class View:
        def on_renamed(self, concept: int) -> None:
            heard.append(concept)

    view = View()
    book.renamed.connect(view.on_renamed)
    book.rename(0, "kitten")
    del view
    gc.collect()
    book.rename(0, "tabby")  # a closed view is neither kept alive nor called
    assert heard == [0]


@pytest.mark.parametrize("value_type", [ConceptActivation, ConceptContribution, Segment, PixelExplanation,
                                        SegmentationResult, ClassExplanation, ClassificationResult, Analysis])
def test_analysis_values_carry_concept_ids_not_names(value_type):
    fields = {f.name for f in dataclasses.fields(value_type)}
    assert not {"concept_name", "concept_names"} & fields
    if value_type in (ConceptActivation, ConceptContribution):
        assert "name" not in fields and "concept" in fields
