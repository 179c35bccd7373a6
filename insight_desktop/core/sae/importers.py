"""Importing SAEs trained elsewhere.

``dictionary_learning``'s ``MatryoshkaBatchTopKSAE`` is the format of the authors' released
checkpoint (docs/method.md §2): a state dict with ``W_enc`` [d, m], ``b_enc`` [m], ``W_dec`` [m, d],
``b_dec`` [d], ``k``, ``threshold`` and ``group_sizes``. Its parameters mean exactly what ours
mean, so importing is renaming plus validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from .config import SAEConfig
from .errors import SAEError
from .io import sae_from_tensors
from .model import MatryoshkaSAE

DICTIONARY_LEARNING_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec", "k", "threshold", "group_sizes")


def import_dictionary_learning(state_dict_or_path: Mapping[str, torch.Tensor] | str | Path) -> MatryoshkaSAE:
    """A :class:`MatryoshkaSAE` (CPU, eval) from a dictionary_learning Matryoshka state dict or its file.

    Files: ``.safetensors``, or a torch file read with ``torch.load(weights_only=True)`` (no
    arbitrary unpickling). Raises :class:`SAEError` naming what is missing or inconsistent.
    """
    source = "state dict"
    if isinstance(state_dict_or_path, (str, Path)):
        source = str(state_dict_or_path)
        state = _load_file(Path(state_dict_or_path))
    else:
        state = dict(state_dict_or_path)
    state = {k.removeprefix("ae.").removeprefix("module."): v for k, v in state.items()}
    missing = [k for k in DICTIONARY_LEARNING_KEYS if k not in state]
    if missing:
        raise SAEError(f"{source} is not a dictionary_learning MatryoshkaBatchTopKSAE state dict: "
                       f"missing {missing} (has {sorted(state)[:12]})")
    W_enc = torch.as_tensor(state["W_enc"])
    if W_enc.dim() != 2:
        raise SAEError(f"{source}: W_enc must be [d, m], got shape {tuple(W_enc.shape)}")
    d, m = W_enc.shape
    try:
        group_sizes = tuple(int(g) for g in torch.as_tensor(state["group_sizes"]).reshape(-1).tolist())
        config = SAEConfig(d_in=int(d), n_concepts=int(m), k=int(torch.as_tensor(state["k"]).item()),
                           group_sizes=group_sizes)
    except (ValueError, RuntimeError) as exc:
        raise SAEError(f"{source}: inconsistent k / group_sizes for W_enc of shape {(d, m)}: {exc}") from exc
    tensors = {n: torch.as_tensor(state[n]) for n in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
    return sae_from_tensors(config, tensors, source=source)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SAEError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse the file means the same to the user
        raise SAEError(f"checkpoint {path} cannot be read as safetensors or a weights-only torch file: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise SAEError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)
