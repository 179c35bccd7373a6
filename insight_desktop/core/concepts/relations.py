"""The concept relations of docs/method.md §4 as an immutable value: statistics, parents, display tree, μ.

``Relations`` holds the raw statistics (f, C, D, top tokens and their codes) and derives the rest
lazily (each derived value is computed once and cached):

* ``d_hat`` — D̂_ij = D_ij / D_ii, the share of concept i's activation mass on tokens where j fires.
* Parents — j is a parent of i when D̂_ij > τ (i ≠ j). **(ours) The relation is made a DAG:**
  an edge is dropped only when it lies on a cycle of candidate edges, i.e. when child and parent
  fall into the same strongly connected component, and then only the edges that point from the
  more general to the less general concept are dropped. "More general" is the order
  (f larger, then lower level number, then lower index). For the common case — two concepts that
  always fire together, D̂_ij > τ and D̂_ji > τ — exactly one edge survives, towards the more
  frequent concept. Edges outside cycles are all kept, as docs/method.md §4 asks; the result provably has
  no cycle (a cycle of kept edges would lie inside one component, where every kept edge goes
  strictly up the order).
* Display tree **(ours, docs/method.md §4)** — each concept hangs under its parent with the largest D̂_ij;
  ties go to the rarer parent (smaller f), then the lower level number, then the lower index.
* μ_i — the mean code over concept i's top tokens (divided by the number of top tokens found,
  at most ``top_n``), as a CSR [m, m].

**The file** (:meth:`Relations.save` / :meth:`Relations.load`): one safetensors file (arrays)
whose metadata holds one JSON entry (facts). Sparse matrices are stored as their CSR parts::

    f                                   int64 [m]
    D.indptr  D.indices  D.data         CSR [m, m], float64
    C.data                              int64, on D's pattern (C and D share it by construction)
    C.indptr  C.indices                 only when C's pattern differs from D's
    top_tokens  top_values              int64 / float32 [m, top_n]
    top_codes.indptr/.indices/.data     CSR [m·top_n, m], float32

Written atomically and array by array (:func:`~insight_desktop.core.safetensors_io.write_safetensors`),
read with clear :class:`RelationsError` messages. No pickles; plain safetensors files.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..safetensors_io import LazyTensor, SafetensorsReader, write_safetensors
from .codes import DEFAULT_EPS

DEFAULT_TAU = 0.75
FORMAT = "insight-relations"
FORMAT_VERSION = 1
_META_KEY = "insight_relations"


class RelationsError(RuntimeError):
    """Relations data (a file, a checkpoint, arrays, codes) is missing, damaged or inconsistent."""


@dataclass(frozen=True, eq=False)
class Relations:
    """Co-occurrence statistics of ``n_concepts`` concepts over ``n_tokens`` tokens, and what follows.

    The arrays and sparse matrices passed in are taken over, not copied, and made read-only.
    """

    n_concepts: int
    n_tokens: int
    group_ends: tuple[int, ...]   # Matryoshka prefix ends; the group of a concept is its level
    f: np.ndarray                 # int64 [m]: firing counts
    C: sp.csr_matrix              # int64 [m, m]: C_ij = Σ_t A_i A_j
    D: sp.csr_matrix              # float64 [m, m]: D_ij = Σ_t z_i A_j
    top_tokens: np.ndarray        # int64 [m, top_n]: global token ids, best first, −1 padding
    top_values: np.ndarray        # float32 [m, top_n]: z_i on those tokens, −inf padding
    top_codes: sp.csr_matrix      # float32 [m·top_n, m]: row i·top_n + r = code of top token r of i
    tau: float = DEFAULT_TAU
    eps: float = DEFAULT_EPS
    provenance: Mapping[str, Any] = field(default_factory=dict)  # store, backbone, SAE, … (JSON-able)

    def __post_init__(self) -> None:
        m = int(self.n_concepts)
        object.__setattr__(self, "n_concepts", m)
        object.__setattr__(self, "n_tokens", int(self.n_tokens))
        object.__setattr__(self, "group_ends", tuple(int(g) for g in self.group_ends))
        object.__setattr__(self, "tau", float(self.tau))
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "provenance", dict(self.provenance))
        ends = np.asarray(self.group_ends)
        if m <= 0 or ends.size == 0 or ends[-1] != m or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
            raise RelationsError(f"group ends {self.group_ends} must increase strictly up to {m} concepts")
        f = _frozen(self.f, np.int64, "f", (m,))
        top_tokens = _frozen(self.top_tokens, np.int64, "top_tokens")
        if top_tokens.ndim != 2 or top_tokens.shape[0] != m or top_tokens.shape[1] == 0:
            raise RelationsError(f"top_tokens must have shape [{m}, top_n], not {top_tokens.shape}")
        top_values = _frozen(self.top_values, np.float32, "top_values", top_tokens.shape)
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "top_tokens", top_tokens)
        object.__setattr__(self, "top_values", top_values)
        object.__setattr__(self, "C", _frozen_csr(self.C, np.int64, "C", (m, m)))
        object.__setattr__(self, "D", _frozen_csr(self.D, np.float64, "D", (m, m)))
        codes = _frozen_csr(self.top_codes, np.float32, "top_codes", (m * top_tokens.shape[1], m))
        object.__setattr__(self, "top_codes", codes)
        if np.any((np.diff(codes.indptr) > 0) != (top_tokens.ravel() >= 0)):
            raise RelationsError("top_codes must hold one non-empty code for every top token and none for padding")

    # --------------------------------------------------------------------------- basics
    @property
    def top_n(self) -> int:
        return self.top_tokens.shape[1]

    def with_tau(self, tau: float) -> "Relations":
        """The same statistics with another parent threshold (derived values are recomputed)."""
        return dataclasses.replace(self, tau=tau)

    @cached_property
    def level(self) -> np.ndarray:
        """1-based level (Matryoshka group) of every concept, int64 [m]; 1 is the coarsest."""
        return _frozen(np.searchsorted(np.asarray(self.group_ends), np.arange(self.n_concepts), side="right") + 1,
                       np.int64, "level")

    @cached_property
    def frequency(self) -> np.ndarray:
        """f_i / n_tokens, float64 [m] (0 before any token was seen)."""
        return _frozen(self.f / max(self.n_tokens, 1), np.float64, "frequency")

    @cached_property
    def mean_activation(self) -> np.ndarray:
        """D_ii / f_i — the mean code of concept i where it fires (0 where it never fired)."""
        return _frozen(np.divide(self._diag, self.f, out=np.zeros(self.n_concepts), where=self.f > 0),
                       np.float64, "mean_activation")

    @cached_property
    def _diag(self) -> np.ndarray:
        return self.D.diagonal().astype(np.float64)

    # ------------------------------------------------------------------------ hierarchy
    @cached_property
    def d_hat(self) -> sp.csr_matrix:
        """D̂_ij = D_ij / D_ii (rows of concepts that never fired are empty), CSR float64."""
        diag = self._diag.copy()
        diag[diag <= 0] = np.inf  # never-fired concepts have empty rows; guard hand-made data anyway
        data = np.repeat(diag, np.diff(self.D.indptr))
        np.divide(self.D.data, data, out=data)  # in place: one nnz-sized array, not two
        return _frozen_csr(sp.csr_matrix((data, self.D.indices, self.D.indptr), shape=self.D.shape),
                           np.float64, "d_hat", self.D.shape)

    @cached_property
    def generality_rank(self) -> np.ndarray:
        """Position of every concept in the order (f, then coarser level, then lower index); larger
        is more general. Used to break parent cycles deterministically."""
        m = self.n_concepts
        order = np.lexsort((-np.arange(m), -self.level, self.f))
        rank = np.empty(m, dtype=np.int64)
        rank[order] = np.arange(m)
        return _frozen(rank, np.int64, "generality_rank")

    @cached_property
    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Kept (child, parent, D̂) sorted by child then display preference, and the dropped pairs."""
        dh = self.d_hat
        sel = np.flatnonzero(dh.data > self.tau)  # few: index arrays over all nnz would be large
        child = np.searchsorted(dh.indptr, sel, side="right") - 1
        parent = dh.indices[sel].astype(np.int64)
        off_diag = child != parent
        child, parent, score = child[off_diag], parent[off_diag], dh.data[sel[off_diag]]
        m = self.n_concepts
        graph = sp.csr_matrix((np.ones(child.size), (child, parent)), shape=(m, m))
        _, comp = connected_components(graph, directed=True, connection="strong")
        rank = self.generality_rank
        down = (comp[child] == comp[parent]) & (rank[parent] < rank[child])
        dropped = np.stack([child[down], parent[down]], axis=1)
        child, parent, score = child[~down], parent[~down], score[~down]
        order = np.lexsort((parent, self.level[parent], self.f[parent], -score, child))
        return child[order], parent[order], score[order], dropped

    @cached_property
    def parent_matrix(self) -> sp.csr_matrix:
        """Kept parent edges as CSR [m, m] float64: entry (i, j) = D̂_ij when j is a parent of i."""
        child, parent, score, _ = self._edges
        mat = sp.csr_matrix((score, (child, parent)), shape=(self.n_concepts, self.n_concepts))
        mat.sum_duplicates()
        return _frozen_csr(mat, np.float64, "parent_matrix", mat.shape)

    @cached_property
    def dropped_edges(self) -> np.ndarray:
        """(child, parent) pairs with D̂ > τ that were dropped to break cycles, int64 [k, 2]."""
        return _frozen(self._edges[3], np.int64, "dropped_edges")

    @cached_property
    def _parent_ptr(self) -> np.ndarray:
        child = self._edges[0]
        return np.searchsorted(child, np.arange(self.n_concepts + 1))

    def parents_of(self, i: int) -> list[int]:
        """All parents of concept ``i``, best first (D̂ descending, ties as in the display tree)."""
        lo, hi = self._parent_ptr[i], self._parent_ptr[i + 1]
        return self._edges[1][lo:hi].tolist()

    def parent_scores(self, i: int) -> list[tuple[int, float]]:
        """``(parent, D̂_i,parent)`` for every parent of ``i``, in :meth:`parents_of` order."""
        lo, hi = self._parent_ptr[i], self._parent_ptr[i + 1]
        return list(zip(self._edges[1][lo:hi].tolist(), self._edges[2][lo:hi].tolist()))

    @cached_property
    def display_parent(self) -> np.ndarray:
        """The display-tree parent of every concept, int64 [m], −1 for roots."""
        child, parent, _, _ = self._edges
        out = np.full(self.n_concepts, -1, dtype=np.int64)
        first = self._parent_ptr[:-1][np.diff(self._parent_ptr) > 0]
        out[child[first]] = parent[first]
        return _frozen(out, np.int64, "display_parent")

    @cached_property
    def _children(self) -> tuple[np.ndarray, np.ndarray]:
        dp = self.display_parent
        kids = np.flatnonzero(dp >= 0)
        kids = kids[np.argsort(dp[kids], kind="stable")]  # grouped by parent, ascending index inside
        ptr = np.searchsorted(dp[kids], np.arange(self.n_concepts + 1))
        return ptr, kids

    def children_of(self, i: int) -> list[int]:
        """Children of ``i`` in the display tree, ascending concept index."""
        ptr, kids = self._children
        return kids[ptr[i]:ptr[i + 1]].tolist()

    @cached_property
    def roots(self) -> np.ndarray:
        """Concepts without a parent (display-tree roots), ascending; includes concepts that never fired."""
        return _frozen(np.flatnonzero(self.display_parent < 0), np.int64, "roots")

    # ------------------------------------------------------------------------------- μ
    @cached_property
    def n_top_found(self) -> np.ndarray:
        """How many top tokens each concept has (≤ top_n), int64 [m]."""
        return _frozen((self.top_tokens >= 0).sum(axis=1), np.int64, "n_top_found")

    @cached_property
    def mu(self) -> sp.csr_matrix:
        """μ_i = mean code over concept i's ``top_n`` top-token slots, CSR [m, m] float64 (empty rows:
        never fired).

        The sum is divided by ``top_n`` (30), not by the tokens found, as the reference does: it
        averages a fixed [m, 30, m] table, whose slots a rare concept cannot fill with tokens where
        it fires. Those slots count as zero codes here (see docs/method.md, "Departures").
        """
        m, n = self.n_concepts, self.top_n
        valid = self.top_tokens.ravel() >= 0
        rows = np.repeat(np.arange(m), n)[valid]
        weight = np.full(rows.size, 1.0 / n)
        averaging = sp.csr_matrix((weight, (rows, np.flatnonzero(valid))), shape=(m, m * n))
        mu = (averaging @ self.top_codes.astype(np.float64)).tocsr()
        mu.sum_duplicates()
        mu.sort_indices()
        return _frozen_csr(mu, np.float64, "mu", (m, m))

    # ------------------------------------------------------------------------------ files
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Flat arrays and JSON-able metadata; :meth:`from_arrays` inverts it exactly."""
        return relations_to_arrays(self)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> "Relations":
        return relations_from_arrays(arrays, metadata)

    def save(self, path: str | Path) -> Path:
        """One safetensors file, written atomically."""
        arrays, metadata = relations_to_arrays(self)
        return write_safetensors(path, [LazyTensor.of(k, v) for k, v in arrays.items()],
                                 {_META_KEY: json.dumps(metadata, sort_keys=True)})

    @classmethod
    def load(cls, path: str | Path) -> "Relations":
        """Read a file written by :meth:`save`; :class:`RelationsError` when it is missing or damaged."""
        return load_relations(path)

    def summary(self) -> str:
        alive = int((self.f > 0).sum())
        n_edges = int(self._edges[0].size)
        return (f"{self.n_tokens:,} tokens, {alive}/{self.n_concepts} concepts fired, "
                f"C/D non-zeros {self.D.nnz:,}, {n_edges:,} parent edges (τ = {self.tau}), "
                f"{int((self.display_parent >= 0).sum())} concepts under a parent, {self.roots.size} roots")


def _frozen(arr: Any, dtype, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``arr`` as a contiguous, read-only array of ``dtype`` (converted only when needed).

    Relations takes ownership of the arrays it is given instead of copying them: C, D and the
    top-token codes can be hundreds of MB. Values cross threads, so nobody may write to them.
    """
    out = np.ascontiguousarray(arr, dtype=dtype)
    if shape is not None and out.shape != tuple(shape):
        raise RelationsError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    out.flags.writeable = False
    return out


def _frozen_csr(mat: Any, dtype, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """A canonical (sorted, duplicate-free), read-only CSR matrix with ``dtype`` values."""
    if not sp.issparse(mat):
        raise RelationsError(f"{name} must be a scipy sparse matrix, not {type(mat).__name__}")
    if mat.shape != tuple(shape):
        raise RelationsError(f"{name} has shape {mat.shape}, expected {tuple(shape)}")
    mat = sp.csr_matrix(mat, dtype=dtype)  # shares the arrays when they already fit
    try:
        mat.check_format(full_check=True)
    except ValueError as exc:
        raise RelationsError(f"{name} is not a valid CSR matrix: {exc}") from exc
    mat.sum_duplicates()  # also sorts indices; a no-op for canonical input
    for arr in (mat.data, mat.indices, mat.indptr):
        arr.flags.writeable = False
    return mat


# ----------------------------------------------------------------------------- the file
def _csr_parts(prefix: str, mat: sp.csr_matrix) -> dict[str, np.ndarray]:
    # np.asarray: no copy when the index arrays already have the stored dtype.
    return {f"{prefix}.indptr": np.asarray(mat.indptr, dtype=np.int64),
            f"{prefix}.indices": np.asarray(mat.indices, dtype=np.int32), f"{prefix}.data": mat.data}


def relations_to_arrays(rel: Relations) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {"f": rel.f, "top_tokens": rel.top_tokens, "top_values": rel.top_values}
    arrays.update(_csr_parts("D", rel.D))
    arrays.update(_csr_parts("top_codes", rel.top_codes))
    same_pattern = (rel.C.nnz == rel.D.nnz and np.array_equal(rel.C.indptr, rel.D.indptr)
                    and np.array_equal(rel.C.indices, rel.D.indices))
    arrays.update({"C.data": rel.C.data} if same_pattern else _csr_parts("C", rel.C))
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_concepts": rel.n_concepts,
                "n_tokens": rel.n_tokens, "group_ends": list(rel.group_ends), "tau": rel.tau, "eps": rel.eps,
                "top_n": rel.top_n, "provenance": dict(rel.provenance)}
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata


def relations_from_arrays(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> Relations:
    if not isinstance(metadata, Mapping):
        raise RelationsError(f"relations metadata must be a JSON object, not {type(metadata).__name__}")
    if metadata.get("format") != FORMAT:
        raise RelationsError(f"not an Insight relations file (format {str(metadata.get('format'))[:80]!r})")
    try:
        if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
            raise RelationsError(f"relations file format {metadata['format_version']} was written by a newer "
                                 f"Insight Desktop (this version reads up to {FORMAT_VERSION})")
        m, top_n = int(metadata["n_concepts"]), int(metadata["top_n"])
        if m <= 0 or top_n <= 0:
            raise RelationsError(f"relations data claims {m} concepts and {top_n} top tokens per concept")
        _check_kinds(arrays)
        D = _csr("D", arrays, (m, m))
        if "C.indptr" in arrays:
            C = _csr("C", arrays, (m, m))
        else:
            C = sp.csr_matrix((arrays["C.data"], D.indices, D.indptr), shape=(m, m))
        codes = _csr("top_codes", arrays, (m * top_n, m))
        provenance = metadata.get("provenance") or {}
        if not isinstance(provenance, Mapping):
            raise RelationsError("relations provenance must be a JSON object")
        return Relations(n_concepts=m, n_tokens=int(metadata["n_tokens"]), group_ends=tuple(metadata["group_ends"]),
                         f=arrays["f"], C=C, D=D, top_tokens=arrays["top_tokens"], top_values=arrays["top_values"],
                         top_codes=codes, tau=float(metadata["tau"]), eps=float(metadata["eps"]),
                         provenance=provenance)
    except KeyError as exc:
        raise RelationsError(f"relations data is incomplete: {exc.args[0]!r} is missing") from exc
    except (ValueError, TypeError, IndexError, OverflowError, AttributeError) as exc:
        # numpy and scipy say "inconsistent" in these types (a wrong shape, dtype or index)
        raise RelationsError(f"relations data is inconsistent: {exc}") from exc


#: the kind of number each stored array holds (i: integer, f: floating point); a file whose arrays
#: differ was not written by :func:`relations_to_arrays` and would be cast into nonsense silently
_KINDS = {"f": "i", "top_tokens": "i", "top_values": "f", "C.data": "i", "D.data": "f", "top_codes.data": "f"}


def _check_kinds(arrays: Mapping[str, np.ndarray]) -> None:
    for name, arr in arrays.items():
        kind = _KINDS.get(name, "i" if name.endswith((".indptr", ".indices")) else None)
        if kind is not None and np.asarray(arr).dtype.kind not in (kind, "u" if kind == "i" else kind):
            raise RelationsError(f"array {name!r} holds {np.asarray(arr).dtype} values, expected "
                                 f"{'integers' if kind == 'i' else 'floating-point numbers'}")
    f = arrays.get("f")
    if f is not None and np.asarray(f).size and np.asarray(f).min() < 0:
        raise RelationsError("firing counts 'f' must not be negative")


def _csr(prefix: str, arrays: Mapping[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    indptr, indices, data = (arrays[f"{prefix}.{p}"] for p in ("indptr", "indices", "data"))
    if indptr.ndim != 1 or indptr.size != shape[0] + 1:
        raise RelationsError(f"{prefix}: indptr has {indptr.size} entries, expected {shape[0] + 1}")
    if indices.size != data.size or (indptr.size and indptr[-1] != data.size):
        raise RelationsError(f"{prefix}: {indices.size} indices, {data.size} values, indptr ends at {indptr[-1]}")
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def load_relations(path: str | Path) -> Relations:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise RelationsError(f"relations file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="np") as fh:
            raw = (fh.metadata() or {}).get(_META_KEY)
            if raw is None:
                raise RelationsError(f"'{path}' is a safetensors file but holds no Insight relations")
            arrays = dict(SafetensorsReader(fh))
    except (SafetensorError, OSError) as exc:
        raise RelationsError(f"relations file '{path}' is truncated or damaged: {exc}") from exc
    from .bundle_schema import check_relations_metadata

    metadata = check_relations_metadata(raw, f"relations file '{path}': metadata", RelationsError)
    try:
        return relations_from_arrays(arrays, metadata)
    except RelationsError as exc:
        raise RelationsError(f"relations file '{path}': {exc}") from exc
