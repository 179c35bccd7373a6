"""Text → concept search on a planted model: concept 7's embedding lies along the text vector of
"space shuttle", concept 3 has "space shuttle" among its candidate names, concept 730 exists;
a fake text encoder gives every word a fixed direction (plus a small per-template wobble)."""

from __future__ import annotations

import types
import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from insight_desktop.core.concepts.names import NameBook
from insight_desktop.core.concepts.naming import TEMPLATE_FAMILIES, ConceptNames, NameCandidate
from insight_desktop.core.concepts.search import (
    ConceptSearcher,
    MatchKind,
    NameIndex,
    QueryEncoder,
    combine,
    concept_embeddings,
    match_text,
    parse_concept_id,
    search_concepts,
    text_threshold,
)

M, D = 1024, 64
NOUN = TEMPLATE_FAMILIES["noun"]


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def direction(word: str) -> np.ndarray:
    return unit(np.random.default_rng(zlib.crc32(word.encode())).standard_normal(D))


class FakeEncoder:
    """Deterministic: a text made from a noun template is its word's direction plus a small
    text-seeded wobble, at a text-dependent length (so per-template normalisation matters)."""

    id = "fake-backbone"
    feature_dim = D

    def __init__(self):
        self.texts: list[str] = []

    @staticmethod
    def word_of(text: str) -> str:
        for t in sorted(NOUN, key=len, reverse=True):
            pre, post = t.split("{}")
            if text.startswith(pre) and text.endswith(post) and len(text) > len(pre) + len(post):
                return text[len(pre):len(text) - len(post)]
        return text

    def encode_text(self, texts):
        self.texts += texts
        out = []
        for text in texts:
            seed = zlib.crc32(text.encode())
            wobble = np.random.default_rng(seed).standard_normal(D) * 0.02
            out.append((1 + seed % 5) * unit(direction(self.word_of(text)) + wobble))
        return np.stack(out).astype(np.float32)


def planted_names(score: float = 0.5) -> ConceptNames:
    names = [f"c{i}" for i in range(M)]
    names[3], names[5], names[9] = "rocket", "space", "Rocket launcher"
    cands = [(NameCandidate(names[i], "noun", "v", score),) for i in range(M)]
    cands[3] = (NameCandidate("rocket", "noun", "v", score), NameCandidate("Space Shuttle", "noun", "v", score - .1))
    cands[11] = (NameCandidate("c11", "noun", "v", score), NameCandidate("shuttle bus", "noun", "v", score - .1))
    return ConceptNames(tuple(names), tuple(cands), "hierarchy")


def planted_embeddings() -> np.ndarray:
    rng = np.random.default_rng(1)
    E = unit(rng.standard_normal((M, D)))
    E[7] = unit(direction("space shuttle") + 0.1 * unit(rng.standard_normal(D)))
    return E.astype(np.float32)


@pytest.fixture
def encoder(tmp_path):
    return QueryEncoder(FakeEncoder(), cache_dir=tmp_path / "q")


def test_ids():
    assert parse_concept_id("730") == 730 and parse_concept_id(" #7 ") == 7 and parse_concept_id("# 12") == 12
    assert parse_concept_id("7a") is None and parse_concept_id("c7") is None and parse_concept_id("") is None
    names = planted_names()
    for query, concept in (("730", 730), ("#7", 7)):
        result = search_concepts(query, names=names, embeddings=planted_embeddings(), encode_text=FakeEncoder())
        assert result.hits[0].concept == concept and result.hits[0].kind is MatchKind.ID and result.hits[0].why == "id"
    missing = search_concepts("#5000", names=names)
    assert missing.hits == () and missing.reason == "there is no concept #5000: this model's concepts are #0–#1023"


def test_candidate_name_and_text_similarity(encoder):
    result = search_concepts("Space  shuttle", names=planted_names(), embeddings=planted_embeddings(),
                             encode_text=encoder)
    assert result.text_searched and result.reason == ""
    first, second = result.hits[:2]
    assert (first.concept, first.kind, first.why) == (3, MatchKind.CANDIDATE, "candidate name: Space Shuttle")
    assert second.concept == 7 and second.kind is MatchKind.TEXT
    assert second.similarity == pytest.approx(0.99, abs=0.01)
    assert second.why == f"text similarity {second.similarity:.2f}"
    # the rest: "space" names do not contain the query; no random concept reaches the threshold 0.5
    assert result.concepts == (3, 7)


def test_name_tiers_are_ordered_and_case_insensitive():
    index = NameIndex(planted_names())
    hits = index.match("ROCKET")
    assert [(h.concept, h.kind) for h in hits] == [(3, MatchKind.NAME), (9, MatchKind.PREFIX)]
    assert hits[1].why == "name starts with 'ROCKET'"
    hits = index.match("shuttle")
    assert [(h.concept, h.kind, h.why) for h in hits] == [
        (11, MatchKind.PREFIX, "candidate name: shuttle bus"),
        (3, MatchKind.SUBSTRING, "candidate name: Space Shuttle")]
    assert [h.concept for h in index.match("c73")] == [73, *range(730, 740)]
    assert index.match("c730")[0].kind is MatchKind.NAME


def test_a_name_book_searches_the_users_names():
    book = NameBook(planted_names(), {42: "Launch pad"})
    hits = search_concepts("launch", names=book).hits
    assert [(h.concept, h.kind) for h in hits] == [(42, MatchKind.PREFIX), (9, MatchKind.SUBSTRING)]
    renamed = search_concepts("c42", names=book).hits  # renamed: found by the model's name only
    assert [(h.concept, h.why) for h in renamed[:2]] == [(42, "candidate name: c42"), (420, "name starts with 'c42'")]
    assert search_concepts("space shuttle", names=book).concepts == (3,)  # the model's candidates still count


def test_empty_results_say_why(encoder):
    names, E = planted_names(), planted_embeddings()
    no_tower = search_concepts("xyzzy", names=names)
    assert no_tower.hits == () and not no_tower.text_searched
    assert no_tower.reason == "no concept name contains 'xyzzy' and the text tower is not loaded"
    result = search_concepts("xyzzy", names=names, embeddings=E, encode_text=encoder)
    best = float(np.max(E @ encoder("xyzzy")))
    assert result.hits == () and result.text_searched and 0 < best < 0.5
    assert result.reason == ("no concept name contains 'xyzzy' and no concept is similar enough to it "
                             f"(best {best:.2f} < 0.50)")
    pending = combine("xyzzy", [], None, pending=True)
    assert pending.reason == "no concept name contains 'xyzzy'; comparing it with the concepts as text…"

    def broken(texts):
        raise RuntimeError("no text tower in this backbone")

    failed = search_concepts("xyzzy", names=names, embeddings=E, encode_text=broken)
    assert failed.reason == ("no concept name contains 'xyzzy' and the text tower could not embed it "
                             "(RuntimeError: no text tower in this backbone)")
    assert search_concepts("  ", names=names).hits == () and search_concepts("", names=names).reason == ""


def test_threshold_is_the_lower_quartile_of_name_scores():
    scores = np.linspace(0.1, 0.5, M)
    cands = tuple((NameCandidate(f"c{i}", "noun", "v", float(s)),) for i, s in enumerate(scores))
    names = ConceptNames(tuple(f"c{i}" for i in range(M)), cands, "hierarchy")
    assert text_threshold(names) == pytest.approx(np.quantile(scores, 0.25))
    assert text_threshold(ConceptNames(("a",), ((),), "vanilla")) == 0.2  # no scores: the default
    low = ConceptNames(("a",), ((NameCandidate("a", "noun", "v", 0.01),),), "vanilla")
    assert text_threshold(low) == 0.05
    # a lower threshold lets more text hits through, best first, at most `limit`
    E = planted_embeddings()
    enc = QueryEncoder(FakeEncoder(), cache_dir=False)
    loose = match_text("space shuttle", E, enc, threshold=-1.0, limit=5)
    sims = [h.similarity for h in loose.hits]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True) and loose.hits[0].concept == 7


def test_query_embeddings_are_cached_in_memory_and_on_disk(tmp_path):
    fake = FakeEncoder()
    enc = QueryEncoder(fake, cache_dir=tmp_path / "q")
    v = enc("space shuttle")
    assert fake.texts == [t.format("space shuttle") for t in NOUN]  # the noun templates, once each
    manual = unit(unit(fake.encode_text([t.format("space shuttle") for t in NOUN])).mean(axis=0))
    assert np.allclose(v, manual, atol=1e-6) and not v.flags.writeable
    assert enc(" Space   shuttle ") is v and enc.encoded == 1            # memory; case and spaces normalised
    files = list((tmp_path / "q").glob("*.npy"))
    assert len(files) == 1
    fresh_fake = FakeEncoder()
    again = QueryEncoder(fresh_fake, cache_dir=tmp_path / "q")("space shuttle")  # a new session, offline
    assert fresh_fake.texts == [] and np.array_equal(again, v)
    other = QueryEncoder(fresh_fake, backbone_id="another-backbone", cache_dir=tmp_path / "q")
    other("space shuttle")  # the cache is keyed by backbone
    assert len(fresh_fake.texts) == len(NOUN)
    files[0].write_bytes(b"damaged")
    damaged_fake = FakeEncoder()
    assert np.allclose(QueryEncoder(damaged_fake, cache_dir=tmp_path / "q")("space shuttle"), v)
    assert len(damaged_fake.texts) == len(NOUN)  # a damaged file is encoded again
    plain = QueryEncoder(FakeEncoder().encode_text, cache_dir=tmp_path / "plain")  # no id: memory only
    plain("rocket")
    assert not (tmp_path / "plain").exists()


def test_memory_cache_is_bounded():
    fake = FakeEncoder()
    enc = QueryEncoder(fake, cache_dir=False, memory_entries=2)
    for q in ("a", "b", "a", "c", "a", "b"):
        enc(q)
    assert enc.encoded == 4  # b was evicted by c (a was used more recently)


def test_searcher_on_a_model_uses_its_hierarchy_aware_embeddings(tmp_path):
    E = planted_embeddings()
    m = E.shape[0]
    mu = sp.diags(np.ones(m)).tocsr()
    model = types.SimpleNamespace(
        sae=types.SimpleNamespace(W_dec=E * 3.0, b_dec=np.zeros(D, np.float32)),
        relations=types.SimpleNamespace(d_hat=sp.identity(m, format="csr"), mu=mu, tau=0.75),
        names=planted_names())
    emb = concept_embeddings(model)
    assert np.allclose(emb, E, atol=1e-5) and not emb.flags.writeable
    searcher = ConceptSearcher(model, FakeEncoder(), cache_dir=tmp_path / "q")
    assert searcher.embeddings is searcher.embeddings  # once per model
    assert searcher.threshold == pytest.approx(0.5)
    assert searcher.search("space shuttle").concepts == (3, 7)
    assert searcher.search("#730").concepts == (730,)
    text = searcher.text("space shuttle")
    assert [h.concept for h in text.hits] == [7] and text.threshold == pytest.approx(0.5)
    assert ConceptSearcher(model).text("space shuttle").reason == "the text tower is not loaded"
