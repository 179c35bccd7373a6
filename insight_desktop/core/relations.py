"""Concept relations (docs/method.md §4): one streaming pass over a token store → :class:`Relations`.

This module is the entry point; the parts live next to it:

* :mod:`.relations_codes` — :class:`SparseCodes` (CSR codes of a batch), :class:`RelationsError`;
* :mod:`.relations_accumulate` — :class:`RelationsAccumulator`, sparse streaming statistics, built
  from :mod:`.relations_pairs` (C and D, memory ∝ non-zeros) and :mod:`.relations_top` (top
  tokens per concept with their codes);
* :mod:`.relations_model` — :class:`Relations`, parents (a DAG), display tree, μ;
* :mod:`.relations_io` — the safetensors file format, written array by array.

Checkpoints: ``checkpoint_dir/relations_state.safetensors`` holds the accumulator's arrays and, in
the file's metadata, the counters as JSON (tokens and images done, a digest of those images,
the SAE fingerprint and settings), so one atomic rename commits both together.

Stopping: when ``should_stop()`` returns true, :func:`compute_relations` saves its checkpoint
(if it has a ``checkpoint_dir``) and **returns None**; calling it again with the same
``checkpoint_dir`` continues from the saved token position. A stop is not an error, so it is
not an exception (the GUI worker reports errors, not cancellations).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .relations_accumulate import RelationsAccumulator
from .relations_codes import DEFAULT_EPS, RelationsError, SparseCodes, ragged_arange
from .relations_io import SafetensorsReader, write_safetensors
from .relations_model import DEFAULT_TAU, Relations

__all__ = [
    "CHECKPOINT_FILE", "DEFAULT_EPS", "DEFAULT_TAU", "Relations", "RelationsAccumulator", "RelationsError",
    "RelationsProgress", "SparseCodes", "compute_relations", "compute_relations_from_codes", "ragged_arange",
]

CHECKPOINT_FILE = "relations_state.safetensors"
_CHECKPOINT_KEY = "insight_relations_state"
_CHECKPOINT_FORMAT = "insight-relations-state"


@dataclass(frozen=True)
class RelationsProgress:
    """Reported through ``on_progress`` after every batch."""

    tokens_done: int
    total_tokens: int
    images_done: int
    total_images: int
    elapsed_s: float        # this run only
    tokens_per_s: float     # this run only (a resumed run does not count the restored tokens)
    resumed_from: int       # tokens restored from the checkpoint (0 for a fresh run)


def compute_relations_from_codes(batches: Iterable[tuple[SparseCodes, np.ndarray]], n_concepts: int,
                                 group_ends: Sequence[int], tau: float = DEFAULT_TAU, *, top_n: int = 30,
                                 eps: float = DEFAULT_EPS, provenance: dict | None = None) -> Relations:
    """Relations of codes given as ``(codes, global token ids)`` batches, in one pass."""
    acc = RelationsAccumulator(n_concepts, top_n=top_n, eps=eps)
    for codes, token_ids in batches:
        acc.update(codes, token_ids)
    return acc.to_relations(group_ends, tau, provenance, release=True)


def compute_relations(store, sae, *, batch_tokens: int = 8192, device: Any = "cpu", tau: float = DEFAULT_TAU,
                      top_n: int = 30, eps: float = DEFAULT_EPS, checkpoint_dir: str | Path | None = None,
                      checkpoint_every_tokens: int = 5_000_000,
                      on_progress: Callable[[RelationsProgress], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> Relations | None:
    """One streaming pass of ``sae`` over every token of ``store`` (a :class:`~.features.TokenStore`).

    Global token ids are positions in the store's order (image 0's tokens, image 1's, …). Batches
    are runs of whole images with at least ``batch_tokens`` tokens, encoded under
    ``torch.inference_mode`` on ``device`` (an ``nn.Module`` SAE is moved there) and sparsified
    on the device. ``sae`` needs ``.config`` (an SAEConfig) and ``.encode(x [n, d]) → z [n, m]``.

    With ``checkpoint_dir`` the accumulator state is saved atomically every
    ``checkpoint_every_tokens`` tokens, on a stop and at the end; a re-run resumes from it (and a
    re-run of a finished pass returns at once). A checkpoint made for another SAE, other
    settings or other images raises :class:`RelationsError`. Returns None when stopped.
    """
    import torch

    config = sae.config
    device = torch.device(device)
    if isinstance(sae, torch.nn.Module) and any(p.device != device for p in sae.parameters()):
        sae = sae.to(device)
    counts = np.array([int(rec["count"]) for rec in store.images], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total_tokens, total_images = int(offsets[-1]), len(counts)
    settings = {"n_concepts": int(config.n_concepts), "top_n": int(top_n), "eps": float(eps),
                "sae": _sae_fingerprint(sae), "backbone": str(store.manifest["backbone"]["id"])}
    acc = RelationsAccumulator(config.n_concepts, top_n=top_n, eps=eps)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    image = 0
    if ckpt is not None and ckpt.exists():
        image = _load_checkpoint(ckpt, acc, settings, store, offsets)
    resumed_from, saved_at = acc.n_tokens, acc.n_tokens
    t0 = time.perf_counter()

    def save() -> None:
        if ckpt is not None:
            _save_checkpoint(ckpt, acc, settings, store, image)

    while image < total_images:
        if should_stop is not None and should_stop():
            save()
            return None
        end = min(int(np.searchsorted(offsets, offsets[image] + batch_tokens, side="left")), total_images)
        end = max(end, image + 1)
        tokens = np.concatenate([store.image_tokens(i) for i in range(image, end)]).astype(np.float32, copy=False)
        with torch.inference_mode():
            z = sae.encode(torch.from_numpy(tokens).to(device))
            codes = SparseCodes.from_dense(z, eps)
        del z
        acc.update(codes, np.arange(offsets[image], offsets[end], dtype=np.int64))
        image = end
        if ckpt is not None and acc.n_tokens - saved_at >= checkpoint_every_tokens:
            save()
            saved_at = acc.n_tokens
        if on_progress is not None:
            elapsed = time.perf_counter() - t0
            on_progress(RelationsProgress(acc.n_tokens, total_tokens, image, total_images, elapsed,
                                          (acc.n_tokens - resumed_from) / max(elapsed, 1e-9), resumed_from))
    if ckpt is not None and (saved_at != acc.n_tokens or not ckpt.exists()):
        save()
    provenance = {"store": str(Path(store.root).resolve()), "backbone": settings["backbone"],
                  "sae": settings["sae"], "images": total_images}
    return acc.to_relations(config.group_ends, tau, provenance, release=True)


# ---------------------------------------------------------------------------- checkpoints
def _sae_fingerprint(sae) -> dict[str, Any]:
    """What identifies the codes an SAE produces: its config and, for a module, a hash of its state."""
    import torch

    config = sae.config.to_dict() if hasattr(sae.config, "to_dict") else {"n_concepts": int(sae.config.n_concepts)}
    out: dict[str, Any] = {"config": config}
    if hasattr(sae, "state_dict"):
        h = hashlib.blake2b(digest_size=16)
        for name, tensor in sorted(sae.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        out["weights_blake2b"] = h.hexdigest()
    return out


def _images_digest(store, n_images: int) -> str:
    """Hash of the (path, token count) list of the first ``n_images`` images: a resumed pass must
    see the same images in the same order (a store may have grown since; that is fine)."""
    h = hashlib.blake2b(digest_size=16)
    for rec in store.images[:n_images]:
        h.update(f"{rec['path']}\0{int(rec['count'])}\n".encode())
    return h.hexdigest()


def _save_checkpoint(path: Path, acc: RelationsAccumulator, settings: dict, store, images_done: int) -> None:
    # The counters travel in the same file as the arrays, so one rename commits both together.
    meta = {"format": _CHECKPOINT_FORMAT, "tokens_done": acc.n_tokens, "images_done": images_done,
            "images_digest": _images_digest(store, images_done), "settings": settings}
    write_safetensors(path, acc.state_tensors(), {_CHECKPOINT_KEY: json.dumps(meta, sort_keys=True)})


def _load_checkpoint(path: Path, acc: RelationsAccumulator, settings: dict, store, offsets: np.ndarray) -> int:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            meta = json.loads((fh.metadata() or {}).get(_CHECKPOINT_KEY, "null"))
            if not isinstance(meta, dict) or meta.get("format") != _CHECKPOINT_FORMAT:
                raise RelationsError(f"'{path}' is not a relations checkpoint; delete it to start over")
            if meta["settings"] != json.loads(json.dumps(settings)):
                raise RelationsError(f"relations checkpoint '{path}' was made with another SAE or other settings; "
                                     f"delete it or choose another checkpoint folder")
            images_done = int(meta["images_done"])
            if (images_done > len(store.images) or meta["images_digest"] != _images_digest(store, images_done)
                    or int(offsets[images_done]) != int(meta["tokens_done"])):
                raise RelationsError(f"relations checkpoint '{path}' belongs to a token store with other images; "
                                     f"delete it or choose another checkpoint folder")
            acc.load_state_dict(SafetensorsReader(fh))  # array by array: no second full copy in memory
    except (SafetensorError, OSError, ValueError) as exc:
        raise RelationsError(f"relations checkpoint '{path}' is damaged ({exc}); delete it to start over") from exc
    if acc.n_tokens != int(meta["tokens_done"]):
        raise RelationsError(f"relations checkpoint '{path}' is inconsistent (token counts disagree)")
    return images_done
