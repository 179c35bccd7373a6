"""Concept naming on planted data: a fake text encoder with known word directions, decoder rows
that point at known words, and a planted parent/child pair whose child row is only a delta."""

from __future__ import annotations

import json
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from insight_desktop.core.concepts.naming import (
    FAMILIES,
    TEMPLATE_FAMILIES,
    ConceptNames,
    NameCandidate,
    NamingCancelled,
    NamingError,
    Vocabulary,
    default_vocabularies,
    embed_vocabulary,
    family_texts,
    hierarchy_concept_embeddings,
    load_vocabulary,
    name_concepts,
    name_model,
    parent_weights,
    vanilla_concept_embeddings,
)
from insight_desktop.core.concepts.vocab import bundled_vocabulary, cache_path
from insight_desktop.core.paths import resources_dir

D = 64
WORDS = ("apple", "tree", "castle", "river", "guitar", "zebra", "candle", "bridge", "violin", "tulip",
         "boat", "sailboat", "wind", "mountain", "spoon", "ladder")


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class PlantedEncoder:
    """Fake text encoder: every word has a fixed unit direction; each template adds a fixed,
    text-seeded perturbation and a text-dependent length, so per-template normalisation matters."""

    def __init__(self, directions: dict[str, np.ndarray], noise: float = 0.05):
        self.dirs, self.noise = directions, noise
        self.calls = 0

    def word_of(self, text: str) -> str:
        for fam in FAMILIES:
            for t in TEMPLATE_FAMILIES[fam]:
                pre, post = t.split("{}")
                if text.startswith(pre) and text.endswith(post):
                    word = text[len(pre):len(text) - len(post)]
                    if word in self.dirs:
                        return word
        raise KeyError(text)

    def vector(self, text: str) -> np.ndarray:
        seed = zlib.crc32(text.encode())
        g = np.random.default_rng(seed).standard_normal(D) / np.sqrt(D)
        length = 0.5 + (seed % 7) / 2  # 0.5 … 3.5: an unnormalised mean would weight templates unevenly
        return (length * unit(self.dirs[self.word_of(text)] + self.noise * g)).astype(np.float32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.vector(t) for t in texts])


def planted_directions(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dirs = {w: unit(rng.standard_normal(D)) for w in WORDS}
    p = dirs["boat"]
    u = rng.standard_normal(D)
    u = unit(u - (u @ p) * p)                       # the delta δ, orthogonal to "boat"
    dirs["sailboat"] = unit(p + u)                  # child word ≈ parent + delta
    dirs["wind"] = unit(u + 0.15 * unit(rng.standard_normal(D)))  # distractor: nearest to δ alone
    dirs["_delta"] = u
    return dirs


@pytest.fixture(scope="module")
def planted():
    dirs = planted_directions()
    enc = PlantedEncoder({w: dirs[w] for w in WORDS})
    vocab = Vocabulary("planted", WORDS)
    return dirs, enc, vocab


@pytest.fixture(scope="module")
def planted_embeddings(planted, tmp_path_factory):
    _, enc, vocab = planted
    return embed_vocabulary(enc, vocab, backbone_id="fake/planted", cache_dir=tmp_path_factory.mktemp("cache"))


def planted_decoder(dirs, seed: int = 1):
    """Concepts 0-9 → the first ten words; 10 = "boat" (parent); 11 = the child, only δ."""
    rng = np.random.default_rng(seed)
    rows = [unit(dirs[w] + 0.05 * unit(rng.standard_normal(D))) for w in WORDS[:10]]
    rows += [dirs["boat"], dirs["_delta"]]
    W = np.stack(rows).astype(np.float32)
    b = (0.02 * unit(rng.standard_normal(D))).astype(np.float32)
    return W, b


def planted_relations(m: int = 12):
    d_hat = sp.lil_matrix((m, m))
    d_hat.setdiag(1.0)
    d_hat[11, 10] = 0.92   # wherever the child fires, "boat" fires: parent edge
    d_hat[10, 11] = 0.30   # not the reverse
    d_hat[11, 3] = 0.60    # co-fires sometimes, below τ: must be ignored
    mu = sp.lil_matrix((m, m))
    for i in range(m):
        mu[i, i] = 1.0 + 0.1 * i
    mu[11, 10] = 1.1       # the parent is active on the child's top tokens
    mu[11, 3] = 0.4
    return d_hat.tocsr(), mu.tocsr()


# --- family averaging and the cache ----------------------------------------------------------

def test_family_embedding_is_normalised_mean_of_normalised_templates(planted, tmp_path):
    dirs, _, vocab = planted
    enc = PlantedEncoder({w: dirs[w] for w in WORDS}, noise=0.6)
    emb = embed_vocabulary(enc, vocab, backbone_id="fake/noisy", cache_dir=tmp_path, batch_size=70)
    assert emb.shape == (len(WORDS), 3, D) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
    w = WORDS.index("castle")
    for f, fam in enumerate(FAMILIES):
        texts = family_texts("castle", fam)
        assert len(texts) == 10 and len(set(texts)) == 10
        raw = enc(texts)
        expected = unit(unit(raw).mean(axis=0))
        np.testing.assert_allclose(emb[w, f], expected, atol=2e-3)
        # The check is sharp: averaging unnormalised template vectors gives a different answer.
        assert np.abs(unit(raw.mean(axis=0)) - expected).max() > 1e-2
    assert np.abs(emb[w, 0] - emb[w, 1]).max() > 1e-2  # families differ


def test_template_families_follow_the_spec():
    assert set(TEMPLATE_FAMILIES) == {"noun", "adjective", "verb"}
    for templates in TEMPLATE_FAMILIES.values():
        assert len(templates) == 10 and len(set(templates)) == 10
        assert all(t.count("{}") == 1 for t in templates)
    assert {"{}", "a {}", "a photo of a {}", "a type of {}"} <= set(TEMPLATE_FAMILIES["noun"])
    assert {"something that is {}", "a {} object"} <= set(TEMPLATE_FAMILIES["adjective"])
    assert {"to {}", "a photo of someone {}"} <= set(TEMPLATE_FAMILIES["verb"])


def test_cache_is_used_and_keyed_by_backbone_and_vocabulary(planted, tmp_path):
    dirs, _, vocab = planted
    enc = PlantedEncoder({w: dirs[w] for w in WORDS})
    progress = []
    first = embed_vocabulary(enc, vocab, backbone_id="fake/a", cache_dir=tmp_path, batch_size=90,
                             on_progress=lambda done, total: progress.append((done, total)))
    calls = enc.calls
    assert calls == 6 and progress[-1] == (16, 16)  # 3 words (90 texts) per call
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    again = embed_vocabulary(enc, vocab, backbone_id="fake/a", cache_dir=tmp_path)
    assert enc.calls == calls                        # served from the cache
    np.testing.assert_array_equal(again, first)      # identical, not just close

    embed_vocabulary(enc, vocab, backbone_id="fake/b", cache_dir=tmp_path)
    assert enc.calls > calls                         # another backbone: recomputed
    calls = enc.calls
    embed_vocabulary(enc, Vocabulary("planted", WORDS[:-1]), backbone_id="fake/a", cache_dir=tmp_path)
    assert enc.calls > calls                         # another vocabulary: recomputed
    calls = enc.calls
    embed_vocabulary(enc, vocab, backbone_id="fake/a", cache_dir=tmp_path, use_cache=False)
    assert enc.calls > calls
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncate", "wrong_shape"])
def test_damaged_cache_is_recomputed(planted, planted_embeddings, tmp_path, damage):
    dirs, _, vocab = planted
    enc = PlantedEncoder({w: dirs[w] for w in WORDS})
    embed_vocabulary(enc, vocab, backbone_id="fake/planted", cache_dir=tmp_path)
    path = cache_path(tmp_path, "fake/planted", vocab)
    assert path.is_file()
    if damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file" * 10)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    else:  # a valid file holding the wrong array under the right name
        from safetensors.numpy import save

        from insight_desktop.core.concepts.vocab import _cache_metadata
        path.write_bytes(save({"embeddings": np.zeros((3, 3, D), np.float16)},
                              metadata=_cache_metadata("fake/planted", vocab)))
    calls = enc.calls
    emb = embed_vocabulary(enc, vocab, backbone_id="fake/planted", cache_dir=tmp_path)
    assert enc.calls > calls
    np.testing.assert_array_equal(emb, planted_embeddings)
    calls = enc.calls
    embed_vocabulary(enc, vocab, backbone_id="fake/planted", cache_dir=tmp_path)
    assert enc.calls == calls  # the rewritten cache is good again


def test_encoder_forms_and_cancellation(planted, tmp_path):
    dirs, _, vocab = planted
    enc = PlantedEncoder({w: dirs[w] for w in WORDS})
    with pytest.raises(NamingError, match="backbone_id"):
        embed_vocabulary(enc, vocab, cache_dir=tmp_path)

    class FakeBackbone:
        id = "fake/object"

        def encode_text(self, texts):
            import torch
            return torch.from_numpy(enc(texts))  # torch output is accepted too

    a = embed_vocabulary(FakeBackbone(), vocab, cache_dir=tmp_path)
    assert cache_path(tmp_path, "fake/object", vocab).is_file()
    b = embed_vocabulary(enc, vocab, backbone_id="fake/callable", cache_dir=tmp_path)
    np.testing.assert_array_equal(a, b)

    stops = iter([False, True])
    with pytest.raises(NamingCancelled):
        embed_vocabulary(enc, vocab, backbone_id="fake/stop", cache_dir=tmp_path, batch_size=30,
                         should_stop=lambda: next(stops))
    assert not cache_path(tmp_path, "fake/stop", vocab).exists()
    with pytest.raises(NamingError, match="shape"):
        embed_vocabulary(lambda texts: np.ones((len(texts) - 1, D)), vocab, backbone_id="fake/bad", cache_dir=tmp_path)


# --- vanilla and hierarchy-aware naming -------------------------------------------------------

def test_vanilla_recovers_planted_names_and_misnames_the_delta_child(planted, planted_embeddings):
    dirs, _, vocab = planted
    W, b = planted_decoder(dirs)
    names = name_concepts(vanilla_concept_embeddings(W, b), [(planted_embeddings, vocab)], method="vanilla")
    assert names.names[:10] == WORDS[:10]
    assert names.names[10] == "boat"
    assert names.names[11] == "wind"   # the delta alone looks like the distractor
    assert names.method == "vanilla"
    np.testing.assert_allclose(vanilla_concept_embeddings(W, b), unit(W + b), atol=1e-6)


def test_hierarchy_aware_naming_names_the_delta_child_correctly(planted, planted_embeddings):
    dirs, _, vocab = planted
    W, b = planted_decoder(dirs)
    d_hat, mu = planted_relations()
    names = name_model(W, b, [(planted_embeddings, vocab)], d_hat=d_hat, mu=mu)
    assert names.method == "hierarchy"
    assert names.names[11] == "sailboat"
    assert names.names[:11] == WORDS[:10] + ("boat",)  # parents and plain concepts keep their names
    vanilla = name_model(W, b, [(planted_embeddings, vocab)])
    assert vanilla.method == "vanilla" and vanilla.names[11] == "wind"


def dense_reference(W, b, d_hat, mu, tau=0.75, scale=1.33):
    """docs/method.md §5 written densely and literally."""
    Dh = np.nan_to_num(np.asarray(d_hat, dtype=np.float64), nan=0.0)
    R = Dh * (Dh > tau)
    np.fill_diagonal(R, 1.0)
    MU = np.asarray(mu, dtype=np.float64)
    V = R * MU
    mu_norms = np.linalg.norm(MU, axis=1)
    s = scale * mu_norms[mu_norms > 0].mean()
    vn = np.linalg.norm(V, axis=1)
    E = np.where(vn[:, None] > 0, (V / np.where(vn > 0, vn, 1)[:, None] * s) @ W + b, W + b)
    return unit(E)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hierarchy_embeddings_match_a_dense_reference(seed):
    rng = np.random.default_rng(seed)
    m, d = 15, 8
    W = rng.standard_normal((m, d)).astype(np.float32)
    b = rng.standard_normal(d).astype(np.float32)  # large b_dec: the scale s matters
    d_hat = rng.uniform(0, 1, (m, m)) * (rng.uniform(size=(m, m)) < 0.4)
    d_hat[rng.uniform(size=(m, m)) < 0.1] = np.nan                   # concepts that never fired
    d_hat[np.arange(m), np.arange(m)] = rng.uniform(0, 1, m)          # diag(R) must become 1 anyway
    mu = rng.exponential(1.0, (m, m)) * (rng.uniform(size=(m, m)) < 0.3)
    mu[3] = 0.0                                                       # a dead concept → vanilla
    ref = dense_reference(W, b, d_hat, mu)
    # NaNs stored explicitly in the sparse matrix, as 0/0 would leave them
    coo = sp.coo_matrix(np.where(np.isnan(d_hat), 0, d_hat))
    nan_r, nan_c = np.nonzero(np.isnan(d_hat))
    with_nans = sp.csr_matrix((np.r_[coo.data, np.full(len(nan_r), np.nan)],
                               (np.r_[coo.row, nan_r], np.r_[coo.col, nan_c])), shape=(m, m))
    got = hierarchy_concept_embeddings(W, b, with_nans, sp.csr_matrix(mu))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(hierarchy_concept_embeddings(W, b, d_hat, mu), ref, atol=1e-5)
    np.testing.assert_allclose(got[3], vanilla_concept_embeddings(W, b)[3], atol=1e-6)
    # τ is strict, the diagonal is 1, NaNs vanish
    R = parent_weights(with_nans).toarray()
    assert np.all(np.diag(R) == 1) and np.isfinite(R).all()
    off = R[~np.eye(m, dtype=bool)]
    assert np.all((off == 0) | (off > 0.75))


def test_hierarchy_embeddings_scale_to_8192_concepts_sparsely():
    rng = np.random.default_rng(0)
    m, d = 8192, 64
    W = rng.standard_normal((m, d)).astype(np.float32)
    b = rng.standard_normal(d).astype(np.float32)

    def random_sparse(per_row, low, high):
        rows = np.repeat(np.arange(m), per_row)
        cols = rng.integers(0, m, m * per_row)
        return sp.csr_matrix((rng.uniform(low, high, m * per_row), (rows, cols)), shape=(m, m))

    d_hat, mu = random_sparse(12, 0, 1), random_sparse(30, 0, 2)
    tracemalloc.start()
    t0 = time.perf_counter()
    emb = hierarchy_concept_embeddings(W, b, d_hat, mu)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert emb.shape == (m, d) and np.isfinite(emb).all()
    assert peak < 150e6, f"peak {peak / 1e6:.0f} MB"   # a dense [m, m] float64 alone would be 537 MB
    assert elapsed < 5.0


# --- candidates, chunking, vocabularies -------------------------------------------------------

def brute_force_top(C, vocab_embeddings, top):
    best = {}
    for v, (E, vocab) in enumerate(vocab_embeddings):
        S = np.einsum("d,wfd->wf", C, E)
        for w, term in enumerate(vocab.terms):
            for f, fam in enumerate(FAMILIES):
                key, order = term.casefold(), (-float(S[w, f]), v, w)
                if key not in best or order < best[key][0]:
                    best[key] = (order, (term, fam, vocab.name))
    ranked = sorted(best.values())[:top]
    return [(c[0], c[1], c[2], -o[0]) for o, c in ranked]


def test_candidates_are_sorted_deduplicated_and_chunking_is_exact(planted, planted_embeddings, tmp_path):
    dirs, enc, vocab = planted
    # Terms shared with the first vocabulary (one spelled "Boat"), slightly moved so no score ties exactly.
    nudge = 0.03 * unit(np.ones(D))
    extra_enc = PlantedEncoder({"Boat": unit(dirs["boat"] + nudge), "ladder": unit(dirs["ladder"] - nudge),
                                "spoon": unit(dirs["spoon"] + nudge), "sailboat": unit(dirs["sailboat"] - nudge)})
    extra = Vocabulary("extra", ("Boat", "ladder", "spoon", "sailboat"))
    extra_emb = embed_vocabulary(extra_enc, extra, backbone_id="fake/planted", cache_dir=tmp_path)
    vocabs = [(planted_embeddings, vocab), (extra_emb, extra)]
    W, b = planted_decoder(dirs)
    C = vanilla_concept_embeddings(W, b)
    full = name_concepts(C, vocabs, top=5)
    chunked = name_concepts(C, vocabs, top=5, chunk_elements=1)  # one concept per chunk
    assert full.names == chunked.names  # BLAS may round a chunk's cosines differently in the last bit
    assert [[c[:3] for c in cs] for cs in full.candidates] == [[c[:3] for c in cs] for cs in chunked.candidates]
    np.testing.assert_allclose([[c.score for c in cs] for cs in full.candidates],
                               [[c.score for c in cs] for cs in chunked.candidates], atol=1e-6)
    for i, cands in enumerate(full.candidates):
        assert len(cands) == 5
        scores = [c.score for c in cands]
        assert scores == sorted(scores, reverse=True)
        keys = [c.term.casefold() for c in cands]
        assert len(set(keys)) == 5
        assert full.names[i] == cands[0].term
        expected = brute_force_top(C[i], vocabs, 5)
        assert [c[:3] for c in cands] == [e[:3] for e in expected]
        np.testing.assert_allclose(scores, [e[3] for e in expected], atol=1e-5)
    boat = full.candidates[10]
    assert sum(c.term.casefold() == "boat" for c in boat) == 1
    assert all(c.family in FAMILIES and c.vocabulary in ("planted", "extra") for c in boat)
    assert full.vocabularies == (("planted", vocab.sha256), ("extra", extra.sha256))
    with pytest.raises(NamingError):
        name_concepts(C, vocabs, top=0)
    with pytest.raises(NamingError, match="shape"):
        name_concepts(C[:, :10], vocabs)


def test_concept_names_json_round_trip(planted, planted_embeddings):
    dirs, _, vocab = planted
    W, b = planted_decoder(dirs)
    names = name_model(W, b, [(planted_embeddings, vocab)], d_hat=planted_relations()[0], mu=planted_relations()[1])
    edited = names.with_edit(2, "  Burg (château) ").with_edit(5, "zebra crossing")
    assert edited.display_name(2) == "Burg (château)" and edited.names[2] == "castle"
    assert edited.display_names[0] == "apple" and edited.with_edit(5, None).edited[5] is None
    for n in (names, edited):
        text = n.to_json()
        back = ConceptNames.from_json(text)
        assert back == n
        assert back.to_json() == text
    data = json.loads(edited.to_json())
    c2 = data["concepts"][2]
    assert set(c2) == {"index", "auto", "candidates", "edited"} and c2["edited"] == "Burg (château)"
    assert data["concepts"][0]["edited"] is None and data["method"] == "hierarchy"
    assert isinstance(edited.candidates[0][0], NameCandidate)
    carried = names.with_edits_from(edited)
    assert carried.edited[5] == "zebra crossing"
    for bad in ("{", "[]", json.dumps({"format": "nope"}),
                json.dumps({**data, "concepts": [{"index": 1, "auto": "x"}]})):
        with pytest.raises(NamingError):
            ConceptNames.from_json(bad)


def test_default_vocabulary_is_the_visual_one():
    (visual,) = default_vocabularies()
    assert visual.name == "visual" and 3_000 <= len(visual) <= 4_000
    assert {"tench", "feline", "container", "red", "wood"} <= set(visual.terms)
    assert "running" not in visual.terms and "the" not in visual.terms  # concrete, visual words only


def test_bundled_vocabularies_load_clean():
    english, imagenet = bundled_vocabulary("english"), bundled_vocabulary("imagenet")
    assert english.name == "english" and imagenet.name == "imagenet"
    assert 19_000 <= len(english) <= 21_000
    assert len(imagenet) == 1000 and imagenet.terms[0] == "tench"
    for v, f in ((english, "english.txt"), (imagenet, "imagenet.txt")):
        lines = (resources_dir() / "vocab" / f).read_text(encoding="utf-8").splitlines()
        assert list(v.terms) == lines                     # no blanks, no duplicates, nothing dropped
        assert len({t.casefold() for t in lines}) == len(lines)
        assert all(t == t.strip() and t for t in lines)
    assert {"dog", "water", "mountain", "red", "running"} <= set(english.terms)
    assert "the" not in english.terms and "and" not in english.terms
    assert all(len(t) >= 3 and t.isalpha() and t.islower() for t in english.terms)
    assert (resources_dir() / "vocab" / "SOURCES.md").is_file()


def test_user_vocabulary_edge_cases(tmp_path):
    p = tmp_path / "my terms.txt"
    p.write_bytes("\ufeff# domain words\n\n  rust  \r\nCorrosion\r\ncorrosion\n  # indented comment\n"
                  "weld  seam\n\t\nrust\n".encode("utf-8"))
    v = load_vocabulary(p)
    assert v.name == "my terms" and v.terms == ("rust", "Corrosion", "weld seam")
    assert load_vocabulary(p, name="metal").name == "metal"
    q = tmp_path / "same.txt"
    q.write_text("rust\nCorrosion\nweld seam\n", encoding="utf-8")
    assert load_vocabulary(q).sha256 == v.sha256             # formatting does not change the hash
    q.write_text("Corrosion\nrust\nweld seam\n", encoding="utf-8")
    assert load_vocabulary(q).sha256 != v.sha256             # order does
    for content, match in ((b"", "no terms"), (b"# only\n\n  \n", "no terms"), (b"caf\xe9\n", "UTF-8")):
        bad = tmp_path / "bad.txt"
        bad.write_bytes(content)
        with pytest.raises(NamingError, match=match):
            load_vocabulary(bad)
    with pytest.raises(NamingError, match="not found"):
        load_vocabulary(tmp_path / "missing.txt")
    with pytest.raises(NamingError, match="folder"):
        load_vocabulary(tmp_path)
    with pytest.raises(NamingError):
        Vocabulary("empty", ("", "  "))


# --- the real (tiny) backbone ------------------------------------------------------------------

def test_embed_vocabulary_with_the_tiny_backbone(tiny_backbone, tmp_path):
    vocab = Vocabulary("tiny", ("dog", "cat", "red", "running", "house", "tree", "car", "blue", "sky", "water", "boat",
                                "sailboat", "green", "flying", "bird", "road", "snow", "wooden", "eating", "sea"))
    emb = embed_vocabulary(tiny_backbone, vocab, cache_dir=tmp_path, batch_size=200)
    d = tiny_backbone.feature_dim
    assert emb.shape == (20, 3, d) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
    assert cache_path(tmp_path, tiny_backbone.id, vocab).is_file()
    for w in (0, 11, 19):
        for f, fam in enumerate(FAMILIES):
            t = tiny_backbone.encode_text(family_texts(vocab.terms[w], fam)).numpy()
            np.testing.assert_allclose(emb[w, f], unit(unit(t).mean(axis=0)), atol=3e-3)
