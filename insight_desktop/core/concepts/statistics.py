"""The two streaming statistics of a relation pass (docs/method.md §4), in memory ∝ their non-zeros:

* :class:`PairSums` — C_ij = Σ_t A_i A_j and D_ij = Σ_t z_i A_j;
* :class:`TopTokenTable` — the ``top_n`` tokens of every concept (largest z_i) with their codes.

Both are vectorised over a whole batch (no Python loop over tokens or concepts), save their state
as named arrays and resume bit-identically. :class:`~.compute.RelationsAccumulator` combines them.

**Pair sums**, how they are kept and why:

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

All additions happen in a fixed order, and :meth:`PairSums.state_tensors` saves every level and
block as it is, so a resumed pass ends bit-identical to an uninterrupted one.

**Top tokens**: a fixed table ``[m, top_n]`` of (value, global token id), sorted by value descending, ties by the
smaller token id — so the table does not depend on how the stream is cut into batches.

Per batch only entries at least as large as their concept's current ``top_n``-th value are
candidates (after warm-up a small fraction). Candidates are ranked within their concept by one
small lexsort and merged into the table rows by *counting* (no re-sort of the table): a
candidate's final rank is the number of table entries plus the number of candidates that beat
it; a table entry moves down by the number of candidates inserted at or above it.

The codes of table tokens live in a shared pool (CSR rows referenced by offset and length): a
token that is top for several of its concepts is stored once. The pool is compacted (codes no
slot references any more are dropped) when it runs full.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from ..safetensors_io import LazyTensor
from .codes import SparseCodes, ragged_arange
from .relations import RelationsError


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


def _block_tensors(p: str, x: sp.csr_matrix) -> list[LazyTensor]:
    """One block of pair sums (``D + 1j·C``) as four arrays, each produced only when it is written."""
    n = x.nnz
    return [LazyTensor(p + "indptr", np.dtype(np.int64), (x.shape[0] + 1,), lambda: x.indptr.astype(np.int64)),
            LazyTensor(p + "indices", np.dtype(np.int32), (n,), lambda: x.indices.astype(np.int32)),
            LazyTensor(p + "C", np.dtype(np.int64), (n,), lambda: np.rint(x.data.imag).astype(np.int64)),
            LazyTensor(p + "D", np.dtype(np.float64), (n,), lambda: np.ascontiguousarray(x.data.real))]


class PairSums:
    """``D + 1j·C`` accumulated over chunks of sparse codes (see "Pair sums" in the module docstring)."""

    def __init__(self, n_concepts: int, *, chunk_tokens: int = 32768, row_blocks: int = 32,
                 flush_ratio: float = 0.25, min_flush_nnz: int = 1 << 22):
        self.n_concepts = m = int(n_concepts)
        self.chunk_tokens, self.flush_ratio = int(chunk_tokens), float(flush_ratio)
        self.min_flush_nnz = int(min_flush_nnz)
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
        return (sp.csr_matrix((c_data, indices, indptr), shape=shape),
                sp.csr_matrix((d_data, indices, indptr), shape=shape))

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
            out += _block_tensors(prefix + name, x)
        buf = SparseCodes.concat(self._buffer) if self._buffer else SparseCodes.empty(self.n_concepts)
        out += [LazyTensor.of(prefix + "buffer.indptr", buf.indptr),
                LazyTensor.of(prefix + "buffer.indices", buf.indices),
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


# ----------------------------------------------------------------------------- top tokens
#: smallest capacity of the shared code pool (entries)
_MIN_POOL = 1 << 16


class TopTokenTable:
    """The ``top_n`` best tokens of each of ``n_concepts`` concepts, and their codes."""

    def __init__(self, n_concepts: int, top_n: int):
        self.n_concepts, self.top_n = int(n_concepts), int(top_n)
        m, n = self.n_concepts, self.top_n
        self.top_values = np.full((m, n), -np.inf, dtype=np.float32)
        self.top_tokens = np.full((m, n), -1, dtype=np.int64)
        self._slot_ptr = np.zeros((m, n), dtype=np.int64)  # where each slot's code starts in the pool
        self._slot_len = np.zeros((m, n), dtype=np.int32)  # 0 for empty slots
        self._pool_idx = np.zeros(_MIN_POOL, dtype=np.int32)
        self._pool_val = np.zeros(_MIN_POOL, dtype=np.float32)
        self._pool_used = 0

    def update(self, codes: SparseCodes, token_ids: np.ndarray) -> None:
        """Merge the entries of one batch (global ids ``token_ids``) into the table."""
        n_top = self.top_n
        conc, val = codes.indices.astype(np.int64), codes.values
        # Only entries that can still enter their concept's table: ≥ its current last value
        # (−inf while the table is not full). Equal values are decided by token id below.
        cand = np.flatnonzero(val >= self.top_values[conc, n_top - 1])
        if cand.size == 0:
            return
        c_row = np.searchsorted(codes.indptr, cand, side="right") - 1
        c_conc, c_val, c_tok = conc[cand], val[cand], token_ids[c_row]
        order = np.lexsort((c_tok, -c_val, c_conc))  # candidates ranked within each concept
        c_conc, c_val, c_tok, c_row = c_conc[order], c_val[order], c_tok[order], c_row[order]
        start = np.flatnonzero(np.r_[True, c_conc[1:] != c_conc[:-1]])
        touched = c_conc[start]
        group = np.repeat(np.arange(touched.size), np.diff(np.r_[start, c_conc.size]))
        within = np.arange(c_conc.size) - start[group]
        if within.max() >= n_top:  # a concept's candidates beyond its n-th can never enter
            first = np.flatnonzero(within < n_top)
            c_conc, c_val, c_tok, c_row, group, within = (a[first] for a in
                                                          (c_conc, c_val, c_tok, c_row, group, within))

        # Merge two sorted lists without re-sorting the table: a candidate's final rank is the
        # number of table entries that beat it plus the number of candidates that do; a table
        # entry moves down by the number of candidates inserted at or above its position.
        old_v, old_t = self.top_values[touched], self.top_tokens[touched]       # [u, N]
        ov, ot = old_v[group], old_t[group]                                      # [K, N]
        beaten_by = (ov > c_val[:, None]) | ((ov == c_val[:, None]) & (ot < c_tok[:, None]))
        ins = beaten_by.sum(axis=1)        # −inf padding never beats anything
        new_rank = ins + within
        hist = np.bincount(group * (n_top + 1) + ins, minlength=touched.size * (n_top + 1))
        shift = np.cumsum(hist.reshape(touched.size, n_top + 1), axis=1)[:, :n_top]
        old_rank = np.arange(n_top) + shift
        ou, oc = np.nonzero((old_t >= 0) & (old_rank < n_top))
        od = old_rank[ou, oc]

        rows_v = np.full((touched.size, n_top), -np.inf, dtype=np.float32)
        rows_t = np.full((touched.size, n_top), -1, dtype=np.int64)
        rows_p = np.zeros((touched.size, n_top), dtype=np.int64)
        rows_l = np.zeros((touched.size, n_top), dtype=np.int32)
        rows_v[ou, od], rows_t[ou, od] = old_v[ou, oc], old_t[ou, oc]
        rows_p[ou, od], rows_l[ou, od] = self._slot_ptr[touched][ou, oc], self._slot_len[touched][ou, oc]
        keep = np.flatnonzero(new_rank < n_top)
        ng, nr = group[keep], new_rank[keep]
        rows_v[ng, nr], rows_t[ng, nr] = c_val[keep], c_tok[keep]
        # New entries get length 0 until their codes are in the pool (compaction skips them).
        self.top_values[touched], self.top_tokens[touched] = rows_v, rows_t
        self._slot_ptr[touched], self._slot_len[touched] = rows_p, rows_l
        if keep.size == 0:
            return

        # Codes of the newly entered tokens: each batch row is copied into the pool once.
        u_rows, inv = np.unique(c_row[keep], return_inverse=True)
        u_len = np.diff(codes.indptr)[u_rows]
        self._ensure_pool_room(int(u_len.sum()))
        src = ragged_arange(codes.indptr[u_rows], u_len)
        begin = self._pool_used
        self._pool_idx[begin:begin + src.size] = codes.indices[src]
        self._pool_val[begin:begin + src.size] = codes.values[src]
        self._pool_used += src.size
        u_ptr = begin + np.cumsum(u_len) - u_len
        slots = touched[ng] * n_top + nr
        self._slot_ptr.ravel()[slots] = u_ptr[inv]
        self._slot_len.ravel()[slots] = u_len[inv]

    def _ensure_pool_room(self, need: int) -> None:
        if self._pool_used + need <= self._pool_idx.size:
            return
        # Compact: keep only codes some slot still references, grow when that is still too full.
        live_ptr, live_len, inv = self._live_codes()
        src = ragged_arange(live_ptr, live_len)
        cap = max(_MIN_POOL, self._pool_idx.size)
        while src.size + need > cap // 2:
            cap *= 2
        pool_idx, pool_val = np.zeros(cap, np.int32), np.zeros(cap, np.float32)
        pool_idx[:src.size], pool_val[:src.size] = self._pool_idx[src], self._pool_val[src]
        self._pool_idx, self._pool_val, self._pool_used = pool_idx, pool_val, src.size
        live = self._slot_len.ravel() > 0
        self._slot_ptr.ravel()[live] = (np.cumsum(live_len) - live_len)[inv]

    def _live_codes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct (pointer, length) among used slots and, per used slot, its index among them."""
        live = self._slot_len.ravel() > 0
        u_ptr, first, inv = np.unique(self._slot_ptr.ravel()[live], return_index=True, return_inverse=True)
        return u_ptr, self._slot_len.ravel()[live][first].astype(np.int64), inv

    def top_codes(self) -> sp.csr_matrix:
        """Codes of the table tokens as CSR [m·top_n, m] float32 (row c·top_n + r = rank r of concept c)."""
        length = self._slot_len.ravel().astype(np.int64)
        src = ragged_arange(self._slot_ptr.ravel(), length)
        indptr = np.zeros(length.size + 1, dtype=np.int64)
        np.cumsum(length, out=indptr[1:])
        return sp.csr_matrix((self._pool_val[src], self._pool_idx[src], indptr),
                             shape=(length.size, self.n_concepts))

    # ---------------------------------------------------------------------------- state
    def state_tensors(self, prefix: str = "top.") -> list[LazyTensor]:
        codes = self.top_codes()
        return [LazyTensor.of(prefix + "values", self.top_values), LazyTensor.of(prefix + "tokens", self.top_tokens),
                LazyTensor.of(prefix + "codes.indptr", codes.indptr.astype(np.int64)),
                LazyTensor.of(prefix + "codes.indices", codes.indices.astype(np.int32)),
                LazyTensor.of(prefix + "codes.values", codes.data.astype(np.float32))]

    def load_state(self, state, prefix: str = "top.") -> None:
        m, n = self.n_concepts, self.top_n
        values = np.asarray(state[prefix + "values"], dtype=np.float32)
        tokens = np.asarray(state[prefix + "tokens"], dtype=np.int64)
        if values.shape != (m, n) or tokens.shape != (m, n):
            raise RelationsError(f"relations state: top-token tables have shape {values.shape}, expected {(m, n)}")
        try:
            codes = sp.csr_matrix((state[prefix + "codes.values"], state[prefix + "codes.indices"],
                                   state[prefix + "codes.indptr"]), shape=(m * n, m))
            codes.check_format(full_check=True)
        except ValueError as exc:
            raise RelationsError(f"relations state: top-token codes are inconsistent: {exc}") from exc
        lengths = np.diff(codes.indptr)
        if np.any((lengths > 0) != (tokens.ravel() >= 0)):
            raise RelationsError("relations state: top-token codes do not match the top-token table")
        self.top_values, self.top_tokens = values.copy(), tokens.copy()
        cap = max(_MIN_POOL, 2 * codes.nnz)
        self._pool_idx, self._pool_val = np.zeros(cap, np.int32), np.zeros(cap, np.float32)
        self._pool_idx[:codes.nnz], self._pool_val[:codes.nnz] = codes.indices, codes.data
        self._pool_used = codes.nnz
        self._slot_ptr = codes.indptr[:-1].astype(np.int64).reshape(m, n).copy()
        self._slot_len = lengths.astype(np.int32).reshape(m, n)

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.top_values, self.top_tokens, self._slot_ptr, self._slot_len,
                                      self._pool_idx, self._pool_val))
