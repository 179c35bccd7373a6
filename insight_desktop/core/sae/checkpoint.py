"""Resumable training checkpoints: weights, Adam moments, dead-latent counters, loop position.

One safetensors file holds every tensor and, in its metadata, the trainer state as JSON, so the
tensors and the state they belong to are written in one atomic rename and cannot disagree.
``trainer_state.json`` next to it repeats the state for people and scripts; resume ignores it.
No pickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_save_safetensors, atomic_write_json
from .config import SAEConfig, TrainConfig
from .errors import SAEError
from .model import MatryoshkaSAE

CHECKPOINT_FILE = "checkpoint.safetensors"
STATE_FILE = "trainer_state.json"
CHECKPOINT_FORMAT_VERSION = 1
_STATE_KEY = "insight_trainer_state"
_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
# Train settings that change the trajectory: a checkpoint made with other values cannot be resumed.
# (epochs and checkpoint_every may change: that only extends or shortens the same run.)
TRAJECTORY_FIELDS = ("lr", "betas", "batch_tokens", "aux_alpha", "dead_tokens", "threshold_start_step",
                     "threshold_beta", "grad_clip", "seed")


@dataclass
class TrainerState:
    """Where the loop stands: the next step reads batch ``batch_in_epoch`` of ``epoch``."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens_seen: int = 0
    threshold: float = -1.0
    seed: int = 0
    sae_config: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)   # as resolved for the run (no "auto" left)
    format_version: int = CHECKPOINT_FORMAT_VERSION
    # What happened so far, for the trained SAE's record. None: unknown (a checkpoint written before
    # these were counted); a fresh run starts them at 0.
    threshold_updates: int | None = None
    aux_steps: int | None = None        # steps with at least one dead latent, i.e. with an AuxK term
    max_dead: int | None = None         # most dead latents at any step
    plan: dict[str, Any] = field(default_factory=dict)          # RunPlan.to_dict() of the run


def save_checkpoint(directory: Path, sae: MatryoshkaSAE, optimizer: torch.optim.Optimizer,
                    tokens_since_fired: torch.Tensor, state: TrainerState) -> Path:
    """Write ``directory/checkpoint.safetensors`` (+ the JSON copy of the state), atomically."""
    directory = Path(directory)
    tensors = {f"model.{n}": getattr(sae, n).detach() for n in _PARAMS}
    tensors["model.threshold"] = sae.threshold.detach().reshape(())
    tensors["tokens_since_fired"] = tokens_since_fired
    for name, p in zip(_PARAMS, _ordered_params(sae)):
        st = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq", "step"):
            if key in st:
                dtype = torch.float32 if key == "step" else st[key].dtype
                tensors[f"optim.{name}.{key}"] = torch.as_tensor(st[key]).detach().to(dtype)
    state_dict = asdict(state)
    path = directory / CHECKPOINT_FILE
    atomic_save_safetensors(path, tensors, metadata={_STATE_KEY: json.dumps(state_dict)})
    atomic_write_json(directory / STATE_FILE, state_dict)
    return path


def has_checkpoint(directory: Path | None) -> bool:
    return directory is not None and (Path(directory) / CHECKPOINT_FILE).is_file()


def load_checkpoint(directory: Path, sae: MatryoshkaSAE, optimizer: torch.optim.Optimizer,
                    sae_config: SAEConfig, train_config: TrainConfig) -> tuple[TrainerState, torch.Tensor]:
    """Restore ``sae`` and ``optimizer`` in place; return the state and the fired counters.

    Raises :class:`SAEError` if the file is unreadable or was made with another configuration.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / CHECKPOINT_FILE
    device = sae.W_dec.device
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SAEError(f"training checkpoint {path} is unreadable ({exc}); delete it or train without resume") from exc
    try:
        state = TrainerState(**json.loads(meta[_STATE_KEY]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SAEError(f"training checkpoint {path} has no valid trainer state in its metadata") from exc
    if state.format_version > CHECKPOINT_FORMAT_VERSION:
        raise SAEError(f"training checkpoint {path} has format version {state.format_version}; "
                       f"this version of Insight Desktop reads up to {CHECKPOINT_FORMAT_VERSION}")
    _check_same_run(path, state, sae_config, train_config)
    missing = [f"model.{n}" for n in _PARAMS if f"model.{n}" not in tensors]
    if missing or "tokens_since_fired" not in tensors:
        raise SAEError(f"training checkpoint {path} lacks tensors {missing or ['tokens_since_fired']}")
    with torch.no_grad():
        for n in _PARAMS:
            getattr(sae, n).copy_(tensors[f"model.{n}"])
        sae.threshold.fill_(float(tensors.get("model.threshold", torch.tensor(state.threshold))))
    opt_state = {}
    for i, name in enumerate(_PARAMS):
        keys = [f"optim.{name}.{k}" for k in ("exp_avg", "exp_avg_sq", "step")]
        if all(k in tensors for k in keys):
            opt_state[i] = {"exp_avg": tensors[keys[0]], "exp_avg_sq": tensors[keys[1]], "step": tensors[keys[2]]}
    sd = optimizer.state_dict()
    sd["state"] = opt_state
    optimizer.load_state_dict(sd)                    # casts the moments to the parameters' device
    return state, tensors["tokens_since_fired"].to(device=device, dtype=torch.long)


def _check_same_run(path: Path, state: TrainerState, sae_config: SAEConfig, train_config: TrainConfig) -> None:
    problems = []
    if state.sae_config != sae_config.to_dict():
        problems.append(f"SAE config {state.sae_config} ≠ requested {sae_config.to_dict()}")
    want = train_config.to_dict()
    for key in TRAJECTORY_FIELDS:
        # None ("auto") accepts what the checkpoint's run chose; see schedule.plan_run(kept=…)
        if key in state.train_config and want[key] is not None and state.train_config[key] != want[key]:
            problems.append(f"{key} {state.train_config[key]!r} ≠ requested {want[key]!r}")
    if problems:
        raise SAEError(f"training checkpoint {path} belongs to a different run: " + "; ".join(problems)
                       + ". Use another checkpoint folder, or train without resume to start over.")


def _ordered_params(sae: MatryoshkaSAE) -> list[torch.nn.Parameter]:
    """The parameters in the order the optimiser was built with (``sae.parameters()``)."""
    params = dict(sae.named_parameters())
    if tuple(params) != _PARAMS:
        raise SAEError(f"unexpected parameter order {tuple(params)}")
    return [params[n] for n in _PARAMS]
