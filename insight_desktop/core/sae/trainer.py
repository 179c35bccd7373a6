"""Training loop for the Matryoshka BatchTopK SAE, exactly per docs/method.md §2, resumable.

Per step: BatchTopK codes → update the per-latent "tokens since last fired" counters → loss
(group-weighted prefix reconstruction errors + α·AuxK over dead latents) and its gradients
(:mod:`.sparse_step`) → threshold EMA → remove the W_dec gradient component along its rows → clip
the gradient norm → Adam → renormalise the W_dec rows.

The EMA start and the dead-latent window are scaled to the run's length unless given
(:mod:`.schedule`). The trained SAE carries a record of the run in ``sae.training_info`` (saved in
its file): the values used, how many θ updates and AuxK steps there were, the most dead latents.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..devices import resolve_device
from ..dist import SINGLE, DistContext
from . import distributed, sparse_step
from .checkpoint import CHECKPOINT_FILE, TrainerState, has_checkpoint, load_checkpoint, save_checkpoint
from .config import SAEConfig, TrainConfig
from .data import ArrayTokenSource, TokenSource
from .errors import SAEError
from .model import MatryoshkaSAE
from .schedule import RunPlan, plan_run

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
    min_kept: float = 0.0    # smallest positive value BatchTopK kept in this batch (the θ EMA's input)
    n_dead: int = 0          # latents not fired for ≥ dead_tokens tokens (AuxK ran when > 0)


@dataclass
class TrainResult:
    sae: MatryoshkaSAE       # on the CPU, in eval mode
    metrics: dict            # the last TrainProgress as a dict (empty if no step ran)
    steps: int               # steps done in total (including those before a resume)
    stopped_early: bool      # should_stop ended the run before total_steps
    checkpoint_path: Path | None = None
    plan: RunPlan | None = None  # the run's length and the training values it used


def update_threshold(threshold: float, min_kept: float, beta: float) -> float:
    """θ ← β·θ + (1−β)·min_kept; the first update (θ < 0, never estimated) sets θ = min_kept."""
    return min_kept if threshold < 0 else beta * threshold + (1.0 - beta) * min_kept


def train_sae(source: TokenSource, sae_config: SAEConfig, train_config: TrainConfig, *,
              device: str = "auto", checkpoint_dir: Path | None = None, resume: bool = True,
              on_progress: Callable[[TrainProgress], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              on_plan: Callable[[RunPlan], None] | None = None, dist: DistContext = SINGLE) -> TrainResult:
    """Train an SAE on ``source``; ``total_steps = ceil(epochs × num_batches)``.

    With ``checkpoint_dir`` a resumable checkpoint is written every ``checkpoint_every`` steps and
    when the run ends or is stopped; with ``resume`` an existing one is continued exactly (same
    weights as an uninterrupted run; "auto" values are those the run started with).
    ``on_plan`` receives the resolved training values once, before the first step;
    ``should_stop`` is polled after every step.

    With ``dist`` (several processes, torchrun) every rank iterates the same global batches of
    ``batch_tokens`` and trains on its slice of each, with the gradients and batch statistics
    reduced over the ranks (:mod:`.distributed`): the run is the single-process run. Only rank 0
    writes the checkpoint; resuming reads it on every rank, on any number of ranks (shared folder).
    ``should_stop`` stops all ranks together when it returns True on any of them.
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
    state = TrainerState(seed=tc.seed, sae_config=sae_config.to_dict(), threshold_updates=0, aux_steps=0, max_dead=0)
    kept = None
    if resume and ckpt_dir is not None and distributed.checkpoint_everywhere(has_checkpoint(ckpt_dir), ckpt_dir, dist):
        state, counter = load_checkpoint(ckpt_dir, sae, optimizer, sae_config, tc)
        kept = state.train_config
    plan = plan_run(tc, n_tokens=source.n_tokens, n_batches=n_batches, total_steps=total_steps, kept=kept)
    tc = plan.train_config
    state.train_config, state.plan = tc.to_dict(), plan.to_dict()   # epochs etc. may have changed
    if on_plan is not None:
        on_plan(plan)

    loop = _Loop(sae, optimizer, counter, state, tc, total_steps, dist)
    t0, tokens0, last, stopped = time.perf_counter(), state.tokens_seen, None, False
    while state.step < total_steps and not stopped:
        yielded = 0
        for n_global, batch in distributed.rank_batches(source, tc.batch_tokens, epoch=state.epoch, seed=tc.seed,
                                                        skip=state.batch_in_epoch, dist=dist):
            yielded += 1
            stats = loop.step(torch.as_tensor(batch).to(device=dev, dtype=torch.float32), n_global)
            state.batch_in_epoch += 1
            rate = (state.tokens_seen - tokens0) / max(time.perf_counter() - t0, 1e-9)
            last = loop.progress(stats, rate)
            if on_progress is not None:
                on_progress(last)
            if ckpt_dir is not None and tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                _save(ckpt_dir, sae, optimizer, loop.counter, state, dist)
            stop = should_stop is not None and should_stop()
            if dist.distributed:
                stop = distributed.any_rank(stop, dist, dev)
            if state.step >= total_steps or stop:
                stopped = state.step < total_steps
                break
        else:
            if yielded == 0 and state.batch_in_epoch == 0:
                raise SAEError(f"the token source yielded no batches for epoch {state.epoch}")
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        if state.batch_in_epoch >= n_batches:                      # ended exactly on an epoch boundary
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    path = _save(ckpt_dir, sae, optimizer, loop.counter, state, dist) if ckpt_dir is not None else None
    sae = sae.cpu().eval()
    for p in sae.parameters():
        p.grad = None
    sae.training_info = training_record(state)
    return TrainResult(sae, asdict(last) if last else {}, state.step, stopped, path, plan)


def training_record(state: TrainerState) -> dict:
    """What the trained SAE's file keeps about its run (see :func:`.io.sae_tensors_and_metadata`)."""
    return {"train_config": dict(state.train_config), "run": dict(state.plan), "steps": state.step,
            "tokens_seen": state.tokens_seen, "threshold_updates": state.threshold_updates,
            "aux_steps": state.aux_steps, "max_dead": state.max_dead}


def _save(ckpt_dir: Path, sae, optimizer, counter, state: TrainerState, dist: DistContext) -> Path:
    """Rank 0 writes the checkpoint (the state is the same on every rank); all wait until it is there."""
    if not dist.distributed:
        return save_checkpoint(ckpt_dir, sae, optimizer, counter, state)
    if dist.is_main:
        save_checkpoint(ckpt_dir, sae, optimizer, counter, state)
    dist.barrier()
    return ckpt_dir / CHECKPOINT_FILE


def _adam(sae: MatryoshkaSAE, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam (no weight decay, eps 1e-8); the fused kernel where this torch has it (same maths, ~4× faster step)."""
    beta1, beta2 = tc.betas  # any pair: a caller may have passed a list
    try:
        return torch.optim.Adam(sae.parameters(), lr=tc.lr, betas=(beta1, beta2), fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(sae.parameters(), lr=tc.lr, betas=(beta1, beta2))


class _Loop:
    """The per-step update, holding the mutable training state."""

    def __init__(self, sae, optimizer, counter, state: TrainerState, tc: TrainConfig, total_steps: int,
                 dist: DistContext = SINGLE):
        self.sae, self.optimizer, self.counter, self.state, self.tc = sae, optimizer, counter, state, tc
        self.dist = dist
        self.total_steps = total_steps
        if tc.dead_tokens is None or tc.threshold_start_step is None:
            raise ValueError("the training loop needs a planned TrainConfig (plan_run fills its auto fields)")
        self.dead_tokens, self.threshold_start_step = tc.dead_tokens, tc.threshold_start_step
        self.params = list(sae.parameters())
        self.dead_fraction, self.n_dead = 0.0, 0

    def step(self, x: torch.Tensor, n_global: int | None = None) -> sparse_step.StepStats:
        """One step on ``x``: the whole batch, or this rank's slice of a global batch of ``n_global`` tokens."""
        sae, tc, st, dist = self.sae, self.tc, self.state, self.dist
        n = x.shape[0] if n_global is None else n_global
        if st.step == 0:
            distributed.init_from_data(sae, x, torch.Generator().manual_seed(tc.seed), dist)
        sel = sparse_step.select(sae, x, sae.config.k, dist)
        # Counters first, as dictionary_learning does: a latent that fires in this batch is not dead.
        self.counter += n
        self.counter[distributed.fired_anywhere(sel.fired(self.counter.numel()), dist)] = 0
        dead = self.counter >= self.dead_tokens
        n_dead = self.n_dead = int(dead.sum())
        self.dead_fraction = n_dead / dead.numel()
        stats = sparse_step.loss_and_grads(sae, sel, dead=dead if n_dead else None, aux_alpha=tc.aux_alpha,
                                           dist=dist, n_global=n)
        del sel                                                    # frees the [B, m] pre-activations
        distributed.all_reduce_grads(self.params, dist)           # no-op on one process
        if n_dead and st.aux_steps is not None:
            st.aux_steps += 1
        if st.max_dead is not None:
            st.max_dead = max(st.max_dead, n_dead)
        if st.step > self.threshold_start_step:                    # strictly after, as the reference
            st.threshold = update_threshold(st.threshold, float(stats.min_kept), tc.threshold_beta)
            sae.threshold.fill_(st.threshold)
            if st.threshold_updates is not None:
                st.threshold_updates += 1
        sae.remove_parallel_decoder_grad_()
        torch.nn.utils.clip_grad_norm_(self.params, tc.grad_clip)
        self.optimizer.step()
        sae.normalize_decoder_()
        st.step += 1
        st.tokens_seen += n
        return stats

    def progress(self, s: sparse_step.StepStats, rate: float) -> TrainProgress:
        st = self.state
        return TrainProgress(step=st.step, total_steps=self.total_steps, epoch=st.epoch, tokens_seen=st.tokens_seen,
                             loss=float(s.loss), mse=float(s.mse), aux_loss=float(s.aux_loss), fvu=float(s.fvu),
                             l0=float(s.l0), dead_fraction=self.dead_fraction, threshold=st.threshold,
                             tokens_per_s=rate, min_kept=float(s.min_kept), n_dead=self.n_dead)
