"""Training values that depend on the length of the run (docs/method.md §2): the step after which
the inference-threshold EMA starts, and how many silent tokens make a latent "dead" for AuxK.

The reference values, θ EMA for steps > 1000 and dead after 10 M tokens, were set for runs of
hundreds of thousands of 16 k-token steps (CC12M, 3 epochs ≈ 350 k steps, 5.7 B tokens). A folder
of 5,000 images trained for 3 epochs is 2.9 M tokens in ~180 steps: with the reference values θ
would never be estimated (inference then falls back to BatchTopK over each image) and no latent
could ever count as dead (AuxK never runs). A :class:`~.config.TrainConfig` field left at
``None`` ("auto") is therefore scaled to the run, and an explicit value is used as given:

``threshold_start_step = min(1000, ⌊0.9 · total_steps⌋, total_steps − 2)``
    θ should be the BatchTopK cut-off of the *trained* SAE. In the reference, β = 0.999 makes θ
    an average over the last ~1000 of ~350 k steps, i.e. the end of the run; the 1000-step wait
    only skips the first, fastest-changing steps. In a run of a few hundred steps the EMA cannot
    forget: θ stays within a few per cent of its first value, and the cut-off keeps falling while
    the dictionary trains. So a short run starts the EMA late, after 90 % of its steps (and at
    least one update happens: ``total_steps − 2``). Measured on planted data (d 64, m 512, k 8,
    225 steps of 784 tokens, lr 1e-4 and 1e-3): starting after 10 % of the run left θ 13–43 %
    above the end-of-run cut-off, so inference kept 2.9–4.3 concepts per token instead of 8;
    after 90 % it kept 7.5–7.8. One batch's cut-off is a quantile of k·B values and varies little
    between batches (s.d. < 1 % there), so the few late updates are enough. From 1,112 steps on,
    this is the reference's 1000.
``dead_tokens = min(10 M, max(⌊total_tokens / 8⌋, 4 · tokens_per_step))``
    A latent silent for an eighth of the run would fire at most ~8 times in the whole run at its
    current rate: for a concept model of this corpus it is dead. The window leaves AuxK the other
    7/8 of the run to revive it. The floor of 4 batches keeps live latents from being flagged by
    chance: an average latent fires k·B/m times per batch (≈ 24 at the reference size), so one at
    a tenth of the average rate stays silent for 4 batches with probability e^(−9.6) ≈ 7·10⁻⁵.

Runs of ≥ 1,112 steps and ≥ 80 M tokens get exactly the reference values (CC12M: 1000 and 10 M).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import TrainConfig

REFERENCE_THRESHOLD_START_STEP = 1000
REFERENCE_DEAD_TOKENS = 10_000_000
#: θ's EMA starts after this fraction of the run (when that is below the reference 1000 steps)
THRESHOLD_START_FRACTION = 0.9
#: a latent is dead after being silent for this fraction of the run's tokens …
DEAD_FRACTION = 1 / 8
#: … but never after fewer than this many batches
DEAD_MIN_BATCHES = 4
#: the TrainConfig fields that "auto" (None) scales to the run
AUTO_FIELDS = ("threshold_start_step", "dead_tokens")


@dataclass(frozen=True)
class RunPlan:
    """A run's length and the training values it uses (``train_config`` has no ``None`` left)."""

    train_config: TrainConfig
    total_steps: int
    total_tokens: int
    auto: tuple[str, ...]      # fields that were chosen automatically (scaled to this run)
    resumed: bool = False      # auto fields were taken from the checkpoint being resumed

    def describe(self) -> str:
        """One line per run-dependent value, saying whether it was given or chosen and why."""
        tc = self.train_config
        run = f"{self.total_steps:,} steps / {_tokens(self.total_tokens)} tokens"
        why = "auto, kept from the checkpoint being resumed" if self.resumed else f"auto, scaled to a run of {run}"
        reference = f"auto, the reference value for a run this long ({run})"

        def how(name: str, value: int | None, ref: int) -> str:
            if name not in self.auto:
                return "as given"
            return reference if value == ref and not self.resumed else why

        return "\n".join([
            f"threshold EMA  after step {tc.threshold_start_step:,} "
            f"({how('threshold_start_step', tc.threshold_start_step, REFERENCE_THRESHOLD_START_STEP)})",
            f"dead latents   silent for {tc.dead_tokens:,} tokens "
            f"({how('dead_tokens', tc.dead_tokens, REFERENCE_DEAD_TOKENS)})",
        ])

    def to_dict(self) -> dict:
        return {"total_steps": self.total_steps, "total_tokens": self.total_tokens, "auto": list(self.auto)}


def auto_threshold_start_step(total_steps: int) -> int:
    """θ is updated at the (0-based) steps after this one; runs of < 2 steps cannot estimate it."""
    late = min(int(THRESHOLD_START_FRACTION * total_steps), total_steps - 2)
    return max(0, min(REFERENCE_THRESHOLD_START_STEP, late))


def auto_dead_tokens(total_tokens: int, tokens_per_step: float) -> int:
    window = max(int(DEAD_FRACTION * total_tokens), int(DEAD_MIN_BATCHES * tokens_per_step))
    return max(1, min(REFERENCE_DEAD_TOKENS, window))


def plan_run(tc: TrainConfig, *, n_tokens: int, n_batches: int, total_steps: int,
             kept: dict | None = None) -> RunPlan:
    """Resolve the ``None`` fields of ``tc`` for a run of ``total_steps`` over ``n_batches`` batches
    per epoch of a corpus of ``n_tokens``.

    ``kept`` is the train config stored in a checkpoint being resumed: auto fields take its values,
    so a resumed run keeps the trajectory it started with even if ``epochs`` changed since.
    """
    tokens_per_step = n_tokens / max(n_batches, 1)
    total_tokens = int(round(total_steps * tokens_per_step))
    auto = tuple(f for f in AUTO_FIELDS if getattr(tc, f) is None)
    chosen = {"threshold_start_step": auto_threshold_start_step(total_steps),
              "dead_tokens": auto_dead_tokens(total_tokens, tokens_per_step)}
    resumed = False
    for f in auto:
        if kept and kept.get(f) is not None:
            chosen[f], resumed = int(kept[f]), True

    def resolved(name: str, given: int | None) -> int:
        return chosen[name] if given is None else given

    planned = replace(tc, threshold_start_step=resolved("threshold_start_step", tc.threshold_start_step),
                      dead_tokens=resolved("dead_tokens", tc.dead_tokens))  # the AUTO_FIELDS
    return RunPlan(planned, total_steps, total_tokens, auto, resumed)


def _tokens(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)
