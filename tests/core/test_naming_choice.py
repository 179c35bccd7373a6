"""Distinct concept names and the hubness (CSLS) correction, on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from insight_desktop.core.concepts.name_choice import distinct_names, word_hubness
from insight_desktop.core.concepts.naming import (
    FAMILIES,
    ConceptNames,
    Vocabulary,
    name_concepts,
)


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# --- distinct names ---------------------------------------------------------------------------

def test_unique_names_are_kept_as_they_are():
    cands = [[("cat", 0.9)], [("dog", 0.8)], [("boat", 0.7)]]
    assert distinct_names(cands) == ["cat", "dog", "boat"]


def test_duplicates_take_a_close_unused_candidate_or_a_number():
    cands = [
        [("cat", 0.70), ("kitten", 0.69)],                 # second-best "cat": close alternative
        [("cat", 0.90), ("tabby", 0.89)],                  # best "cat": keeps it
        [("cat", 0.60), ("dog", 0.595), ("lynx", 0.50)],   # "dog" is another concept's name; lynx too far
        [("dog", 0.80)],
        [("Cat", 0.50)],                                   # case-insensitive duplicate, no alternative
    ]
    names = distinct_names(cands, margin=0.03)
    assert names == ["kitten", "cat", "cat (2)", "dog", "Cat (3)"]
    assert len({n.casefold() for n in names}) == len(names)


def test_an_alternative_never_takes_a_name_another_concept_holds_or_was_given():
    cands = [[("cup", 0.9)], [("cup", 0.8), ("mug", 0.79)], [("cup", 0.7), ("mug", 0.69)], [("mug", 0.2)]]
    names = distinct_names(cands)
    # "mug" is concept 3's own best name, so 1 and 2 are numbered instead
    assert names == ["cup", "cup (2)", "cup (3)", "mug"]


def test_numbers_skip_names_that_already_exist():
    cands = [[("cat", 0.9)], [("cat (2)", 0.85)], [("cat", 0.8)]]
    assert distinct_names(cands) == ["cat", "cat (2)", "cat (3)"]


def _vocab_embeddings(words: dict[str, np.ndarray]):
    vocab = Vocabulary("planted", tuple(words))
    emb = np.stack([np.repeat(words[w][None], len(FAMILIES), axis=0) for w in vocab.terms]).astype(np.float32)
    return [(emb, vocab)]


def test_name_concepts_never_returns_two_identical_names():
    rng = np.random.default_rng(0)
    d = 32
    words = {w: unit(rng.standard_normal(d)) for w in ("cat", "kitten", "dog", "boat", "tree")}
    # concepts 0, 1, 2 all point at "cat"; 0 is closest, 1 also near "kitten"
    C = np.stack([words["cat"], unit(words["cat"] + 0.9 * words["kitten"]), unit(words["cat"] + 0.3 * words["tree"]),
                  words["dog"], words["boat"]])
    raw = name_concepts(C, _vocab_embeddings(words), top=3, distinct=False)
    assert raw.names[:3] == ("cat", "cat", "cat")
    named = name_concepts(C, _vocab_embeddings(words), top=3)
    assert named.names[0] == "cat" and named.names[3:] == ("dog", "boat")
    assert len(set(named.names)) == 5
    assert named.names[2] == "cat (2)"          # its runner-up ("tree") scores far below "cat"
    assert named.candidates == raw.candidates   # the ranking itself is unchanged
    back = ConceptNames.from_json(named.to_json())
    assert back.names == named.names


# --- hubness ---------------------------------------------------------------------------------

def _hub_world(m: int = 6, d: int = 24):
    """Concepts c_i = 0.6 h + 0.8 e_i. Each has its own word (0.6 e_i + 0.8 n_i, cosine 0.48 with
    c_i only) and a hub word h close to every concept (cosine 0.6): raw cosine names them all "hub"."""
    eye = np.eye(d)
    h = eye[0]
    C = np.stack([0.6 * h + 0.8 * eye[1 + i] for i in range(m)])
    words = {f"word{i}": 0.6 * eye[1 + i] + 0.8 * eye[1 + m + i] for i in range(m)}
    words["hub"] = h
    return C.astype(np.float32), words


def test_a_hub_word_wins_everywhere_without_the_correction_and_nowhere_with_it():
    C, words = _hub_world()
    plain = name_concepts(C, _vocab_embeddings(words), top=3, distinct=False)
    assert set(plain.names) == {"hub"}
    corrected = name_concepts(C, _vocab_embeddings(words), top=3, distinct=False, hubness_k=3)
    assert corrected.names == tuple(f"word{i}" for i in range(len(C)))
    # corrected score of the own word: 0.48 − mean(0.48, 0, 0) = 0.32
    assert corrected.candidates[0][0].score == pytest.approx(0.32, abs=1e-5)


def test_word_hubness_is_the_mean_of_the_k_nearest_concepts_in_any_chunking():
    rng = np.random.default_rng(3)
    C = unit(rng.standard_normal((37, 16))).astype(np.float32)
    W = unit(rng.standard_normal((11, 16))).astype(np.float32)
    S = C @ W.T
    expected = np.sort(S, axis=0)[-5:].mean(axis=0)
    for chunk in (11, 50, 1 << 20):  # one concept per chunk, a few, all at once
        np.testing.assert_allclose(word_hubness(C, W, 5, chunk), expected, atol=1e-6)
    np.testing.assert_allclose(word_hubness(C, W, 100, 1 << 20), S.mean(axis=0), atol=1e-6)  # k capped at m
