"""Sparse concept codes (CSR over tokens) and the small vectorised helpers the relation pass shares.

An SAE code has ``k ≈ 12`` active concepts out of ``m = 8192`` per token, so a batch is held as
CSR: ``indptr`` [n+1], ``indices`` [nnz], ``values`` [nnz]. Everything downstream (co-occurrence,
top tokens, μ) works on these arrays without ever forming an [n, m] matrix on the CPU side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

#: docs/method.md §4: a concept is *active* on a token when its code exceeds ε.
DEFAULT_EPS = 1e-3


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + l) for s, l in zip(starts, lengths)])`` without a Python loop.

    >>> ragged_arange(np.array([5, 0]), np.array([2, 3])).tolist()
    [5, 6, 0, 1, 2]
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - out_offsets, lengths) + np.arange(total, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class SparseCodes:
    """Concept codes of ``n`` tokens in canonical CSR form (columns strictly increasing per row).

    Only entries above ε are stored, so "stored" and "active" mean the same thing. The canonical
    form is checked on construction (one O(nnz) pass): duplicated concepts in a row would
    silently double-count co-occurrences.
    """

    indptr: np.ndarray   # int64 [n + 1]
    indices: np.ndarray  # int32 [nnz], concept ids
    values: np.ndarray   # float32 [nnz], codes z > ε
    n_concepts: int

    def __post_init__(self) -> None:
        indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(self.indices, dtype=np.int32)
        values = np.ascontiguousarray(self.values, dtype=np.float32)
        m = int(self.n_concepts)
        for name, arr in (("indptr", indptr), ("indices", indices), ("values", values)):
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "n_concepts", m)
        if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0:
            raise ValueError("SparseCodes.indptr must be a 1-d array starting at 0")
        if indices.shape != values.shape or indices.ndim != 1 or indptr[-1] != indices.size:
            raise ValueError(f"SparseCodes: indptr ends at {indptr[-1]} but there are {indices.size} indices "
                             f"and {values.size} values")
        if np.any(np.diff(indptr) < 0):
            raise ValueError("SparseCodes.indptr must be non-decreasing")
        if indices.size:
            if indices.min() < 0 or indices.max() >= m:
                raise ValueError(f"SparseCodes: concept ids must lie in 0..{m - 1}")
            keys = self.row_ids() * m + indices
            if np.any(np.diff(keys) <= 0):
                raise ValueError("SparseCodes: concept ids must be strictly increasing within each token "
                                 "(no duplicates); use from_topk to sort them")

    # ------------------------------------------------------------------------------ facts
    @property
    def n_tokens(self) -> int:
        return self.indptr.size - 1

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def row_ids(self) -> np.ndarray:
        """Token (row) number of every stored entry, int64 [nnz]."""
        return np.repeat(np.arange(self.n_tokens, dtype=np.int64), np.diff(self.indptr))

    # ------------------------------------------------------------------------- builders
    @classmethod
    def empty(cls, n_concepts: int) -> "SparseCodes":
        return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), n_concepts)

    @classmethod
    def from_dense(cls, z: Any, eps: float = DEFAULT_EPS) -> "SparseCodes":
        """Keep the entries ``z > eps`` of a dense [n, m] code matrix (numpy array or torch tensor).

        A torch tensor is sparsified where it lives (e.g. on the GPU), so only the few non-zeros
        cross to the CPU instead of the whole [n, m] matrix.
        """
        if hasattr(z, "detach"):  # torch.Tensor, without importing torch for numpy callers
            return cls._from_torch(z, eps)
        z = np.asarray(z)
        if z.ndim != 2:
            raise ValueError(f"expected codes of shape [n, m], got {z.shape}")
        rows, cols = np.nonzero(z > eps)  # row-major order: already canonical
        counts = np.bincount(rows, minlength=z.shape[0])
        indptr = np.zeros(z.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, cols, z[rows, cols], z.shape[1])

    @classmethod
    def _from_torch(cls, z, eps: float) -> "SparseCodes":
        import torch

        z = z.detach()
        if z.dim() != 2:
            raise ValueError(f"expected codes of shape [n, m], got {tuple(z.shape)}")
        rows, cols = torch.nonzero(z > eps, as_tuple=True)  # row-major order
        values = z[rows, cols].float()
        counts = torch.bincount(rows, minlength=z.shape[0])
        indptr = np.zeros(z.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts.cpu().numpy(), out=indptr[1:])
        return cls(indptr, cols.to(torch.int32).cpu().numpy(), values.cpu().numpy(), z.shape[1])

    @classmethod
    def from_topk(cls, indices: Any, values: Any, n_concepts: int, eps: float = DEFAULT_EPS) -> "SparseCodes":
        """Codes given as per-token top-k lists ``indices`` [n, k], ``values`` [n, k].

        Entries ``<= eps`` (padding, zeros) are dropped; the rest is sorted by concept per token.
        A concept listed twice for one token (with a value above ε) is an error.
        """
        indices, values = _as_numpy(indices), _as_numpy(values)
        if indices.shape != values.shape or indices.ndim != 2:
            raise ValueError(f"indices {indices.shape} and values {values.shape} must both be [n, k]")
        n, k = indices.shape
        keep = (values > eps).ravel()
        rows = np.repeat(np.arange(n, dtype=np.int64), k)[keep]
        cols = indices.ravel()[keep].astype(np.int64)
        vals = values.ravel()[keep]
        if cols.size and (cols.min() < 0 or cols.max() >= n_concepts):
            raise ValueError(f"from_topk: concept ids must lie in 0..{n_concepts - 1}")
        order = np.argsort(rows * n_concepts + cols, kind="stable")
        rows, cols, vals = rows[order], cols[order], vals[order]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return cls(indptr, cols, vals, n_concepts)

    @classmethod
    def concat(cls, parts: "list[SparseCodes]") -> "SparseCodes":
        """The tokens of ``parts`` one after the other."""
        if not parts:
            raise ValueError("nothing to concatenate")
        if len(parts) == 1:
            return parts[0]
        ends = np.cumsum([p.nnz for p in parts])[:-1]
        indptr = np.concatenate([parts[0].indptr] + [p.indptr[1:] + e for p, e in zip(parts[1:], ends)])
        return cls(indptr, np.concatenate([p.indices for p in parts]), np.concatenate([p.values for p in parts]),
                   parts[0].n_concepts)

    # ------------------------------------------------------------------------ conversions
    def rows(self, start: int, stop: int) -> "SparseCodes":
        """Tokens ``start:stop`` (a view-free copy of that slice)."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return SparseCodes(self.indptr[start:stop + 1] - lo, self.indices[lo:hi], self.values[lo:hi], self.n_concepts)

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.values, self.indices, self.indptr), shape=(self.n_tokens, self.n_concepts))

    def to_dense(self) -> np.ndarray:
        """[n, m] float32; for tests and small inputs only."""
        out = np.zeros((self.n_tokens, self.n_concepts), dtype=np.float32)
        out[self.row_ids(), self.indices] = self.values
        return out

    def above(self, eps: float) -> "SparseCodes":
        """The same codes with entries ``<= eps`` dropped (``self`` when there are none)."""
        keep = self.values > eps
        if keep.all():
            return self
        counts = np.bincount(self.row_ids()[keep], minlength=self.n_tokens)
        indptr = np.zeros(self.n_tokens + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return SparseCodes(indptr, self.indices[keep], self.values[keep], self.n_concepts)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
