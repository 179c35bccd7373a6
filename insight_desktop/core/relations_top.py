"""Per-concept top tokens (docs/method.md §4: the 30 tokens with the largest z_i) with their code vectors.

A fixed table ``[m, top_n]`` of (value, global token id), sorted by value descending, ties by the
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

import numpy as np
import scipy.sparse as sp

from .relations_codes import RelationsError, SparseCodes, ragged_arange
from .relations_io import LazyTensor

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
            c_conc, c_val, c_tok, c_row, group, within = (a[first] for a in (c_conc, c_val, c_tok, c_row, group, within))

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
