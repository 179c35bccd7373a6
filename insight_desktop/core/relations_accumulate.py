"""Streaming accumulation of every docs/method.md §4 statistic over batches of sparse concept codes.

:class:`RelationsAccumulator` combines three parts, each vectorised over a whole batch (no
Python loop over tokens or concepts):

* firing counts ``f`` (a bincount) and the token count;
* :class:`~.relations_pairs.PairSums` — C and D as sparse matrices, memory ∝ their non-zeros;
* :class:`~.relations_top.TopTokenTable` — the ``top_n`` tokens of every concept and their codes.

Its state is a flat set of named numpy arrays (:meth:`RelationsAccumulator.state_dict`), which the
relation pass checkpoints as safetensors; resuming from it is bit-identical to not stopping.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .relations_codes import DEFAULT_EPS, RelationsError, SparseCodes
from .relations_io import LazyTensor
from .relations_pairs import PairSums
from .relations_top import TopTokenTable

STATE_FORMAT_VERSION = 1


class RelationsAccumulator:
    """Accumulates f, C, D, n_tokens and per-concept top tokens (with their codes) over a stream.

    ``update(codes, token_ids)`` may be called with batches of any size; the result is the same
    as for one batch (counts and tables exactly, D up to float64 summation order). Global token
    ids must be unique across the stream: they identify the top tokens and break ties between
    equal values (the smaller id ranks first). ``pair_options`` tune
    :class:`~.relations_pairs.PairSums` (memory/speed trade-offs, not results).
    """

    def __init__(self, n_concepts: int, top_n: int = 30, eps: float = DEFAULT_EPS, **pair_options):
        if n_concepts <= 0 or top_n <= 0:
            raise ValueError("n_concepts and top_n must be positive")
        self.n_concepts, self.top_n, self.eps = int(n_concepts), int(top_n), float(eps)
        self.n_tokens = 0
        self.f = np.zeros(self.n_concepts, dtype=np.int64)
        self._pairs = PairSums(self.n_concepts, **pair_options)
        self._top = TopTokenTable(self.n_concepts, self.top_n)

    def update(self, codes: SparseCodes, token_ids: np.ndarray) -> None:
        """Add one batch: ``codes`` of ``n`` tokens with their global ids ``token_ids`` [n]."""
        if codes.n_concepts != self.n_concepts:
            raise ValueError(f"codes have {codes.n_concepts} concepts, the accumulator {self.n_concepts}")
        token_ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if token_ids.size != codes.n_tokens:
            raise ValueError(f"{token_ids.size} token ids for {codes.n_tokens} tokens")
        codes = codes.above(self.eps)  # "active" is z > ε, whatever the producer of the codes kept
        self.n_tokens += codes.n_tokens
        if codes.nnz == 0:
            return
        self.f += np.bincount(codes.indices, minlength=self.n_concepts)
        self._pairs.add(codes)
        self._top.update(codes, token_ids)

    # ------------------------------------------------------------------------------ results
    @property
    def top_values(self) -> np.ndarray:
        return self._top.top_values

    @property
    def top_tokens(self) -> np.ndarray:
        return self._top.top_tokens

    def top_codes(self) -> sp.csr_matrix:
        """Codes of the table tokens as CSR [m·top_n, m] float32 (row c·top_n + r = rank r of concept c)."""
        return self._top.top_codes()

    def pair_matrices(self, release: bool = False) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(C int64, D float64)``, canonical CSR [m, m] with one shared sparsity pattern.

        ``release=True`` consumes the accumulator (lower peak memory); it cannot be updated or
        saved afterwards.
        """
        return self._pairs.matrices(release=release)

    def to_relations(self, group_ends: Sequence[int], tau: float = 0.75, provenance: dict | None = None,
                     release: bool = False):
        """The statistics as :class:`~insight_desktop.core.relations_model.Relations` (see
        :meth:`pair_matrices` for ``release``)."""
        from .relations_model import Relations

        c, d = self.pair_matrices(release=release)
        return Relations(n_concepts=self.n_concepts, n_tokens=self.n_tokens, group_ends=tuple(group_ends),
                         f=self.f.copy(), C=c, D=d, top_tokens=self.top_tokens.copy(),
                         top_values=self.top_values.copy(), top_codes=self.top_codes(), tau=tau, eps=self.eps,
                         provenance=dict(provenance or {}))

    def memory_bytes(self) -> int:
        """Bytes held by the accumulator's arrays (for progress reports and benchmarks)."""
        return self.f.nbytes + self._pairs.memory_bytes() + self._top.memory_bytes()

    # ---------------------------------------------------------------------------- state
    def state_tensors(self) -> list[LazyTensor]:
        """The state as named arrays, each produced only when it is written (see
        :func:`~.relations_io.write_safetensors`), so saving never holds a second full copy."""
        # Scalars as 1-element arrays: safetensors readers disagree on 0-d shapes.
        scalars = {"format_version": np.array([STATE_FORMAT_VERSION], dtype=np.int64),
                   "n_concepts": np.array([self.n_concepts], dtype=np.int64),
                   "top_n": np.array([self.top_n], dtype=np.int64),
                   "eps": np.array([self.eps], dtype=np.float64),
                   "n_tokens": np.array([self.n_tokens], dtype=np.int64)}
        out = [LazyTensor.of(k, v) for k, v in scalars.items()] + [LazyTensor.of("f", self.f)]
        return out + self._pairs.state_tensors() + self._top.state_tensors()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume, as flat numpy arrays (safetensors-ready, no pickles)."""
        return {t.name: t.produce() for t in self.state_tensors()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` (any mapping; a lazy one is read array by array).

        Raises :class:`RelationsError` when the state is incomplete or does not fit this accumulator.
        """
        def scalar(key: str):
            return np.asarray(state[key]).reshape(-1)[0].item()

        try:
            if scalar("format_version") > STATE_FORMAT_VERSION:
                raise RelationsError(f"relations state format {scalar('format_version')} is newer than "
                                     f"this version ({STATE_FORMAT_VERSION})")
            for key, mine in (("n_concepts", self.n_concepts), ("top_n", self.top_n), ("eps", self.eps)):
                if scalar(key) != mine:
                    raise RelationsError(f"relations state has {key} = {scalar(key)}, expected {mine}")
            f = np.asarray(state["f"], dtype=np.int64)
            if f.shape != (self.n_concepts,):
                raise RelationsError(f"relations state: f has shape {f.shape}, expected ({self.n_concepts},)")
            pairs, top = PairSums(self.n_concepts), TopTokenTable(self.n_concepts, self.top_n)
            pairs.chunk_tokens, pairs.flush_ratio = self._pairs.chunk_tokens, self._pairs.flush_ratio
            pairs.min_flush_nnz = self._pairs.min_flush_nnz
            pairs.load_state(state)
            top.load_state(state)
            n_tokens = int(scalar("n_tokens"))
        except KeyError as exc:
            raise RelationsError(f"relations state is incomplete: {exc.args[0]!r} is missing") from exc
        except (ValueError, IndexError, TypeError) as exc:
            raise RelationsError(f"relations state is inconsistent: {exc}") from exc
        self.n_tokens, self.f, self._pairs, self._top = n_tokens, f.copy(), pairs, top
