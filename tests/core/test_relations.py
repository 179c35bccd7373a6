"""Concept relations (docs/method.md §4): sparse statistics vs. brute force, planted hierarchies, DAG rule,
streaming/resume invariance, file round trips, and one pass over a real token store."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.sparse.csgraph import connected_components

from insight_desktop.core.concepts.codes import SparseCodes, ragged_arange
from insight_desktop.core.concepts.compute import (
    CHECKPOINT_FILE,
    RelationsAccumulator,
    compute_relations,
    compute_relations_from_codes,
)
from insight_desktop.core.concepts.relations import Relations, RelationsError
from insight_desktop.core.features import TokenStore, extract_features
from insight_desktop.core.sae.config import SAEConfig

from .fakes import PatchColourBackbone

EPS = 1e-3


# ----------------------------------------------------------------------------- helpers
def brute_force(z: np.ndarray, token_ids: np.ndarray, top_n: int, eps: float = EPS) -> dict:
    """Dense reference of every docs/method.md §4 statistic, written as plainly as possible."""
    n, m = z.shape
    active = z > eps
    zz = np.where(active, z, 0).astype(np.float64)
    top_tok = np.full((m, top_n), -1, dtype=np.int64)
    top_val = np.full((m, top_n), -np.inf, dtype=np.float32)
    mu = np.zeros((m, m))
    for i in range(m):
        rows = sorted(np.flatnonzero(active[:, i]), key=lambda r: (-float(z[r, i]), int(token_ids[r])))[:top_n]
        top_tok[i, :len(rows)] = token_ids[rows]
        top_val[i, :len(rows)] = z[rows, i]
        mu[i] = zz[rows].sum(axis=0) / top_n  # the reference averages all top_n slots; unfilled ones are zero
    a = active.astype(np.int64)
    return {"f": a.sum(0), "C": a.T @ a, "D": zz.T @ a, "top_tokens": top_tok, "top_values": top_val, "mu": mu}


def codes_of(rows: list[dict[int, float]], m: int) -> SparseCodes:
    """Codes from a list of {concept: value} per token."""
    z = np.zeros((len(rows), m), dtype=np.float32)
    for t, row in enumerate(rows):
        for c, v in row.items():
            z[t, c] = v
    return SparseCodes.from_dense(z)


def relations_of(rows: list[dict[int, float]], m: int, group_ends=None, tau=0.75, top_n=5) -> Relations:
    codes = codes_of(rows, m)
    return compute_relations_from_codes([(codes, np.arange(codes.n_tokens))], m, group_ends or (m,), tau, top_n=top_n)


def assert_same_relations(a: Relations, b: Relations, exact: bool = True, rtol: float = 1e-12) -> None:
    """Counts and ids always equal; floats bit-identical (``exact``) or within ``rtol``."""
    assert a.n_tokens == b.n_tokens and a.n_concepts == b.n_concepts and a.group_ends == b.group_ends
    np.testing.assert_array_equal(a.f, b.f)
    assert (a.C != b.C).nnz == 0 and a.C.dtype == b.C.dtype == np.int64
    for x, y in ((a.D, b.D), (a.top_codes, b.top_codes)):
        np.testing.assert_array_equal(x.indptr, y.indptr)
        np.testing.assert_array_equal(x.indices, y.indices)
    np.testing.assert_array_equal(a.top_tokens, b.top_tokens)
    check = np.testing.assert_array_equal if exact else lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol)
    check(a.D.data, b.D.data)
    check(a.top_values, b.top_values)
    check(a.top_codes.data, b.top_codes.data)


def is_acyclic(mat: sp.csr_matrix) -> bool:
    n_comp, _ = connected_components(mat, directed=True, connection="strong")
    return n_comp == mat.shape[0] and np.all(mat.diagonal() == 0)


# ----------------------------------------------------------------------- sparse codes
def test_sparse_codes_from_dense_topk_and_torch_agree():
    z = np.array([[0.0, 0.5, 0.0005, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.002]], dtype=np.float32)
    a = SparseCodes.from_dense(z)
    assert a.indptr.tolist() == [0, 2, 2, 4] and a.indices.tolist() == [1, 3, 0, 3]
    np.testing.assert_array_equal(a.to_dense(), np.where(z > EPS, z, 0))
    b = SparseCodes.from_topk(np.array([[3, 1, 2], [0, 1, 2], [3, 0, 1]]),
                              np.array([[2.0, 0.5, 0.0005], [0, 0, 0], [0.002, 1.0, 0.0]]), 4)
    c = SparseCodes.from_dense(torch.from_numpy(z))
    for other in (b, c):
        np.testing.assert_array_equal(other.indptr, a.indptr)
        np.testing.assert_array_equal(other.indices, a.indices)
        np.testing.assert_array_equal(other.values, a.values)
    assert a.rows(1, 3).to_dense().tolist() == a.to_dense()[1:3].tolist()


def test_sparse_codes_reject_duplicates_and_unsorted_rows():
    with pytest.raises(ValueError, match="duplicate|strictly"):
        SparseCodes.from_topk(np.array([[1, 1]]), np.array([[0.5, 0.7]]), 4)
    with pytest.raises(ValueError, match="strictly"):
        SparseCodes(np.array([0, 2]), np.array([3, 1]), np.array([1.0, 1.0]), 4)
    with pytest.raises(ValueError, match="0..3"):
        SparseCodes(np.array([0, 1]), np.array([4]), np.array([1.0]), 4)


def test_ragged_arange():
    assert ragged_arange(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist() == [5, 6, 9, 10, 11]
    assert ragged_arange(np.array([], np.int64), np.array([], np.int64)).size == 0


# ------------------------------------------------------------------ brute-force parity
@st.composite
def code_streams(draw):
    m = draw(st.integers(1, 9))
    n = draw(st.integers(0, 40))
    level = st.sampled_from([0.0, 0.0, 0.0, 0.0005, 0.001, 0.25, 0.5, 0.5, 1.0, 3.0])  # many exact ties
    z = np.array(draw(st.lists(st.lists(level, min_size=m, max_size=m), min_size=n, max_size=n)),
                 dtype=np.float32).reshape(n, m)
    token_ids = np.random.default_rng(draw(st.integers(0, 2**16))).permutation(1000)[:n].astype(np.int64)
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=6))))
    top_n = draw(st.integers(1, 6))
    # Storage settings change only memory and speed: exercise chunking, pending levels, flushes
    # into the row-blocked main matrix, and the plain "everything in one chunk" path.
    options = {"chunk_tokens": draw(st.sampled_from([1, 4, 1 << 16])),
               "row_blocks": draw(st.sampled_from([1, 3, 32])),
               "min_flush_nnz": draw(st.sampled_from([0, 20, 1 << 22])),
               "flush_ratio": draw(st.sampled_from([0.5, 2.0]))}
    return z, token_ids, cuts, top_n, options


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code_streams())
def test_statistics_top_tokens_and_mu_equal_brute_force(stream):
    z, token_ids, cuts, top_n, options = stream
    n, m = z.shape
    bounds = [0, *cuts, n]
    acc = RelationsAccumulator(m, top_n=top_n, **options)
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(SparseCodes.from_dense(z[a:b]), token_ids[a:b])
    rel = acc.to_relations((m,), release=bool(n % 2))
    ref = brute_force(z, token_ids, top_n)
    assert rel.n_tokens == n
    np.testing.assert_array_equal(rel.f, ref["f"])
    np.testing.assert_array_equal(rel.C.toarray(), ref["C"])
    np.testing.assert_allclose(rel.D.toarray(), ref["D"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(rel.top_tokens, ref["top_tokens"])
    np.testing.assert_array_equal(rel.top_values, ref["top_values"])
    np.testing.assert_allclose(rel.mu.toarray(), ref["mu"], rtol=1e-6, atol=1e-7)
    # The code stored with each top token is that token's full code.
    where = {int(t): r for r, t in enumerate(token_ids)}
    dense_codes = rel.top_codes.toarray().reshape(m, top_n, m)
    for i in range(m):
        for r, t in enumerate(rel.top_tokens[i]):
            expected = np.where(z[where[int(t)]] > EPS, z[where[int(t)]], 0) if t >= 0 else np.zeros(m)
            np.testing.assert_array_equal(dense_codes[i, r], expected)
    np.testing.assert_allclose(rel.mean_activation, np.divide(ref["D"].diagonal(), ref["f"],
                                                              out=np.zeros(m), where=ref["f"] > 0))


def test_many_small_batches_equal_one_big_batch_and_pool_compaction(monkeypatch):
    from insight_desktop.core.concepts import statistics

    monkeypatch.setattr(statistics, "_MIN_POOL", 16)  # compact the shared code pool often
    rng = np.random.default_rng(1)
    n, m, k = 3000, 40, 5
    idx = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    val = rng.choice([0.5, 1.0, 1.5, 2.0], size=(n, k)).astype(np.float32)  # heavy ties
    codes = SparseCodes.from_topk(idx, val, m)
    ids = np.arange(n) * 7 + 3
    one = compute_relations_from_codes([(codes, ids)], m, (8, m), top_n=30)
    many_batches = [(codes.rows(a, min(a + 37, n)), ids[a:a + 37]) for a in range(0, n, 37)]
    many = compute_relations_from_codes(many_batches, m, (8, m), top_n=30)
    assert_same_relations(one, many, exact=False)
    ref = brute_force(codes.to_dense(), ids, 30)
    np.testing.assert_array_equal(many.top_tokens, ref["top_tokens"])
    np.testing.assert_allclose(many.mu.toarray(), ref["mu"], rtol=1e-6)


def test_accumulator_memory_grows_with_nonzeros_not_m_squared():
    m = 200_000  # a dense m×m float64 matrix would need 320 GB
    acc = RelationsAccumulator(m, top_n=2)
    rng = np.random.default_rng(0)
    for b in range(5):
        idx = rng.integers(0, m, size=(500, 12))
        idx = np.sort(idx, axis=1)
        val = np.where(np.diff(idx, axis=1, prepend=-1) > 0, 1.0, 0.0).astype(np.float32)  # drop duplicates
        acc.update(SparseCodes.from_topk(idx, val, m), np.arange(b * 500, (b + 1) * 500))
    assert acc.memory_bytes() < 64 * 2**20
    c, d = acc.pair_matrices()
    assert c.nnz == d.nnz <= 5 * 500 * 144


# -------------------------------------------------------------------- planted structure
def test_planted_subset_gives_one_parent_edge_and_unrelated_concepts_none():
    A, B, U = 0, 1, 2  # A fires only where B fires; U is unrelated
    rows = ([{A: 1.0, B: 0.8}] * 30 + [{B: 1.2}] * 30 + [{U: 0.7}] * 30 + [{}] * 10)
    rel = relations_of(rows, 3)
    dh = rel.d_hat.toarray()
    assert dh[A, B] == pytest.approx(1.0) and dh[B, A] == pytest.approx(24 / (24 + 36))
    assert rel.parents_of(A) == [B] and rel.parents_of(B) == [] and rel.parents_of(U) == []
    assert rel.parent_matrix.nnz == 1 and rel.parent_matrix[A, B] == pytest.approx(1.0)
    assert rel.display_parent.tolist() == [B, -1, -1]
    assert rel.children_of(B) == [A] and rel.children_of(U) == []
    assert rel.roots.tolist() == [B, U]
    assert rel.f.tolist() == [30, 60, 30] and rel.frequency[B] == pytest.approx(0.6)
    assert rel.mean_activation[B] == pytest.approx((30 * 0.8 + 30 * 1.2) / 60)
    assert rel.level.tolist() == [1, 1, 1]


def test_three_level_chain_display_parent_is_the_nearest_by_largest_d_hat():
    # Leaf C ⊂ B; B mostly ⊂ A (10 of B's 60 tokens lack A), and C's mass lies where B fires
    # but A does not, so D̂_CB = 1 > D̂_CA: C hangs under B, B under A.
    A, B, C = 0, 2, 5
    rows = ([{A: 1.0, B: 1.0, C: 0.2}] * 10 + [{B: 1.0, C: 1.0}] * 10 + [{A: 1.0, B: 1.0}] * 40
            + [{A: 1.0}] * 60)
    rel = relations_of(rows, 6, group_ends=(2, 4, 6))
    dh = rel.d_hat.toarray()
    assert dh[C, B] == pytest.approx(1.0) and dh[C, A] == pytest.approx(2 / 12)  # A is not C's parent here
    assert rel.parents_of(C) == [B] and rel.parents_of(B) == [A]
    rows2 = ([{A: 1.0, B: 1.0, C: 1.0}] * 10 + [{B: 1.0, C: 0.1}] * 2 + [{A: 1.0, B: 1.0}] * 40 + [{A: 1.0}] * 60)
    rel2 = relations_of(rows2, 6, group_ends=(2, 4, 6))
    dh2 = rel2.d_hat.toarray()
    assert dh2[C, A] > 0.75 and dh2[C, B] > dh2[C, A]
    assert rel2.parents_of(C) == [B, A]  # the full parent list, best first
    assert rel2.display_parent[C] == B and rel2.display_parent[B] == A and rel2.display_parent[A] == -1
    assert rel2.children_of(A) == [B] and rel2.children_of(B) == [C]
    assert rel2.level[[A, B, C]].tolist() == [1, 2, 3]


def test_display_parent_ties_go_to_the_rarer_parent_then_the_lower_index():
    # Exact subset chain: D̂_CB = D̂_CA = 1 (a tie) → the rarer parent B.
    A, B, C = 0, 1, 2
    rel = relations_of([{A: 1.0, B: 1.0, C: 1.0}] * 10 + [{A: 1.0, B: 1.0}] * 10 + [{A: 1.0}] * 30, 3)
    assert rel.parents_of(C)[0] == B and rel.display_parent[C] == B
    assert sorted(rel.parents_of(C)) == [A, B]
    # Equal D̂ and equal f: the lower level (= lower index: levels are index ranges) wins.
    P1, P2, K = 1, 4, 5  # P1 in level 1, P2 in level 2
    rows = [{P1: 1.0, P2: 1.0, K: 1.0}] * 10 + [{P1: 1.0}] * 20 + [{P2: 1.0}] * 20
    rel = relations_of(rows, 6, group_ends=(3, 6))
    assert rel.f[P1] == rel.f[P2] and rel.display_parent[K] == P1 and rel.parents_of(K) == [P1, P2]
    # Equal D̂, the higher-index parent is rarer: rarity comes before level and index.
    rows = [{P1: 1.0, P2: 1.0, K: 1.0}] * 10 + [{P1: 1.0}] * 20 + [{P2: 1.0}] * 5
    rel = relations_of(rows, 6, group_ends=(3, 6))
    assert rel.display_parent[K] == P2 and rel.parents_of(K) == [P2, P1]


def test_mutual_pair_keeps_exactly_one_edge_towards_the_more_frequent():
    X, Y = 1, 3  # X fires only with Y; Y fires on 2 more tokens: more frequent despite its higher index
    rows = [{X: 1.0, Y: 1.0}] * 20 + [{Y: 0.5}] * 2 + [{0: 1.0}] * 5
    rel = relations_of(rows, 4)
    dh = rel.d_hat.toarray()
    assert dh[X, Y] > 0.75 and dh[Y, X] > 0.75  # both directions pass τ
    assert rel.parents_of(X) == [Y] and rel.parents_of(Y) == []
    assert rel.parent_matrix.nnz == 1 and rel.dropped_edges.tolist() == [[Y, X]]
    # Always co-firing with equal f: the coarser level (lower index) becomes the parent.
    rel = relations_of([{0: 1.0, 3: 2.0}] * 10 + [{1: 1.0}] * 3, 4, group_ends=(2, 4))
    assert rel.parents_of(3) == [0] and rel.parents_of(0) == [] and rel.parent_matrix.nnz == 1


def test_longer_cycles_are_broken_and_only_cycle_edges_are_dropped():
    # i→j→k→i, each with D̂ = 10/11 > τ and no reverse edge: a 3-cycle of candidate edges.
    i, j, k = 0, 1, 2
    rows = [{i: 10.0, j: 1.0}, {j: 10.0, k: 1.0}, {k: 10.0, i: 1.0}, {3: 1.0, i: 1.0}]
    rel = relations_of(rows, 4)
    # f: i 3, j 2, k 2 → i most general; the only kept cycle edge is the one pointing up to i.
    assert rel.parents_of(k) == [i] and rel.parents_of(i) == [] and rel.parents_of(j) == []
    assert sorted(map(tuple, rel.dropped_edges.tolist())) == [(i, j), (j, k)]
    assert is_acyclic(rel.parent_matrix)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.2, 0.4, 0.75]))
def test_parent_relation_is_always_a_dag(seed, tau):
    rng = np.random.default_rng(seed)
    n, m = 60, 8
    z = (rng.random((n, m)) < 0.35) * rng.choice([0.2, 1.0, 5.0], size=(n, m))
    rel = compute_relations_from_codes([(SparseCodes.from_dense(z), np.arange(n))], m, (2, 5, 8), tau)
    dh = rel.d_hat.toarray()
    cand = (dh > tau) & ~np.eye(m, dtype=bool)
    kept = rel.parent_matrix.toarray() > 0
    assert is_acyclic(rel.parent_matrix)
    assert not (kept & ~cand).any()  # no invented edges
    _, comp = connected_components(sp.csr_matrix(cand), directed=True, connection="strong")
    for c, p in rel.dropped_edges:  # only edges on cycles go, and only those pointing down the order
        assert comp[c] == comp[p] and rel.generality_rank[p] < rel.generality_rank[c]
    assert kept.sum() + len(rel.dropped_edges) == cand.sum()
    dp = rel.display_parent
    for c in range(m):  # the display parent is the best-scoring kept parent
        ps = rel.parents_of(c)
        assert (dp[c] == -1) == (not ps) and (not ps or dp[c] == ps[0])
        assert [dh[c, p] for p in ps] == sorted((dh[c, p] for p in ps), reverse=True)


def test_with_tau_recomputes_edges_and_values_are_read_only():
    A, B = 0, 1
    rel = relations_of([{A: 1.0, B: 1.0}] * 6 + [{A: 1.0}] * 4 + [{B: 1.0}] * 8, 2)
    assert rel.d_hat[A, B] == pytest.approx(0.6)
    assert rel.parents_of(A) == [] and rel.with_tau(0.5).parents_of(A) == [B]
    for arr in (rel.f, rel.top_tokens, rel.D.data, rel.C.indices, rel.d_hat.data, rel.display_parent, rel.mu.data):
        with pytest.raises(ValueError):
            arr[0] = 0


# ------------------------------------------------------------------------ state, files
def _random_codes(seed: int, n: int = 800, m: int = 30, k: int = 6) -> SparseCodes:
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    return SparseCodes.from_topk(idx, rng.exponential(1.0, (n, k)).astype(np.float32), m)


def test_resume_from_state_dict_is_bit_identical(tmp_path):
    from safetensors.numpy import load_file, save_file

    codes, m = _random_codes(0), 30
    cuts = list(range(0, codes.n_tokens + 1, 50))
    options = {"chunk_tokens": 100, "min_flush_nnz": 1, "flush_ratio": 2.0, "row_blocks": 4}  # all storage paths used
    whole = RelationsAccumulator(m, top_n=7, **options)
    for a, b in zip(cuts[:-1], cuts[1:]):
        whole.update(codes.rows(a, b), np.arange(a, b))
    first = RelationsAccumulator(m, top_n=7, **options)
    for a, b in zip(cuts[:7], cuts[1:8]):
        first.update(codes.rows(a, b), np.arange(a, b))
    state = first.state_dict()
    assert state["pairs.levels"][0] >= 1 and state["pairs.buffer.indices"].size > 0
    assert sum(state[f"pairs.main.{b}.C"].size for b in range(4)) > 0
    save_file(state, tmp_path / "state.safetensors")
    resumed = RelationsAccumulator(m, top_n=7, **options)
    resumed.load_state_dict(load_file(tmp_path / "state.safetensors"))
    for a, b in zip(cuts[7:-1], cuts[8:]):
        resumed.update(codes.rows(a, b), np.arange(a, b))
    assert_same_relations(whole.to_relations((m,)), resumed.to_relations((m,), release=True), exact=True)
    assert_same_relations(whole.to_relations((m,)), whole.to_relations((m,)), exact=True)  # results don't consume
    with pytest.raises(RelationsError, match="top_n"):
        RelationsAccumulator(m, top_n=8).load_state_dict(state)
    broken = dict(state)
    del broken["f"]
    with pytest.raises(RelationsError, match="'f'"):
        RelationsAccumulator(m, top_n=7).load_state_dict(broken)


def test_save_load_round_trip_is_lossless(tmp_path):
    codes, m = _random_codes(3), 30
    rel = compute_relations_from_codes([(codes, np.arange(codes.n_tokens))], m, (5, 12, 30), tau=0.6, top_n=4,
                                       provenance={"store": "here", "n": 3})
    path = rel.save(tmp_path / "rel.safetensors")
    back = Relations.load(path)
    assert_same_relations(rel, back)
    assert (back.tau, back.eps, back.top_n, back.provenance) == (0.6, EPS, 4, {"store": "here", "n": 3})
    np.testing.assert_array_equal(back.display_parent, rel.display_parent)
    assert (back.mu != rel.mu).nnz == 0 and (back.parent_matrix != rel.parent_matrix).nnz == 0
    arrays, meta = rel.to_arrays()
    assert "C.indptr" not in arrays  # C shares D's pattern: stored once
    assert_same_relations(Relations.from_arrays(arrays, meta), rel)


def test_damaged_files_raise_relations_error(tmp_path):
    from safetensors.numpy import save_file

    rel = relations_of([{0: 1.0, 1: 1.0}] * 3, 2)
    path = rel.save(tmp_path / "rel.safetensors")
    data = path.read_bytes()
    with pytest.raises(RelationsError, match="does not exist"):
        Relations.load(tmp_path / "missing.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(RelationsError, match="truncated|damaged"):
        Relations.load(tmp_path / "cut.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(data[:5])
    with pytest.raises(RelationsError):
        Relations.load(tmp_path / "tiny.safetensors")
    save_file({"x": np.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(RelationsError, match="no Insight relations"):
        Relations.load(tmp_path / "other.safetensors")
    arrays, meta = rel.to_arrays()
    with pytest.raises(RelationsError, match="f has shape"):
        Relations.from_arrays({**arrays, "f": np.zeros(3, np.int64)}, meta)
    with pytest.raises(RelationsError, match="indptr"):
        Relations.from_arrays({**arrays, "D.indptr": arrays["D.indptr"][:-1]}, meta)
    with pytest.raises(RelationsError, match="missing"):
        Relations.from_arrays({k: v for k, v in arrays.items() if k != "top_values"}, meta)
    with pytest.raises(RelationsError, match="group ends"):
        Relations.from_arrays(arrays, {**meta, "group_ends": [1, 1]})


# ------------------------------------------------------------------ pass over a store
class TinySAE:
    """An SAE stand-in: a fixed ReLU linear map with an inference threshold (counts its calls)."""

    def __init__(self, d: int = 8, m: int = 12, seed: int = 0, theta: float = 0.3):
        g = torch.Generator().manual_seed(seed)
        self.config = SAEConfig(d_in=d, n_concepts=m, k=3, group_sizes=(4, m - 4))
        self.W = torch.randn(d, m, generator=g)
        self.theta = theta
        self.calls = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        a = torch.relu(x @ self.W)
        return a * (a > self.theta)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(7):
        blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))).save(tmp_path / "imgs" / f"{i}.png")
    extract_features(tmp_path / "imgs", tmp_path / "store", PatchColourBackbone(), dtype="float32")
    return TokenStore(tmp_path / "store")


def test_compute_relations_over_a_token_store_stops_and_resumes(store, tmp_path):
    sae = TinySAE()
    ref = compute_relations(store, sae, batch_tokens=20, top_n=5)
    assert ref.n_tokens == store.n_tokens == 7 * 16 and sae.calls == 4  # batches of 2 whole images
    tokens = np.concatenate([store.image_tokens(i) for i in range(store.n_images)])
    codes = SparseCodes.from_dense(sae.encode(torch.from_numpy(tokens)))
    direct = compute_relations_from_codes([(codes, np.arange(store.n_tokens))], 12, (4, 12), top_n=5)
    assert_same_relations(ref, direct, exact=False, rtol=1e-5)  # token ids are positions
    assert ref.provenance["backbone"] == store.manifest["backbone"]["id"]

    polls, progress = {"n": 0}, []

    def stop_after_two():
        polls["n"] += 1
        return polls["n"] > 2

    ckpt = tmp_path / "ckpt"
    assert compute_relations(store, TinySAE(), batch_tokens=20, top_n=5, checkpoint_dir=ckpt,
                             checkpoint_every_tokens=1, should_stop=stop_after_two) is None
    assert (ckpt / CHECKPOINT_FILE).is_file()
    sae2 = TinySAE()
    resumed = compute_relations(store, sae2, batch_tokens=20, top_n=5, checkpoint_dir=ckpt,
                                on_progress=progress.append)
    assert sae2.calls == 2 and progress[0].resumed_from == 64 and progress[-1].tokens_done == 112
    assert_same_relations(ref, resumed, exact=True)
    sae3 = TinySAE()  # a finished pass: nothing is recomputed
    assert_same_relations(ref, compute_relations(store, sae3, batch_tokens=20, top_n=5, checkpoint_dir=ckpt))
    assert sae3.calls == 0
    with pytest.raises(RelationsError, match="another SAE"):
        compute_relations(store, TinySAE(m=16), batch_tokens=20, top_n=5, checkpoint_dir=ckpt)
    (ckpt / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(RelationsError, match="damaged"):
        compute_relations(store, TinySAE(), batch_tokens=20, top_n=5, checkpoint_dir=ckpt)
