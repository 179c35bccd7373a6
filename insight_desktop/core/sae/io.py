"""Saving and loading a trained SAE: one safetensors file, config embedded, JSON sidecar.

``<name>.safetensors`` holds W_enc, b_enc, W_dec, b_dec, threshold and, in its metadata, the
SAEConfig as JSON (key ``insight_sae_config``), ``format_version`` and, for SAEs trained here, the
record of the training run (key ``insight_sae_training``: the values used, θ updates, AuxK steps);
``<name>.safetensors.json`` repeats the config and the record for people. Loading validates
everything and raises :class:`SAEError` with the file name and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..fileio import atomic_save_safetensors, atomic_write_json
from .config import SAEConfig
from .errors import SAEError
from .model import MatryoshkaSAE

SAE_FORMAT_VERSION = 1
CONFIG_KEY = "insight_sae_config"
VERSION_KEY = "format_version"
TRAINING_KEY = "insight_sae_training"
TENSOR_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


def expected_shapes(config: SAEConfig) -> dict[str, tuple[int, ...]]:
    d, m = config.d_in, config.n_concepts
    return {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,), "threshold": ()}


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def sae_tensors_and_metadata(sae: MatryoshkaSAE) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and safetensors metadata of an SAE file (also used inside model bundles)."""
    tensors = {n: getattr(sae, n).detach().to("cpu", torch.float32) for n in TENSOR_NAMES}
    tensors["threshold"] = tensors["threshold"].reshape(())
    metadata = {CONFIG_KEY: json.dumps(sae.config.to_dict()), VERSION_KEY: str(SAE_FORMAT_VERSION)}
    if getattr(sae, "training_info", None) is not None:
        metadata[TRAINING_KEY] = json.dumps(sae.training_info)
    return tensors, metadata


def save_sae(sae: MatryoshkaSAE, path: str | Path) -> Path:
    """Write ``path`` (safetensors) and its JSON sidecar atomically; returns ``path``."""
    path = Path(path)
    tensors, metadata = sae_tensors_and_metadata(sae)
    atomic_save_safetensors(path, tensors, metadata=metadata)
    atomic_write_json(sidecar_path(path), {VERSION_KEY: SAE_FORMAT_VERSION, "config": sae.config.to_dict(),
                                           "threshold": float(sae.threshold),
                                           "n_parameters": sae.n_parameters,
                                           "training": getattr(sae, "training_info", None)})
    return path


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> MatryoshkaSAE:
    """Read an SAE written by :func:`save_sae`; eval mode, on ``device``."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise SAEError(f"SAE file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SAEError(f"SAE file {path} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    try:
        version = int(meta[VERSION_KEY])
    except (KeyError, ValueError):
        raise SAEError(f"SAE file {path} has no valid {VERSION_KEY!r} in its metadata; "
                       "is it an Insight SAE? (dictionary_learning checkpoints: use import)") from None
    if version > SAE_FORMAT_VERSION:
        raise SAEError(f"SAE file {path} has format version {version}, newer than this version of "
                       f"Insight Desktop reads ({SAE_FORMAT_VERSION}); please update the application")
    try:
        config = SAEConfig.from_dict(json.loads(meta[CONFIG_KEY]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SAEError(f"SAE file {path} has no valid SAE config in its metadata: {exc}") from exc
    return sae_from_tensors(config, tensors, source=str(path), metadata=meta).to(device)


def training_info_of(metadata: dict[str, str] | None) -> dict | None:
    """The training record in an SAE file's metadata; None when absent, unreadable or of the wrong
    shape (it is only informative, so a damaged record must not make the weights unusable)."""
    raw = (metadata or {}).get(TRAINING_KEY)
    if not isinstance(raw, str) or len(raw) > _MAX_RECORD_CHARS:
        return None
    try:
        info = json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    return info if _is_record(info) else None


_MAX_RECORD_CHARS = 1 << 20
_RECORD_COUNTS = ("steps", "tokens_seen", "threshold_updates", "aux_steps", "max_dead")


def _is_record(info: object) -> bool:
    """Whether ``info`` has the types :func:`.trainer.training_record` writes (what is shown relies on them)."""
    if not isinstance(info, dict):
        return False
    counts_ok = all(info.get(k) is None or (isinstance(info[k], int) and not isinstance(info[k], bool))
                    for k in _RECORD_COUNTS)
    tc, run = info.get("train_config", {}), info.get("run", {})
    return (counts_ok and isinstance(tc, dict) and isinstance(run, dict)
            and isinstance(run.get("auto", []), (list, tuple)) and all(isinstance(a, str) for a in run.get("auto", [])))


def sae_from_tensors(config: SAEConfig, tensors: dict[str, torch.Tensor], *, source: str,
                     metadata: dict[str, str] | None = None) -> MatryoshkaSAE:
    """Build a module from named tensors, checking that all are present with the right shapes;
    ``metadata`` (the file's) supplies the training record."""
    missing = [n for n in TENSOR_NAMES if n not in tensors]
    if missing:
        raise SAEError(f"SAE file {source} lacks tensors {missing}")
    # A scalar threshold may come as shape () or (1,) from other writers.
    wrong = {n: tuple(tensors[n].shape) for n, shape in expected_shapes(config).items()
             if (() if n == "threshold" and tensors[n].numel() == 1 else tuple(tensors[n].shape)) != shape}
    if wrong:
        raise SAEError(f"SAE file {source}: tensor shapes {wrong} do not match the config "
                       f"(d={config.d_in}, m={config.n_concepts}): expected {expected_shapes(config)}")
    sae = MatryoshkaSAE(config)
    with torch.no_grad():
        for n in TENSOR_NAMES:
            t = tensors[n].to(torch.float32)
            if not torch.isfinite(t).all():
                raise SAEError(f"SAE file {source}: tensor {n} contains NaN or infinite values")
            getattr(sae, n).copy_(t.reshape(getattr(sae, n).shape))
    sae.training_info = training_info_of(metadata)
    return sae.eval()
