"""Concept relations (docs/method.md §4): one streaming pass over concept codes → :class:`Relations`.

* :class:`RelationsAccumulator` — every §4 statistic accumulated over batches of sparse codes:
  firing counts ``f`` (a bincount) and the token count, :class:`~.statistics.PairSums` (C and D)
  and :class:`~.statistics.TopTokenTable` (top tokens and their codes). Its state is a flat set of
  named numpy arrays (:meth:`RelationsAccumulator.state_dict`), which the pass checkpoints as
  safetensors; resuming from it is bit-identical to not stopping.
* :func:`compute_relations` — the pass of an SAE over a token store, with checkpoints;
  :func:`compute_relations_from_codes` — the same over codes already at hand.

The other parts: :mod:`.codes` (:class:`SparseCodes`, the CSR codes of a batch) and
:mod:`.relations` (the :class:`Relations` value: parents, display tree, μ, and its file).

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
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from ..safetensors_io import LazyTensor, SafetensorsReader, write_safetensors
from .codes import DEFAULT_EPS, SparseCodes
from .relations import DEFAULT_TAU, Relations, RelationsError
from .statistics import PairSums, TopTokenTable

__all__ = ["CHECKPOINT_FILE", "RelationsAccumulator", "RelationsProgress", "compute_relations",
           "compute_relations_from_codes"]

CHECKPOINT_FILE = "relations_state.safetensors"
_CHECKPOINT_KEY = "insight_relations_state"
_CHECKPOINT_FORMAT = "insight-relations-state"


# ----------------------------------------------------------------------------- accumulating
STATE_FORMAT_VERSION = 1


class RelationsAccumulator:
    """Accumulates f, C, D, n_tokens and per-concept top tokens (with their codes) over a stream.

    ``update(codes, token_ids)`` may be called with batches of any size; the result is the same
    as for one batch (counts and tables exactly, D up to float64 summation order). Global token
    ids must be unique across the stream: they identify the top tokens and break ties between
    equal values (the smaller id ranks first). ``pair_options`` tune
    :class:`~.statistics.PairSums` (memory/speed trade-offs, not results).
    """

    def __init__(self, n_concepts: int, top_n: int = 30, eps: float = DEFAULT_EPS, **pair_options):
        if n_concepts <= 0 or top_n <= 0:
            raise ValueError("n_concepts and top_n must be positive")
        self.n_concepts, self.top_n, self.eps = int(n_concepts), int(top_n), float(eps)
        self.n_tokens = 0
        self.f = np.zeros(self.n_concepts, dtype=np.int64)
        self._pairs = PairSums(self.n_concepts, **pair_options)
        self._top = TopTokenTable(self.n_concepts, self.top_n)

    def update(self, codes: SparseCodes, token_ids: np.ndarray) -> None:
        """Add one batch: ``codes`` of ``n`` tokens with their global ids ``token_ids`` [n]."""
        if codes.n_concepts != self.n_concepts:
            raise ValueError(f"codes have {codes.n_concepts} concepts, the accumulator {self.n_concepts}")
        token_ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if token_ids.size != codes.n_tokens:
            raise ValueError(f"{token_ids.size} token ids for {codes.n_tokens} tokens")
        codes = codes.above(self.eps)  # "active" is z > ε, whatever the producer of the codes kept
        self.n_tokens += codes.n_tokens
        if codes.nnz == 0:
            return
        self.f += np.bincount(codes.indices, minlength=self.n_concepts)
        self._pairs.add(codes)
        self._top.update(codes, token_ids)

    # ------------------------------------------------------------------------------ results
    @property
    def top_values(self) -> np.ndarray:
        return self._top.top_values

    @property
    def top_tokens(self) -> np.ndarray:
        return self._top.top_tokens

    def top_codes(self) -> sp.csr_matrix:
        """Codes of the table tokens as CSR [m·top_n, m] float32 (row c·top_n + r = rank r of concept c)."""
        return self._top.top_codes()

    def pair_matrices(self, release: bool = False) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(C int64, D float64)``, canonical CSR [m, m] with one shared sparsity pattern.

        ``release=True`` consumes the accumulator (lower peak memory); it cannot be updated or
        saved afterwards.
        """
        return self._pairs.matrices(release=release)

    def to_relations(self, group_ends: Sequence[int], tau: float = 0.75, provenance: dict | None = None,
                     release: bool = False):
        """The statistics as :class:`~.relations.Relations` (see :meth:`pair_matrices` for ``release``)."""
        c, d = self.pair_matrices(release=release)
        return Relations(n_concepts=self.n_concepts, n_tokens=self.n_tokens, group_ends=tuple(group_ends),
                         f=self.f.copy(), C=c, D=d, top_tokens=self.top_tokens.copy(),
                         top_values=self.top_values.copy(), top_codes=self.top_codes(), tau=tau, eps=self.eps,
                         provenance=dict(provenance or {}))

    def memory_bytes(self) -> int:
        """Bytes held by the accumulator's arrays (for progress reports and benchmarks)."""
        return self.f.nbytes + self._pairs.memory_bytes() + self._top.memory_bytes()

    # ---------------------------------------------------------------------------- state
    def state_tensors(self) -> list[LazyTensor]:
        """The state as named arrays, each produced only when it is written (see
        :func:`~insight_desktop.core.safetensors_io.write_safetensors`), so saving never holds a second full copy."""
        # Scalars as 1-element arrays: safetensors readers disagree on 0-d shapes.
        scalars = {"format_version": np.array([STATE_FORMAT_VERSION], dtype=np.int64),
                   "n_concepts": np.array([self.n_concepts], dtype=np.int64),
                   "top_n": np.array([self.top_n], dtype=np.int64),
                   "eps": np.array([self.eps], dtype=np.float64),
                   "n_tokens": np.array([self.n_tokens], dtype=np.int64)}
        out = [LazyTensor.of(k, v) for k, v in scalars.items()] + [LazyTensor.of("f", self.f)]
        return out + self._pairs.state_tensors() + self._top.state_tensors()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume, as flat numpy arrays (safetensors-ready, no pickles)."""
        return {t.name: t.produce() for t in self.state_tensors()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` (any mapping; a lazy one is read array by array).

        Raises :class:`RelationsError` when the state is incomplete or does not fit this accumulator.
        """
        def scalar(key: str):
            return np.asarray(state[key]).reshape(-1)[0].item()

        try:
            if scalar("format_version") > STATE_FORMAT_VERSION:
                raise RelationsError(f"relations state format {scalar('format_version')} is newer than "
                                     f"this version ({STATE_FORMAT_VERSION})")
            for key, mine in (("n_concepts", self.n_concepts), ("top_n", self.top_n), ("eps", self.eps)):
                if scalar(key) != mine:
                    raise RelationsError(f"relations state has {key} = {scalar(key)}, expected {mine}")
            f = np.asarray(state["f"], dtype=np.int64)
            if f.shape != (self.n_concepts,):
                raise RelationsError(f"relations state: f has shape {f.shape}, expected ({self.n_concepts},)")
            pairs, top = PairSums(self.n_concepts), TopTokenTable(self.n_concepts, self.top_n)
            pairs.chunk_tokens, pairs.flush_ratio = self._pairs.chunk_tokens, self._pairs.flush_ratio
            pairs.min_flush_nnz = self._pairs.min_flush_nnz
            pairs.load_state(state)
            top.load_state(state)
            n_tokens = int(scalar("n_tokens"))
        except KeyError as exc:
            raise RelationsError(f"relations state is incomplete: {exc.args[0]!r} is missing") from exc
        except (ValueError, IndexError, TypeError) as exc:
            raise RelationsError(f"relations state is inconsistent: {exc}") from exc
        self.n_tokens, self.f, self._pairs, self._top = n_tokens, f.copy(), pairs, top


# ----------------------------------------------------------------------------- the pass
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
    # the store's content, not its folder: a build's store lives in a work folder that is deleted
    # afterwards, and a resumed build must give the same bytes as an uninterrupted one
    provenance = {"images_digest": _images_digest(store, total_images), "backbone": settings["backbone"],
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
