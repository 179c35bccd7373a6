"""Streaming sparse sums C_ij = Σ_t A_i A_j and D_ij = Σ_t z_i A_j (docs/method.md §4) in memory ∝ nnz.

How the sums are kept, and why:

* **One product for both.** With ``Z̃ = z + 1j`` on the active entries of a chunk of tokens
  (CSR ``[n, m]``), ``Aᵀ Z̃ = Dᵀ + 1j·C``: both sums run over tokens where *both* concepts fire,
  so they share one sparsity pattern by construction. scipy's SpGEMM costs O(Σ_t k_t²) with an
  O(m) scratch row, never O(m²). Converting the product to CSC gives ``D + 1j·C`` as CSR with
  sorted columns (a counting sort), which keeps scipy's fast merge path. The count in the
  imaginary part is ≥ 1, so no entry ever cancels and disappears in a merge.
* **Chunks.** Incoming batches are buffered to ``chunk_tokens`` tokens before the product:
  pairs that repeat within a chunk are summed by the product itself, which shrinks what has to
  be merged later.
* **Pending levels** (the binary-counter scheme): a chunk's matrix is added to the top pending
  level while that level is at most twice its size. Each entry takes part in O(log) small merges.
* **Main matrix in row blocks.** When the pending levels hold ``flush_ratio`` × the main
  matrix's entries, they are added into the main matrix one row block at a time. Memory is the
  main matrix + the pending levels + one block (not two copies of everything, as adding whole
  matrices would need), and a large corpus, whose pairs have mostly been seen already, rarely
  triggers a flush.

All additions happen in a fixed order, and :meth:`state_tensors` saves every level and block as
it is, so a resumed pass ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from .relations_codes import RelationsError, SparseCodes
from .relations_io import LazyTensor


@lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only; absent on musl
    except (OSError, AttributeError):
        return None


def return_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's ``malloc_trim``; a no-op elsewhere).

    Merging replaces matrices of a few MB to a few hundred MB. glibc serves the smaller ones
    from its heap and keeps the holes they leave mapped, which at the reference size adds a few
    hundred MB of *free* memory to the resident size of the pass.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _empty(rows: int, cols: int) -> sp.csr_matrix:
    return sp.csr_matrix((rows, cols), dtype=np.complex128)


def _row_slice(x: sp.csr_matrix, r0: int, r1: int) -> sp.csr_matrix:
    """Rows ``r0:r1`` of a CSR matrix as views (scipy's slicing would copy them)."""
    lo, hi = int(x.indptr[r0]), int(x.indptr[r1])
    return sp.csr_matrix((x.data[lo:hi], x.indices[lo:hi], x.indptr[r0:r1 + 1] - lo), shape=(r1 - r0, x.shape[1]))


class PairSums:
    """``D + 1j·C`` accumulated over chunks of sparse codes (see the module docstring)."""

    def __init__(self, n_concepts: int, *, chunk_tokens: int = 32768, row_blocks: int = 32,
                 flush_ratio: float = 0.25, min_flush_nnz: int = 1 << 22):
        self.n_concepts = m = int(n_concepts)
        self.chunk_tokens, self.flush_ratio, self.min_flush_nnz = int(chunk_tokens), float(flush_ratio), int(min_flush_nnz)
        self.bounds = np.linspace(0, m, max(1, min(int(row_blocks), m)) + 1).round().astype(np.int64)
        self._main = [_empty(int(r1 - r0), m) for r0, r1 in zip(self.bounds[:-1], self.bounds[1:])]
        self._pending: list[sp.csr_matrix] = []
        self._buffer: list[SparseCodes] = []
        self._buffer_tokens = 0
        self._released = False

    # ---------------------------------------------------------------------------- adding
    def add(self, codes: SparseCodes) -> None:
        """Add a batch of codes (entries must already be the active ones, z > ε)."""
        if self._released:
            raise RuntimeError("these sums were released by matrices(release=True)")
        if codes.nnz == 0:
            return
        self._buffer.append(codes)
        self._buffer_tokens += codes.n_tokens
        if self._buffer_tokens >= self.chunk_tokens:
            self._push(self._buffer_product())
            self._buffer, self._buffer_tokens = [], 0

    def _buffer_product(self) -> sp.csr_matrix:
        codes = SparseCodes.concat(self._buffer)
        shape = (codes.n_tokens, self.n_concepts)
        a = sp.csr_matrix((np.ones(codes.nnz), codes.indices, codes.indptr), shape=shape)
        zc = sp.csr_matrix((codes.values.astype(np.float64) + 1j, codes.indices, codes.indptr), shape=shape)
        dt = (a.T.tocsr() @ zc).tocsc()  # (Aᵀ Z̃) in CSC is (Z̃ᵀ A) = D + 1j·C in CSR, sorted columns
        return sp.csr_matrix((dt.data, dt.indices, dt.indptr), shape=(self.n_concepts, self.n_concepts))

    def _push(self, x: sp.csr_matrix) -> None:
        while self._pending and self._pending[-1].nnz <= 2 * x.nnz:
            x = self._pending.pop() + x
        self._pending.append(x)
        if sum(p.nnz for p in self._pending) >= max(self.flush_ratio * self.main_nnz, self.min_flush_nnz):
            self._fold(self._pending, replace=True)
            self._pending = []
        return_free_memory()

    def _fold(self, parts: list[sp.csr_matrix], replace: bool) -> list[sp.csr_matrix]:
        """Main blocks plus ``parts``, block by block; stored back when ``replace``."""
        out = []
        for b, (r0, r1) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            total = self._main[b]
            for p in parts:
                total = total + _row_slice(p, int(r0), int(r1))
            if replace:
                self._main[b] = total
            out.append(total)
        return out

    # ---------------------------------------------------------------------------- results
    @property
    def main_nnz(self) -> int:
        return sum(x.nnz for x in self._main)

    def matrices(self, release: bool = False) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(C int64, D float64)`` as canonical CSR [m, m] sharing one index structure.

        With ``release`` the sums are consumed: each block is freed as soon as it is copied out,
        so the peak is one copy of the result plus one block (instead of two full copies).
        """
        parts = list(self._pending)
        if self._buffer:
            parts.append(self._buffer_product())
        blocks = self._fold(parts, replace=release)
        del parts
        if release:
            self._pending, self._buffer, self._released = [], [], True
        nnz = sum(x.nnz for x in blocks)
        m = self.n_concepts
        indptr = np.zeros(m + 1, dtype=np.int64)
        indices = np.empty(nnz, dtype=np.int32)
        c_data, d_data = np.empty(nnz, dtype=np.int64), np.empty(nnz, dtype=np.float64)
        pos = 0
        for b, (r0, r1) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            x, n = blocks[b], blocks[b].nnz
            indptr[r0 + 1:r1 + 1] = x.indptr[1:] + pos
            indices[pos:pos + n] = x.indices
            c_data[pos:pos + n] = np.rint(x.data.imag)
            d_data[pos:pos + n] = x.data.real
            pos += n
            blocks[b] = x = None
            if release:
                self._main[b] = None
                return_free_memory()  # the block's memory, before the next block's copy needs pages
        shape = (m, m)
        return sp.csr_matrix((c_data, indices, indptr), shape=shape), sp.csr_matrix((d_data, indices, indptr), shape=shape)

    def memory_bytes(self) -> int:
        mats = [x for x in self._main if x is not None] + self._pending
        total = sum(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes for x in mats)
        return total + sum(c.indptr.nbytes + c.indices.nbytes + c.values.nbytes for c in self._buffer)

    # ------------------------------------------------------------------------------ state
    def state_tensors(self, prefix: str = "pairs.") -> list[LazyTensor]:
        """Every block, pending level and the chunk buffer, each array produced only when written."""
        if self._released:
            raise RuntimeError("these sums were released by matrices(release=True)")
        out = [LazyTensor.of(prefix + "bounds", self.bounds),
               LazyTensor.of(prefix + "levels", np.array([len(self._pending)], dtype=np.int64))]
        mats = [(f"main.{b}.", x) for b, x in enumerate(self._main)] + \
               [(f"pending.{k}.", x) for k, x in enumerate(self._pending)]
        for name, x in mats:
            p, n = prefix + name, x.nnz
            out += [LazyTensor(p + "indptr", np.dtype(np.int64), (x.shape[0] + 1,), lambda x=x: x.indptr.astype(np.int64)),
                    LazyTensor(p + "indices", np.dtype(np.int32), (n,), lambda x=x: x.indices.astype(np.int32)),
                    LazyTensor(p + "C", np.dtype(np.int64), (n,), lambda x=x: np.rint(x.data.imag).astype(np.int64)),
                    LazyTensor(p + "D", np.dtype(np.float64), (n,), lambda x=x: np.ascontiguousarray(x.data.real))]
        buf = SparseCodes.concat(self._buffer) if self._buffer else SparseCodes.empty(self.n_concepts)
        out += [LazyTensor.of(prefix + "buffer.indptr", buf.indptr), LazyTensor.of(prefix + "buffer.indices", buf.indices),
                LazyTensor.of(prefix + "buffer.values", buf.values)]
        return out

    def load_state(self, state: Mapping[str, np.ndarray], prefix: str = "pairs.") -> None:
        """Restore :meth:`state_tensors`; reads one block at a time from a lazy ``state``."""
        m = self.n_concepts
        bounds = np.asarray(state[prefix + "bounds"], dtype=np.int64)
        if bounds.ndim != 1 or bounds.size < 2 or bounds[0] != 0 or bounds[-1] != m or np.any(np.diff(bounds) < 0):
            raise RelationsError("relations state: the row blocks of the pair sums are inconsistent")

        def matrix(name: str, rows: int) -> sp.csr_matrix:
            p = prefix + name
            data = state[p + "D"].astype(np.float64) + 1j * state[p + "C"].astype(np.float64)
            try:
                x = sp.csr_matrix((data, state[p + "indices"], state[p + "indptr"]), shape=(rows, m))
                x.check_format(full_check=True)
            except ValueError as exc:
                raise RelationsError(f"relations state: {p[:-1]} is inconsistent: {exc}") from exc
            return x

        main = [matrix(f"main.{b}.", int(r1 - r0)) for b, (r0, r1) in enumerate(zip(bounds[:-1], bounds[1:]))]
        levels = int(np.asarray(state[prefix + "levels"]).reshape(-1)[0])
        pending = [matrix(f"pending.{k}.", m) for k in range(levels)]
        buf = SparseCodes(state[prefix + "buffer.indptr"], state[prefix + "buffer.indices"],
                          state[prefix + "buffer.values"], m)
        self.bounds, self._main, self._pending = bounds, main, pending
        self._buffer = [buf] if buf.nnz else []
        self._buffer_tokens = buf.n_tokens if buf.nnz else 0
        self._released = False
