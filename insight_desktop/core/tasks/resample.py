"""Exact bilinear maps from a patch grid to image pixels, computed in chunks of rows.

A patch grid ``[h, w]`` covers the *padded* analysis image (``h·p × w·p`` pixels, patch ``p``),
of which the analysis image (``H' × W'``) is the top-left part; the original image (``H × W``)
is that analysis image resized. Output pixel ``(y, x)`` of an ``H_out × W_out`` output therefore
reads the grid at ``src_y = (y + ½) · H' / (H_out · p) − ½`` (likewise for x): bilinear
interpolation with ``align_corners=False`` — exactly ``F.interpolate(grid, size=(h·p, w·p),
mode="bilinear")`` followed by cropping to ``H' × W'`` and resizing, fused into one step.

Everything is separable, with two taps per axis, so no full-resolution array of more than
``k`` maps (the classes or concepts asked for) is ever made, and only ``chunk_pixels`` at a time:

* :meth:`GridSampler.upsample` — maps ``[k, h, w]`` → pixels, one block of rows at a time.
* :meth:`GridSampler.adjoint` — the transpose: pixel values ``u`` → grid weights ``Σ_p w_pq u(p)``.
  A segment's summed per-pixel quantity that is linear in the codes (a concept's contribution)
  is then one grid-level product instead of a per-pixel one.
* :meth:`GridSampler.norm_sq` — ``‖Σ_q w_pq X(q)‖²`` of upsampled *vectors* ``X [h, w, d]`` from
  five neighbour Gram grids (``⟨X(a,b), X(a',b')⟩`` of the 2×2 neighbourhoods), so per pixel it
  costs a handful of operations instead of ``d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

#: pixels per block of rows in chunked per-pixel work (bounds the working memory)
CHUNK_PIXELS = 1 << 18


@dataclass(frozen=True, eq=False)
class AxisTaps:
    """Two-tap bilinear weights along one axis: output ``i`` = ``w_lo[i]·g[lo[i]] + w_hi[i]·g[lo[i] + 1]``.

    ``lo`` lies in ``0..n_in − 1``; index ``n_in`` (reached with weight 0 only) is a replicated
    pad, so every grid is padded by one row/column before it is read.
    """

    lo: np.ndarray
    w_lo: np.ndarray
    w_hi: np.ndarray

    @classmethod
    def make(cls, n_out: int, n_in: int, scale: float) -> "AxisTaps":
        return cls.at((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5, n_in)

    @classmethod
    def at(cls, src: np.ndarray, n_in: int) -> "AxisTaps":
        """Taps reading an ``n_in`` grid at source coordinates ``src`` (grid-cell units, cell
        centres at 0, 1, …), e.g. the pixels of one sliding window in its own grid."""
        # torch clamps negative sources to 0; beyond the last centre both taps read the same
        # value, which clipping to n_in − 1 reproduces.
        src = np.clip(src, 0.0, n_in - 1)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        w_hi = src - lo
        return cls(_ro(lo), _ro(1.0 - w_hi), _ro(w_hi))

    @property
    def n_out(self) -> int:
        return self.lo.size


def pad_grid(maps: np.ndarray) -> np.ndarray:
    """``[..., h, w]`` → ``[..., h + 1, w + 1]`` with the last row and column replicated."""
    maps = np.concatenate([maps, maps[..., -1:, :]], axis=-2)
    return np.concatenate([maps, maps[..., :, -1:]], axis=-1)


@dataclass(frozen=True, eq=False)
class NeighbourGram:
    """Inner products of neighbouring grid vectors (float64 ``[h + 1, w + 1]`` each, padded grid):
    ``n`` = ⟨X(a,b), X(a,b)⟩, ``right`` = ⟨X(a,b), X(a,b+1)⟩, ``down`` = ⟨X(a,b), X(a+1,b)⟩,
    ``diag`` = ⟨X(a,b), X(a+1,b+1)⟩, ``anti`` = ⟨X(a,b+1), X(a+1,b)⟩. Enough to get the exact
    norm of any bilinear blend of a 2×2 neighbourhood."""

    n: np.ndarray
    right: np.ndarray
    down: np.ndarray
    diag: np.ndarray
    anti: np.ndarray

    @classmethod
    def of(cls, vectors: np.ndarray) -> "NeighbourGram":
        """``vectors`` [h, w, d] (any float dtype; products are taken in float64)."""
        x = np.asarray(vectors, dtype=np.float64)
        x = np.concatenate([x, x[-1:]], axis=0)
        x = np.concatenate([x, x[:, -1:]], axis=1)  # [h + 1, w + 1, d]
        hp, wp = x.shape[:2]
        out = {k: np.zeros((hp, wp)) for k in ("n", "right", "down", "diag", "anti")}
        out["n"][:] = np.einsum("abd,abd->ab", x, x)
        out["right"][:, :-1] = np.einsum("abd,abd->ab", x[:, :-1], x[:, 1:])
        out["down"][:-1] = np.einsum("abd,abd->ab", x[:-1], x[1:])
        out["diag"][:-1, :-1] = np.einsum("abd,abd->ab", x[:-1, :-1], x[1:, 1:])
        out["anti"][:-1, :-1] = np.einsum("abd,abd->ab", x[:-1, 1:], x[1:, :-1])
        return cls(**{k: _ro(v) for k, v in out.items()})


@dataclass(frozen=True, eq=False)
class GridSampler:
    """Bilinear sampling of an ``[h, w]`` grid at the pixels of an ``out_h × out_w`` output."""

    grid: tuple[int, int]
    out: tuple[int, int]
    ys: AxisTaps
    xs: AxisTaps

    @classmethod
    def make(cls, grid: tuple[int, int], out: tuple[int, int], scale: tuple[float, float]) -> "GridSampler":
        """``scale`` = grid cells per output pixel along (y, x)."""
        h, w = (int(v) for v in grid)
        oh, ow = (int(v) for v in out)
        if min(h, w, oh, ow) <= 0:
            raise ValueError(f"grid {grid} and output {out} must be positive")
        return cls((h, w), (oh, ow), AxisTaps.make(oh, h, scale[0]), AxisTaps.make(ow, w, scale[1]))

    # ----------------------------------------------------------------- chunks of rows
    def row_chunks(self, chunk_pixels: int = CHUNK_PIXELS) -> Iterator[slice]:
        step = max(1, int(chunk_pixels) // self.out[1])
        for start in range(0, self.out[0], step):
            yield slice(start, min(start + step, self.out[0]))

    # ----------------------------------------------------------------- linear maps
    def horizontal(self, maps: np.ndarray) -> np.ndarray:
        """``[k, h, w]`` → ``[k, h + 1, out_w]``: the x pass, done once per set of maps."""
        padded = pad_grid(np.asarray(maps))
        xs = self.xs
        return padded[..., xs.lo] * xs.w_lo.astype(padded.dtype) + padded[..., xs.lo + 1] * xs.w_hi.astype(padded.dtype)

    def vertical(self, hmaps: np.ndarray, rows: slice) -> np.ndarray:
        """Rows ``rows`` of the output from :meth:`horizontal`'s result: ``[k, len(rows), out_w]``."""
        lo, w_lo, w_hi = self.ys.lo[rows], self.ys.w_lo[rows], self.ys.w_hi[rows]
        dt = hmaps.dtype
        return hmaps[:, lo] * w_lo.astype(dt)[:, None] + hmaps[:, lo + 1] * w_hi.astype(dt)[:, None]

    def upsample(self, maps: np.ndarray, chunk_pixels: int = CHUNK_PIXELS) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, [k, len(rows), out_w])`` blocks of the bilinearly upsampled ``maps`` [k, h, w]."""
        hmaps = self.horizontal(maps)
        for rows in self.row_chunks(chunk_pixels):
            yield rows, self.vertical(hmaps, rows)

    def upsample_full(self, maps: np.ndarray, dtype=np.float32) -> np.ndarray:
        """All of it at once, ``[k, out_h, out_w]``: only for a few maps (display, tests)."""
        maps = np.asarray(maps)
        out = np.empty((maps.shape[0], *self.out), dtype=dtype)
        for rows, block in self.upsample(maps):
            out[:, rows] = block
        return out

    def adjoint_rows(self, u: np.ndarray, rows: slice, acc: np.ndarray) -> None:
        """Add the y-transpose of pixel block ``u`` [k, len(rows), out_w] into ``acc`` [k, h + 1, out_w]."""
        lo = self.ys.lo[rows]
        for weights, offset in ((self.ys.w_lo[rows], 0), (self.ys.w_hi[rows], 1)):
            _segment_add(u * weights.astype(u.dtype)[:, None], lo + offset, acc, axis=1)

    def adjoint_finish(self, acc: np.ndarray) -> np.ndarray:
        """The x-transpose of ``acc`` [k, h + 1, out_w] → grid weights ``[k, h, w]``."""
        k = acc.shape[0]
        out = np.zeros((k, self.grid[0] + 1, self.grid[1] + 1), dtype=acc.dtype)
        for weights, offset in ((self.xs.w_lo, 0), (self.xs.w_hi, 1)):
            _segment_add(acc * weights.astype(acc.dtype), self.xs.lo + offset, out, axis=2)
        # The replicated pad is only ever read with weight 0, so nothing of value lands there.
        return out[:, : self.grid[0], : self.grid[1]]

    def adjoint(self, u: np.ndarray) -> np.ndarray:
        """Transpose of :meth:`upsample` for pixel maps ``u`` [k, out_h, out_w] → ``[k, h, w]``."""
        u = np.asarray(u, dtype=np.float64)
        acc = np.zeros((u.shape[0], self.grid[0] + 1, self.out[1]))
        self.adjoint_rows(u, slice(0, self.out[0]), acc)
        return self.adjoint_finish(acc)

    # ----------------------------------------------------------------- norms
    def norm_sq_horizontal(self, gram: NeighbourGram) -> tuple[np.ndarray, np.ndarray]:
        """The x pass of :meth:`norm_sq` (``[h + 1, out_w]`` twice), done once per grid."""
        b0, c0, c1 = self.xs.lo, self.xs.w_lo, self.xs.w_hi
        same_row = c0 * c0 * gram.n[:, b0] + c1 * c1 * gram.n[:, b0 + 1] + 2 * c0 * c1 * gram.right[:, b0]
        next_row = (c0 * c0 * gram.down[:, b0] + c1 * c1 * gram.down[:, b0 + 1]
                    + c0 * c1 * (gram.diag[:, b0] + gram.anti[:, b0]))
        return same_row, next_row

    def norm_sq(self, hnorm: tuple[np.ndarray, np.ndarray], rows: slice) -> np.ndarray:
        """``‖x(p)‖²`` (float64 ``[len(rows), out_w]``) of the upsampled vectors whose Gram gave ``hnorm``."""
        same_row, next_row = hnorm
        a0 = self.ys.lo[rows]
        r0, r1 = self.ys.w_lo[rows][:, None], self.ys.w_hi[rows][:, None]
        out = r0 * r0 * same_row[a0] + r1 * r1 * same_row[a0 + 1] + 2 * r0 * r1 * next_row[a0]
        return np.maximum(out, 0.0, out=out)  # rounding must not make a square negative


def _segment_add(values: np.ndarray, index: np.ndarray, out: np.ndarray, axis: int) -> None:
    """``out[..., index[i], ...] += values[..., i, ...]`` along ``axis`` for a *sorted* ``index``.

    Bilinear tap indices grow with the output coordinate, so runs of equal indices are
    contiguous and ``np.add.reduceat`` sums each run at once (``np.add.at`` is far slower).
    """
    if index.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    sums = np.add.reduceat(values, starts, axis=axis)
    target: list[slice | np.ndarray] = [slice(None)] * out.ndim
    target[axis] = index[starts]
    out[tuple(target)] += sums


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a
