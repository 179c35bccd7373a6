"""The training loss of docs/method.md §2, written plainly with autograd on dense [B, m] codes.

Reconstruction term as dictionary_learning's ``MatryoshkaBatchTopKTrainer.loss`` computes it: each
group's loss ‖x − x̂⁽ᵍ⁾‖² is multiplied by its weight w_g = 1/G and the mean over groups is then
taken, so the term is (1/G²)·Σ_g ‖x − x̂⁽ᵍ⁾‖² (see docs/method.md §2). The AuxK term (α = 1/32)
is added to that, so it weighs G times more, relative to reconstruction, than with a plain mean.

This is the definition: slow at the reference size (it materialises dense codes and runs G
partial decodes plus their dense backward) but short enough to check by eye. The trainer uses
the sparse implementation in :mod:`.sparse_step`, and the tests check that both give the same
loss and the same gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import MatryoshkaSAE


@dataclass
class LossParts:
    total: torch.Tensor          # L = reconstruction + α·L_aux
    reconstruction: torch.Tensor  # mean_g (w_g·‖x − x̂⁽ᵍ⁾‖²), w_g = 1/G  (sum over d, mean over tokens)
    aux: torch.Tensor            # normalised AuxK loss (0 when nothing is dead)
    z: torch.Tensor              # BatchTopK codes [B, m]
    residual: torch.Tensor       # x − x̂⁽ᴳ⁾ [B, d]


def aux_k_for(d_in: int, n_dead: int) -> int:
    """k_aux = min(d/2, #dead) (the d/2 heuristic of Gao et al., B.1, used by dictionary_learning)."""
    return min(d_in // 2, n_dead)


def matryoshka_loss_dense(sae: MatryoshkaSAE, x: torch.Tensor, *, dead: torch.Tensor | None = None,
                          aux_alpha: float = 1 / 32, k: int | None = None) -> LossParts:
    """Loss of one batch by the definition; ``dead`` is a bool [m] mask of dead latents."""
    x = x.to(sae.W_enc.dtype)
    a = sae.pre_activations(x)
    z = sae.encode_batchtopk(a, k)
    recons = sae.prefix_reconstructions(z)                        # [G, B, d]
    per_group = (x - recons).pow(2).sum(-1).mean(-1)              # [G]
    G = per_group.numel()
    rec = (per_group / G).mean()                                  # w_g = 1/G, then the mean: (1/G²)·Σ_g
    residual = (x - recons[-1]).detach()
    aux = torch.zeros((), dtype=x.dtype, device=x.device)
    if dead is not None and bool(dead.any()):
        k_aux = aux_k_for(sae.config.d_in, int(dead.sum()))
        masked = torch.where(dead[None], a, torch.full_like(a, -torch.inf))
        vals, idx = masked.topk(k_aux, dim=1)
        z_aux = torch.zeros_like(a).scatter(1, idx, vals)
        e_hat = z_aux @ sae.W_dec                                 # no bias
        num = (residual - e_hat).pow(2).sum(-1).mean()
        den = (residual - residual.mean(0)).pow(2).sum(-1).mean()
        aux = (num / den).nan_to_num(0.0)
    return LossParts(rec + aux_alpha * aux, rec, aux, z, residual)
