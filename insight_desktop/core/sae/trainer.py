"""Training loop for the Matryoshka BatchTopK SAE, exactly per SPEC §2, resumable.

Per step: BatchTopK codes → update the per-latent "tokens since last fired" counters → loss
(mean over groups of the prefix reconstruction errors + α·AuxK over dead latents) and its
gradients (:mod:`.sparse_step`) → threshold EMA → remove the W_dec gradient component along its
rows → clip the gradient norm → Adam → renormalise the W_dec rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..devices import resolve_device
from . import sparse_step
from .checkpoint import TrainerState, has_checkpoint, load_checkpoint, save_checkpoint
from .config import SAEConfig, TrainConfig
from .data import ArrayTokenSource, TokenSource
from .errors import SAEError
from .model import MatryoshkaSAE

__all__ = ["TrainProgress", "TrainResult", "TokenSource", "ArrayTokenSource", "train_sae", "update_threshold"]


@dataclass
class TrainProgress:
    """One step's numbers, reported through ``on_progress`` after every step."""

    step: int                # steps done (1-based after the first step)
    total_steps: int
    epoch: int
    tokens_seen: int
    loss: float
    mse: float               # ‖x − x̂‖² of the full dictionary, summed over d, mean over tokens
    aux_loss: float
    fvu: float               # fraction of variance unexplained by the full dictionary, this batch
    l0: float                # BatchTopK entries kept per token (≈ k)
    dead_fraction: float     # latents not fired for ≥ dead_tokens tokens
    threshold: float         # inference threshold θ (−1 until estimated)
    tokens_per_s: float      # over this call of train_sae


@dataclass
class TrainResult:
    sae: MatryoshkaSAE       # on the CPU, in eval mode
    metrics: dict            # the last TrainProgress as a dict (empty if no step ran)
    steps: int               # steps done in total (including those before a resume)
    stopped_early: bool      # should_stop ended the run before total_steps
    checkpoint_path: Path | None = None


def update_threshold(threshold: float, min_kept: float, beta: float) -> float:
    """θ ← β·θ + (1−β)·min_kept; the first update (θ < 0, never estimated) sets θ = min_kept."""
    return min_kept if threshold < 0 else beta * threshold + (1.0 - beta) * min_kept


def train_sae(source: TokenSource, sae_config: SAEConfig, train_config: TrainConfig, *,
              device: str = "auto", checkpoint_dir: Path | None = None, resume: bool = True,
              on_progress: Callable[[TrainProgress], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train an SAE on ``source``; ``total_steps = ceil(epochs × num_batches)``.

    With ``checkpoint_dir`` a resumable checkpoint is written every ``checkpoint_every`` steps and
    when the run ends or is stopped; with ``resume`` an existing one is continued exactly (same
    weights as an uninterrupted run). ``should_stop`` is polled after every step.
    """
    tc = train_config
    if source.d != sae_config.d_in:
        raise SAEError(f"the tokens have {source.d} dimensions but the SAE expects {sae_config.d_in}")
    dev = resolve_device(device)
    n_batches = source.num_batches(tc.batch_tokens)
    total_steps = math.ceil(tc.epochs * n_batches)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    sae = MatryoshkaSAE(sae_config).to(dev)
    optimizer = _adam(sae, tc)
    counter = torch.zeros(sae_config.n_concepts, dtype=torch.long, device=dev)
    state = TrainerState(seed=tc.seed, sae_config=sae_config.to_dict(), train_config=tc.to_dict())
    if resume and has_checkpoint(ckpt_dir):
        state, counter = load_checkpoint(ckpt_dir, sae, optimizer, sae_config, tc)
        state.train_config = tc.to_dict()                          # epochs etc. may have changed

    loop = _Loop(sae, optimizer, counter, state, tc, total_steps)
    t0, tokens0, last, stopped = time.perf_counter(), state.tokens_seen, None, False
    while state.step < total_steps and not stopped:
        yielded = 0
        for batch in source.iter_batches(tc.batch_tokens, epoch=state.epoch, seed=tc.seed, skip=state.batch_in_epoch):
            yielded += 1
            stats = loop.step(torch.as_tensor(batch).to(device=dev, dtype=torch.float32))
            state.batch_in_epoch += 1
            rate = (state.tokens_seen - tokens0) / max(time.perf_counter() - t0, 1e-9)
            last = loop.progress(stats, rate)
            if on_progress is not None:
                on_progress(last)
            if ckpt_dir is not None and tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                save_checkpoint(ckpt_dir, sae, optimizer, loop.counter, state)
            if state.step >= total_steps or (should_stop is not None and should_stop()):
                stopped = state.step < total_steps
                break
        else:
            if yielded == 0 and state.batch_in_epoch == 0:
                raise SAEError(f"the token source yielded no batches for epoch {state.epoch}")
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        if state.batch_in_epoch >= n_batches:                      # ended exactly on an epoch boundary
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    path = save_checkpoint(ckpt_dir, sae, optimizer, loop.counter, state) if ckpt_dir is not None else None
    sae = sae.cpu().eval()
    for p in sae.parameters():
        p.grad = None
    return TrainResult(sae, asdict(last) if last else {}, state.step, stopped, path)


def _adam(sae: MatryoshkaSAE, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam (no weight decay, eps 1e-8); the fused kernel where this torch has it (same maths, ~4× faster step)."""
    try:
        return torch.optim.Adam(sae.parameters(), lr=tc.lr, betas=tuple(tc.betas), fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(sae.parameters(), lr=tc.lr, betas=tuple(tc.betas))


class _Loop:
    """The per-step update, holding the mutable training state."""

    def __init__(self, sae, optimizer, counter, state: TrainerState, tc: TrainConfig, total_steps: int):
        self.sae, self.optimizer, self.counter, self.state, self.tc = sae, optimizer, counter, state, tc
        self.total_steps = total_steps
        self.params = list(sae.parameters())
        self.dead_fraction = 0.0

    def step(self, x: torch.Tensor) -> sparse_step.StepStats:
        sae, tc, st = self.sae, self.tc, self.state
        if st.step == 0:
            sae.init_from_data(x, torch.Generator().manual_seed(tc.seed))
        sel = sparse_step.select(sae, x, sae.config.k)
        # Counters first, as dictionary_learning does: a latent that fires in this batch is not dead.
        self.counter += x.shape[0]
        self.counter[sel.fired(self.counter.numel())] = 0
        dead = self.counter >= tc.dead_tokens
        n_dead = int(dead.sum())
        self.dead_fraction = n_dead / dead.numel()
        stats = sparse_step.loss_and_grads(sae, sel, dead=dead if n_dead else None, aux_alpha=tc.aux_alpha)
        del sel                                                    # frees the [B, m] pre-activations
        if st.step >= tc.threshold_start_step:
            st.threshold = update_threshold(st.threshold, float(stats.min_kept), tc.threshold_beta)
            sae.threshold.fill_(st.threshold)
        sae.remove_parallel_decoder_grad_()
        torch.nn.utils.clip_grad_norm_(self.params, tc.grad_clip)
        self.optimizer.step()
        sae.normalize_decoder_()
        st.step += 1
        st.tokens_seen += x.shape[0]
        return stats

    def progress(self, s: sparse_step.StepStats, rate: float) -> TrainProgress:
        st = self.state
        return TrainProgress(step=st.step, total_steps=self.total_steps, epoch=st.epoch, tokens_seen=st.tokens_seen,
                             loss=float(s.loss), mse=float(s.mse), aux_loss=float(s.aux_loss), fvu=float(s.fvu),
                             l0=float(s.l0), dead_fraction=self.dead_fraction, threshold=st.threshold,
                             tokens_per_s=rate)
