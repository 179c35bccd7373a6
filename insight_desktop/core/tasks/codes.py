"""Concept codes on a patch grid, held sparsely, and the small records explanations are made of.

With ``k ≈ 12`` of ``m = 8192`` concepts active per patch, a dense ``[m, h, w]`` array would be
~700× larger than the codes; :class:`PatchCodes` keeps CSR arrays (patches row-major) and makes
a dense map only for the concept asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class ConceptContribution:
    """How much concept ``concept`` adds to a logit (negative: speaks against). Its name is looked
    up where it is shown (:class:`..concepts.names.NameBook`), so a renamed concept shows its new name."""

    concept: int
    value: float


def ranked_contributions(concepts: np.ndarray, values: np.ndarray, top: int | None = None,
                         ) -> tuple[ConceptContribution, ...]:
    """Records for the non-zero ``values``, largest first (ties: lower concept id first)."""
    concepts, values = np.asarray(concepts), np.asarray(values, dtype=np.float64)
    keep = np.flatnonzero(values != 0)
    order = keep[np.lexsort((concepts[keep], -values[keep]))]
    if top is not None:
        order = order[:top]
    return tuple(ConceptContribution(int(concepts[i]), float(values[i])) for i in order)


@dataclass(frozen=True, eq=False)
class PatchCodes:
    """SAE codes ``z`` of an ``h × w`` patch grid as CSR: row ``q = a·w + b`` is patch ``(a, b)``.

    Every positive code is kept (no ε cut), so decoding these codes gives exactly the SAE's
    reconstruction and contributions add up exactly.
    """

    grid: tuple[int, int]
    n_concepts: int
    indptr: np.ndarray   # int64 [h·w + 1]
    indices: np.ndarray  # int32 [nnz], concept ids, increasing within a patch
    values: np.ndarray   # float32 [nnz], z > 0

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.grid)
        object.__setattr__(self, "grid", (h, w))
        object.__setattr__(self, "n_concepts", int(self.n_concepts))
        for name, dtype in (("indptr", np.int64), ("indices", np.int32), ("values", np.float32)):
            arr = np.array(getattr(self, name), dtype=dtype, copy=True)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if self.indptr.shape != (h * w + 1,) or self.indptr[0] != 0 or self.indptr[-1] != self.indices.size:
            raise ValueError(f"PatchCodes: indptr must have {h * w + 1} entries from 0 to nnz")
        if self.indices.shape != self.values.shape:
            raise ValueError("PatchCodes: indices and values differ in length")

    @classmethod
    def from_dense(cls, z: Any, grid: tuple[int, int]) -> "PatchCodes":
        """From dense codes [h·w, m] (numpy or torch; a torch tensor is sparsified where it lives)."""
        from ..concepts.codes import SparseCodes

        s = SparseCodes.from_dense(z, eps=0.0)
        return cls(grid, s.n_concepts, s.indptr, s.indices, s.values)

    @classmethod
    def concat_rows(cls, parts: list[Any], grid: tuple[int, int], n_concepts: int) -> "PatchCodes":
        """The patches of ``parts`` (CSR blocks with ``indptr/indices/values``) one after the other."""
        offsets = np.cumsum([0] + [np.asarray(p.indices).size for p in parts])
        indptr = np.concatenate([np.zeros(1, np.int64)]
                                + [np.asarray(p.indptr[1:]) + o for p, o in zip(parts, offsets)])
        indices = np.concatenate([np.zeros(0, np.int32)] + [np.asarray(p.indices) for p in parts])
        values = np.concatenate([np.zeros(0, np.float32)] + [np.asarray(p.values) for p in parts])
        return cls(grid, n_concepts, indptr, indices, values)

    # ------------------------------------------------------------------------- facts
    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def patch_ids(self) -> np.ndarray:
        """Patch (row) number of every stored entry, int64 [nnz]."""
        return np.repeat(np.arange(self.n_patches, dtype=np.int64), np.diff(self.indptr))

    def active_per_patch(self) -> np.ndarray:
        """How many concepts fire on each patch, int64 [h, w]."""
        return np.diff(self.indptr).reshape(self.grid)

    def active_concepts(self) -> np.ndarray:
        """Concepts that fire anywhere in the grid, ascending (int64)."""
        return np.unique(self.indices).astype(np.int64)

    # ------------------------------------------------------------------------- maps
    def concept_map(self, concept: int) -> np.ndarray:
        """``z_j`` on the grid, float32 [h, w] (zeros where it does not fire)."""
        return self.maps([concept])[0]

    def maps(self, concepts: Any) -> np.ndarray:
        """``z`` of the listed concepts, float32 [k, h, w]."""
        concepts = np.asarray(concepts, dtype=np.int64).reshape(-1)
        if concepts.size and (concepts.min() < 0 or concepts.max() >= self.n_concepts):
            raise IndexError(f"concept ids must lie in 0..{self.n_concepts - 1}")
        uniq, inverse = np.unique(concepts, return_inverse=True)
        dense = np.zeros((uniq.size, self.n_patches), dtype=np.float32)
        if uniq.size and self.nnz:
            pos = np.minimum(np.searchsorted(uniq, self.indices), uniq.size - 1)
            hit = uniq[pos] == self.indices
            dense[pos[hit], self.patch_ids()[hit]] = self.values[hit]
        out = dense[inverse.reshape(-1)]
        return out.reshape(concepts.size, *self.grid)

    def pooled_max(self) -> tuple[np.ndarray, np.ndarray]:
        """Image-level concept vector (docs/method.md §3: max over patches), sparse: ``(concepts, values)``
        with ``concepts`` ascending (int64) and ``values`` float32 > 0."""
        if not self.nnz:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        order = np.lexsort((-self.values, self.indices))  # by concept, largest value first
        first = np.r_[True, self.indices[order][1:] != self.indices[order][:-1]]
        return self.indices[order][first].astype(np.int64), self.values[order][first].astype(np.float32)

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.values, self.indices, self.indptr), shape=(self.n_patches, self.n_concepts))

    def dense(self) -> np.ndarray:
        """[h·w, m] float32 — for tests and small grids only."""
        out = np.zeros((self.n_patches, self.n_concepts), dtype=np.float32)
        out[self.patch_ids(), self.indices] = self.values
        return out
