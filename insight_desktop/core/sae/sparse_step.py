"""Fast loss + gradients of one training batch, exploiting that BatchTopK codes are sparse.

The dense formulation (:mod:`.losses`) costs about six [B, d]×[d, m]-sized matmuls per step
(encoder forward, its two backward products, the G partial decodes and their two backward
products). Only k·B of the B·m codes are non-zero, so here everything after the encoder forward
works on the (row, concept, value) triplets of the kept entries:

* prefix decodes: one ``embedding_bag`` whose bags are (group, token) pairs → [G, B, d] partial
  sums, then a cumulative sum over groups;
* ∂L/∂codes: a sampled dense–dense product (``torch.sparse.sampled_addmm``);
* ∂L/∂W_dec and ∂L/∂W_enc: ``embedding_bag`` again with the entries grouped by concept.

Gradients are written by hand into ``.grad`` (no autograd graph, so no [B, m] tensors are kept
for the backward pass). ``tests/core/test_sae.py`` checks them against autograd on the dense
definition, ``tests/core/test_reference_parity.py`` against the reference formula.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..dist import SINGLE, DistContext
from .distributed import batch_topk_indices_global
from .losses import aux_k_for
from .model import MatryoshkaSAE


@dataclass
class Selection:
    """BatchTopK result of one batch, kept between the forward pass and the loss."""

    x: torch.Tensor      # [B, d] input
    xc: torch.Tensor     # x − b_dec
    a: torch.Tensor      # [B, m] pre-activations (needed again for AuxK)
    rows: torch.Tensor   # token index of each kept positive entry (row-major order)
    cols: torch.Tensor   # concept index of each kept entry
    vals: torch.Tensor   # its value

    def fired(self, m: int) -> torch.Tensor:
        """Bool [m]: concepts with a positive kept value in this batch."""
        out = torch.zeros(m, dtype=torch.bool, device=self.cols.device)
        out[self.cols] = True
        return out


@dataclass
class StepStats:
    """Scalars of one step, as 0-dim tensors (converted to floats once, by the caller)."""

    loss: torch.Tensor
    mse: torch.Tensor           # ‖x − x̂⁽ᴳ⁾‖², sum over d, mean over tokens
    aux_loss: torch.Tensor
    fvu: torch.Tensor           # Σ‖x − x̂⁽ᴳ⁾‖² / Σ‖x − mean x‖²
    l0: torch.Tensor            # kept positive entries per token
    min_kept: torch.Tensor      # smallest positive kept value (threshold EMA input); 0 if none


@torch.no_grad()
def select(sae: MatryoshkaSAE, x: torch.Tensor, k: int, dist: DistContext = SINGLE) -> Selection:
    """Encoder forward + BatchTopK, without building dense codes.

    On several ranks ``x`` is this rank's slice and the k·N kept entries are those of the global
    batch (:func:`.distributed.batch_topk_indices_global`)."""
    x = x.to(sae.W_enc.dtype)
    xc = x - sae.b_dec
    a = torch.addmm(sae.b_enc, xc, sae.W_enc).relu_()
    flat = batch_topk_indices_global(a, k, dist)
    m = a.shape[1]
    rows = torch.div(flat, m, rounding_mode="floor")
    return Selection(x, xc, a, rows, flat - rows * m, a.view(-1)[flat])


@torch.no_grad()
def loss_and_grads(sae: MatryoshkaSAE, sel: Selection, *, dead: torch.Tensor | None,
                   aux_alpha: float, dist: DistContext = SINGLE, n_global: int | None = None) -> StepStats:
    """Loss of docs/method.md §2 for a selection; sets ``.grad`` of all four parameters (overwriting).

    On several ranks (``dist``), ``sel`` holds this rank's slice of a global batch of ``n_global``
    tokens: means are over the global batch, so the loss and the returned statistics are the
    global ones and the gradients set here are this rank's share: their sum over the ranks
    (:func:`.distributed.all_reduce_grads`) is the single-process gradient of the global batch.
    """
    W_dec = sae.W_dec
    B, d = sel.x.shape
    N = B if n_global is None else n_global                       # tokens in the global batch
    m, G = W_dec.shape[0], len(sae.config.group_sizes)
    level = _levels(sae)

    # ---- forward: per-group partial decodes, bags ordered (group, token) ----
    bag = level[sel.cols] * B + sel.rows
    order = torch.argsort(bag, stable=True)       # stays concept-ascending within a bag
    bag, cols, vals = bag[order], sel.cols[order], sel.vals[order]
    crow = _offsets(bag, G * B)
    R = F.embedding_bag(cols, W_dec, crow, mode="sum", per_sample_weights=vals,
                        include_last_offset=True).view(G, B, d)
    R = R.cumsum_(0).neg_().add_(sel.xc)          # R_g = x − x̂⁽ᵍ⁾ (b_dec cancels: xc = x − b_dec)
    per_group = R.square().sum(dim=(1, 2))        # [G]
    residual = R[G - 1]
    centred = sel.x - _mean0(sel.x, dist, N)
    total_var = centred.square().sum()
    if dist.distributed:
        sums = dist.all_reduce_sum(torch.cat([per_group, total_var.reshape(1)]))
        per_group, total_var = sums[:G], sums[G]
    rec = per_group.sum() / (G * G * N)           # (1/G²)·Σ_g, see .losses
    mse = per_group[G - 1] / N
    fvu = per_group[G - 1] / total_var

    # ---- AuxK (reads the residual before R is overwritten by its gradient) ----
    aux = _aux_loss_and_grads(sae, sel, residual, dead, aux_alpha, dist, N) if dead is not None else None
    aux_loss = aux[0] if aux is not None else torch.zeros((), device=R.device, dtype=R.dtype)

    # ---- backward of the reconstruction term ----
    # dL/dR_g = 2/(G²N)·R_g; dL/d(partial_g) = −Σ_{g' ≥ g} dL/dR_g' (reverse cumsum, in place).
    Q = R.mul_(-2.0 / (G * G * N))
    for g in range(G - 2, -1, -1):
        Q[g].add_(Q[g + 1])
    Qf = Q.view(G * B, d)
    g_vals = _sampled_dot(crow, cols, Qf, W_dec)                  # ∂L/∂value of each kept entry
    by_col = torch.argsort(cols, stable=True)
    ccol = _offsets(cols[by_col], m)
    gW_dec = F.embedding_bag(bag[by_col], Qf, ccol, mode="sum", per_sample_weights=vals[by_col],
                             include_last_offset=True)
    gb_dec = Q[0].sum(0)                                          # x̂ = b_dec + …, direct path
    # encoder: value = ReLU(xc·W_enc[:, j] + b_enc[j]); all kept values are > 0 so ReLU' = 1
    gW_encT = F.embedding_bag(sel.rows[order][by_col], sel.xc, ccol, mode="sum",
                              per_sample_weights=g_vals[by_col], include_last_offset=True)
    gb_enc = torch.zeros(m, device=R.device, dtype=R.dtype).index_add_(0, cols, g_vals)
    if aux is not None:
        gW_dec += aux[1]
        gW_encT += aux[2]
        gb_enc += aux[3]
    gb_dec -= sae.W_enc @ gb_enc                                  # via xc = x − b_dec
    _set_grad(sae.W_enc, gW_encT.t())
    _set_grad(sae.b_enc, gb_enc)
    _set_grad(sae.W_dec, gW_dec)
    _set_grad(sae.b_dec, gb_dec)

    if dist.distributed:
        return _global_stats(rec + aux_alpha * aux_loss, mse, aux_loss, fvu, sel, dist, N)
    min_kept = sel.vals.min() if sel.vals.numel() else torch.zeros((), device=R.device)
    return StepStats(rec + aux_alpha * aux_loss, mse, aux_loss, fvu,
                     torch.tensor(sel.vals.numel() / B), min_kept)


def _mean0(t: torch.Tensor, dist: DistContext, n: int) -> torch.Tensor:
    """Mean over the rows of the global batch (``t.mean(0)`` on one process)."""
    return dist.all_reduce_sum(t.sum(0)) / n if dist.distributed else t.mean(0)


def _global_stats(loss, mse, aux_loss, fvu, sel: Selection, dist: DistContext, n: int) -> StepStats:
    """StepStats of the global batch: l0 over all kept entries, the smallest value kept on any rank."""
    dev, big = sel.vals.device, torch.finfo(sel.vals.dtype).max
    local_min = sel.vals.min() if sel.vals.numel() else torch.tensor(big, device=dev, dtype=sel.vals.dtype)
    kept = dist.all_reduce_sum(torch.tensor([float(sel.vals.numel())], device=dev))
    low = -dist.all_reduce_max(-local_min.reshape(1))[0]              # min over ranks = −max(−min)
    min_kept = low if float(low) < big else torch.zeros((), device=dev)  # nothing kept anywhere: 0, as on one
    return StepStats(loss, mse, aux_loss, fvu, torch.tensor(float(kept[0]) / n), min_kept)


def _aux_loss_and_grads(sae, sel: Selection, residual, dead, alpha, dist: DistContext = SINGLE,
                        N: int | None = None):
    """AuxK: the dead latents' top-k_aux pre-activations per token regress the residual."""
    dead_idx = torch.nonzero(dead).squeeze(1)
    if dead_idx.numel() == 0:
        return None
    B, d = residual.shape
    N = B if N is None else N                                     # tokens in the global batch
    m = sae.W_dec.shape[0]
    k_aux = aux_k_for(d, dead_idx.numel())
    u, pos = sel.a.index_select(1, dead_idx).topk(k_aux, dim=1, sorted=False)
    acols, perm = dead_idx[pos].sort(dim=1)                       # CSR wants ascending columns
    u = u.gather(1, perm).reshape(-1)
    acols = acols.reshape(-1)
    crow = torch.arange(0, B * k_aux + 1, k_aux, device=u.device)
    e_hat = F.embedding_bag(acols, sae.W_dec, crow, mode="sum", per_sample_weights=u,
                            include_last_offset=True)             # decoded without bias
    diff = residual - e_hat
    num = diff.square().sum()
    den = (residual - _mean0(residual, dist, N)).square().sum()
    if dist.distributed:                                          # both sums over the global batch
        num, den = dist.all_reduce_sum(torch.stack([num, den])).unbind()
    num, den = num / N, den / N
    loss = num / den
    if not bool(torch.isfinite(loss)):                            # NaN → 0 (and no gradient)
        return None
    H = diff.mul_(-2.0 * alpha / (N * den))                       # α·∂L_aux/∂ê
    g_u = _sampled_dot(crow, acols, H, sae.W_dec) * (u > 0)       # ReLU' = 0 at zero
    rows = torch.arange(B, device=u.device).repeat_interleave(k_aux)
    by_col = torch.argsort(acols, stable=True)
    ccol = _offsets(acols[by_col], m)
    gW_dec = F.embedding_bag(rows[by_col], H, ccol, mode="sum", per_sample_weights=u[by_col],
                             include_last_offset=True)
    gW_encT = F.embedding_bag(rows[by_col], sel.xc, ccol, mode="sum",
                              per_sample_weights=g_u[by_col], include_last_offset=True)
    gb_enc = torch.zeros(m, device=u.device, dtype=u.dtype).index_add_(0, acols, g_u)
    return loss, gW_dec, gW_encT, gb_enc


def _levels(sae: MatryoshkaSAE) -> torch.Tensor:
    """0-based group index of every concept, cached on the module per device."""
    cached = getattr(sae, "_level_cache", None)
    if cached is None or cached.device != sae.W_dec.device:
        sizes = torch.tensor(sae.config.group_sizes, device=sae.W_dec.device)
        cached = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)
        sae._level_cache = cached
    return cached


def _offsets(sorted_keys: torch.Tensor, n_bags: int) -> torch.Tensor:
    """CSR row pointers [n_bags + 1] for ascending bag ids."""
    return torch.searchsorted(sorted_keys, torch.arange(n_bags + 1, device=sorted_keys.device))


def _sampled_dot(crow, col, A, W):
    """``(A @ Wᵀ)[r, col]`` for every CSR entry (r from ``crow``): one dot product per kept entry."""
    n_rows, m = A.shape[0], W.shape[0]
    if col.numel() == 0:
        return torch.zeros(0, device=A.device, dtype=A.dtype)
    try:
        with warnings.catch_warnings():                           # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(crow, col, torch.zeros(col.numel(), device=A.device, dtype=A.dtype),
                                              (n_rows, m), check_invariants=False)
            return torch.sparse.sampled_addmm(pattern, A, W.t(), beta=0.0).values()
    except (RuntimeError, NotImplementedError):                   # device/dtype without SDDMM
        rows = torch.repeat_interleave(torch.arange(n_rows, device=A.device), crow.diff())
        out = torch.empty(col.numel(), device=A.device, dtype=A.dtype)
        step = 1 << 14                                            # bounded temporaries
        for s in range(0, col.numel(), step):
            out[s:s + step] = (A[rows[s:s + step]] * W[col[s:s + step]]).sum(1)
        return out


def _set_grad(p: torch.nn.Parameter, g: torch.Tensor) -> None:
    p.grad = g.contiguous() if g.shape == p.shape else g.reshape(p.shape).contiguous()
