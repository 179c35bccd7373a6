"""The SAE decoder cut down to the concepts active in one image, as numpy: what recomputing
``x̂ = z W_dec + b_dec`` needs once the codes change (a concept switched off, ``z_j = 0``), with
no model and no worker.

The SAE's ``W_dec`` and ``b_dec`` are float32: they are kept as they are (so the rows of a few
hundred active concepts cost a few MB per image) and decoding runs in float64, so :meth:`decode`
is ``z W_dec + b_dec`` computed exactly on the SAE's own parameters (its float32 decode agrees
to float32 rounding). Segmentation decodes its ``x̂`` here, so its logits and their exact concept
contributions come from the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .codes import PatchCodes


@dataclass(frozen=True, eq=False)
class ActiveDecoder:
    """``W_dec`` rows of the concepts active in an image and ``b_dec``; read-only numpy."""

    concepts: np.ndarray  # int64 [n], ascending
    rows: np.ndarray      # float32 [n, d]: W_dec[concepts]
    bias: np.ndarray      # float32 [d]: b_dec

    def __post_init__(self) -> None:
        concepts = np.array(self.concepts, dtype=np.int64).reshape(-1)
        bias = np.array(self.bias, dtype=np.float32).reshape(-1)
        rows = np.array(self.rows, dtype=np.float32)
        if np.any(np.diff(concepts) <= 0):
            raise ValueError("ActiveDecoder: concepts must be ascending and distinct")
        if rows.size != concepts.size * bias.size:
            raise ValueError(f"ActiveDecoder: rows of shape {rows.shape} for {concepts.size} concepts "
                             f"but a bias of {bias.size}")
        # by the bias's width, not −1: an image in which no concept fires has 0 rows of width d
        rows = rows.reshape(concepts.size, bias.size)
        for name, arr in (("concepts", concepts), ("rows", rows), ("bias", bias)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def dim(self) -> int:
        return int(self.bias.size)

    def positions(self, concepts: np.ndarray) -> np.ndarray:
        """Index of each of ``concepts`` in :attr:`concepts`; ValueError if one is not here."""
        concepts = np.asarray(concepts, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.concepts, concepts), max(self.concepts.size - 1, 0))
        if concepts.size and (self.concepts.size == 0 or np.any(self.concepts[pos] != concepts)):
            raise ValueError("the codes use concepts this decoder does not hold")
        return pos

    def rows_of(self, concepts: np.ndarray) -> np.ndarray:
        """``W_dec`` rows of ``concepts`` (all held here), float64 [k, d]."""
        return self.rows[self.positions(concepts)].astype(np.float64)

    def decode(self, codes: PatchCodes) -> np.ndarray:
        """``x̂ = z W_dec + b_dec`` for every patch of ``codes``, float64 [h·w, d]."""
        z = sp.csr_matrix((codes.values.astype(np.float64), self.positions(codes.indices), codes.indptr),
                          shape=(codes.n_patches, self.concepts.size))
        return np.asarray(z @ self.rows.astype(np.float64)) + self.bias.astype(np.float64)


def without_concepts(codes: PatchCodes, concepts: np.ndarray) -> PatchCodes:
    """``codes`` with ``z_j = 0`` on every patch for each ``j`` in ``concepts`` (switched off)."""
    keep = ~np.isin(codes.indices, np.asarray(concepts, dtype=np.int64))
    per_patch = np.bincount(codes.patch_ids()[keep], minlength=codes.n_patches)
    indptr = np.concatenate([np.zeros(1, np.int64), np.cumsum(per_patch)])
    return PatchCodes(codes.grid, codes.n_concepts, indptr, codes.indices[keep], codes.values[keep])
