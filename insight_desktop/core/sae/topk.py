"""BatchTopK selection (docs/method.md §2): the k·B largest entries of a whole [B, m] activation matrix.

``torch.topk`` over the flattened matrix (16 k × 8 k = 134 M entries) is slow on the CPU (≈ 1.5 s
on 2 cores, longer than the encoder matmul). The selected set only depends on the (k·B)-th
largest value, so we guess a cut-off from a strided sample, keep the entries above it (one
compare + nonzero pass, ≈ 0.1 s) and run ``topk`` on those few candidates only. If the guess was
too high (fewer than k·B candidates) we lower it and retry, so the result is always exact.
"""

from __future__ import annotations

import torch

# A prime stride never aligns with power-of-two dictionary sizes, so the sample covers all columns.
_SAMPLE_STRIDE = 127
# Keep about this many times the needed entries in the first try (cheap insurance against a retry).
_OVERSHOOT = 1.5


def batch_topk_indices(a: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices (into ``a.view(-1)``, ascending) of the ``k·B`` largest *positive* entries of ``a`` [B, m].

    Zero entries are never returned: BatchTopK over a ReLU output may "keep" zeros when fewer than
    k·B entries are positive, but a kept zero decodes to nothing and has no gradient, so dropping
    them changes nothing downstream. Ties at the cut-off are broken by ``torch.topk``.
    """
    if a.dim() != 2:
        raise ValueError(f"expected a [B, m] matrix, got shape {tuple(a.shape)}")
    flat = a.reshape(-1)
    n_keep = int(k) * a.shape[0]
    if n_keep <= 0 or flat.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=a.device)
    if flat.numel() <= 4 * n_keep or flat.numel() < 1 << 16:
        # Small problems: plain topk is fast enough and simplest.
        vals, idx = flat.topk(min(n_keep, flat.numel()), sorted=False)
        return torch.sort(idx[vals > 0]).values
    guess = _guess_cutoff(flat, n_keep)
    # Too few entries above the guess (an unlucky sample): retry at half of it, then at zero
    # (all positive entries), which always holds the answer.
    for cut in (guess, guess * 0.5, torch.zeros_like(guess)):
        cand = torch.nonzero(flat > cut).squeeze(1)
        if cand.numel() >= n_keep:
            break
    if cand.numel() > n_keep:
        _, pos = flat[cand].topk(n_keep, sorted=False)
        cand = torch.sort(cand[pos]).values
    return cand


def _guess_cutoff(flat: torch.Tensor, n_keep: int) -> torch.Tensor:
    """A value that roughly ``_OVERSHOOT · n_keep`` entries of ``flat`` exceed (from a strided sample)."""
    sample = flat[::_SAMPLE_STRIDE]
    frac = min(1.0, _OVERSHOOT * n_keep / flat.numel())
    n_above = max(1, int(frac * sample.numel()))
    if n_above >= sample.numel():
        return torch.zeros((), dtype=flat.dtype, device=flat.device)
    # kthvalue(j) is the j-th smallest: the value with n_above sample entries at or above it.
    cut = sample.kthvalue(sample.numel() - n_above).values
    return cut.clamp_min(0)


def batch_topk_dense(a: torch.Tensor, k: int) -> torch.Tensor:
    """``a`` with everything but its k·B largest entries set to zero (a new [B, m] tensor)."""
    idx = batch_topk_indices(a, k)
    z = torch.zeros_like(a)
    z.view(-1)[idx] = a.reshape(-1)[idx]
    return z
