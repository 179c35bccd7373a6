"""The Matryoshka BatchTopK SAE module (docs/method.md §2) and its data-dependent initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import SAEConfig
from .topk import batch_topk_dense

# Decode sparsely when fewer than 1 in this many codes are non-zero.
_SPARSE_DECODE_RATIO = 32


class MatryoshkaSAE(nn.Module):
    """Sparse autoencoder with nested dictionary prefixes and one global BatchTopK.

    Parameters ``W_enc`` [d, m], ``b_enc`` [m], ``W_dec`` [m, d] (unit-norm rows), ``b_dec`` [d];
    buffer ``threshold`` (scalar; -1 means "not estimated yet", as in dictionary_learning).
    Concept ``j`` lies in group ``config.level_of(j)``; group 1 is the coarsest.
    ``training_info``: the record of the training run (:func:`.trainer.training_record`), kept in
    the SAE's file; None when unknown (imported, or trained before runs were recorded).
    """

    threshold: torch.Tensor  # a registered buffer: declared for type checkers

    def __init__(self, config: SAEConfig):
        super().__init__()
        self.config = config
        d, m = config.d_in, config.n_concepts
        self.W_enc = nn.Parameter(torch.zeros(d, m))
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.W_dec = nn.Parameter(torch.zeros(m, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("threshold", torch.tensor(-1.0))
        self.training_info: dict | None = None
        self.reset_parameters()

    # ----------------------------------------------------------------- initialisation
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """W_dec Kaiming-uniform then row-normalised, W_enc = W_decᵀ, biases 0, threshold unset."""
        # Same bound as nn.init.kaiming_uniform_(a=0) on an [m, d] tensor (fan_in = d), but drawn
        # with an explicit generator so training runs are reproducible from their seed.
        bound = math.sqrt(6.0 / self.config.d_in)
        w = torch.empty_like(self.W_dec, device="cpu").uniform_(-bound, bound, generator=generator)
        self.W_dec.copy_(w)
        self.normalize_decoder_()
        self.W_enc.copy_(self.W_dec.t())
        self.b_enc.zero_()
        self.b_dec.zero_()
        self.threshold.fill_(-1.0)

    @torch.no_grad()
    def init_from_data(self, x_first_batch: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """docs/method.md §2 initialisation; ``b_dec`` = geometric median of the first batch."""
        self.reset_parameters(generator)
        x = torch.as_tensor(x_first_batch).to(device=self.b_dec.device, dtype=self.b_dec.dtype)
        self.b_dec.copy_(geometric_median(x))

    # ----------------------------------------------------------------- encode / decode
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``a = ReLU((x − b_dec) W_enc + b_enc)``, [B, m]."""
        x = x.to(self.W_enc.dtype)
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc).relu_()

    def encode_batchtopk(self, a: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Keep the ``k·B`` largest entries of the whole [B, m] matrix ``a`` (training sparsity)."""
        return batch_topk_dense(a, self.config.k if k is None else k)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inference codes ``z = a · 1[a > θ]`` [B, m].

        While the threshold has never been estimated (θ < 0, e.g. an SAE that was only
        initialised or trained for fewer than ``threshold_start_step`` steps) this falls back to
        BatchTopK over the given batch, so the codes then depend on which tokens share the batch.
        """
        theta = float(self.threshold)
        if theta < 0:
            return self.encode_batchtopk(self.pre_activations(x))
        # With θ ≥ 0, ReLU(p)·1[ReLU(p) > θ] is p where p > θ, else 0: one in-place pass over the
        # [B, m] pre-activations instead of ReLU, a comparison and a product (a third of the
        # analysis' SAE time at m = 8192).
        pre = torch.addmm(self.b_enc, x.to(self.W_enc.dtype) - self.b_dec, self.W_enc)
        return torch.threshold_(pre, theta, 0.0)  # = F.threshold_, which type checkers do not see

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``x̂ = z W_dec + b_dec``.

        Without autograd and with sparse codes (the usual case: ≈ k of m non-zero) this sums
        only the active decoder rows (``embedding_bag``), ~50× less work than the dense matmul
        at the reference size; the result is the same up to float summation order.
        """
        if z.dim() == 2 and not torch.is_grad_enabled() and z.shape[1] >= 256:
            nnz = int(torch.count_nonzero(z))
            if nnz * _SPARSE_DECODE_RATIO < z.numel():
                return self._decode_sparse(z)
        return torch.addmm(self.b_dec, z.to(self.W_dec.dtype), self.W_dec)

    def _decode_sparse(self, z: torch.Tensor) -> torch.Tensor:
        rows, cols = torch.nonzero(z).unbind(1)                  # row-major: rows ascending
        offsets = torch.searchsorted(rows, torch.arange(z.shape[0] + 1, device=z.device))
        out = F.embedding_bag(cols, self.W_dec, offsets, mode="sum", include_last_offset=True,
                              per_sample_weights=z[rows, cols].to(self.W_dec.dtype))
        return out.add_(self.b_dec)

    def prefix_reconstructions(self, z: torch.Tensor) -> torch.Tensor:
        """[G, B, d]: ``x̂⁽ᵍ⁾ = b_dec + Σ_{j < end_g} z_j W_dec[j]`` for every group g.

        One partial decode per group (together the cost of a single full decode) and a
        cumulative sum over groups, instead of G full matmuls.
        """
        parts = [zg @ wg for zg, wg in zip(z.split(self.config.group_sizes, dim=1),
                                          self.W_dec.split(self.config.group_sizes, dim=0))]
        return torch.stack(parts).cumsum(0) + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x̂, z)`` with inference sparsity (see :meth:`encode`)."""
        z = self.encode(x)
        return self.decode(z), z

    # ----------------------------------------------------------------- constraints
    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every W_dec row to unit norm (after each optimiser step)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Remove from ``W_dec.grad`` its component along each (unit) row, before each step.

        Adam then only moves rows tangentially, so renormalising afterwards changes little.
        """
        g = self.W_dec.grad
        if g is None:
            return
        w = self.W_dec
        g.sub_((g * w).sum(dim=1, keepdim=True) * w)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        c = self.config
        return f"d={c.d_in}, m={c.n_concepts}, k={c.k}, groups={list(c.group_sizes)}"


@torch.no_grad()
def geometric_median(points: torch.Tensor, max_iter: int = 100, tol: float = 1e-5) -> torch.Tensor:
    """Point minimising the sum of Euclidean distances to ``points`` [N, d] (Weiszfeld's algorithm).

    Starts at the mean; stops after ``max_iter`` iterations or when the estimate moves less than
    ``tol``. Distances are floored so an estimate landing exactly on a data point does not divide
    by zero. Robust: one far outlier barely moves it, unlike the mean.
    """
    half = points.dtype in (torch.float16, torch.bfloat16)
    pts = points.reshape(points.shape[0], -1).to(torch.float32 if half else points.dtype)
    guess = pts.mean(dim=0)
    for _ in range(max_iter):
        prev = guess
        w = 1.0 / torch.linalg.vector_norm(pts - guess, dim=1).clamp_min(1e-12)
        guess = (w / w.sum()) @ pts
        if torch.linalg.vector_norm(guess - prev) < tol:
            break
    return guess.to(points.dtype)
