"""The demo backbone's vocabulary text embeddings, shipped in factorised form.

Naming a concept model embeds every term of the default vocabulary once per template family
(``concepts.vocab``): for ``visual.txt`` that is ~100 k MiniLM texts, 10–25 minutes on two
CPU cores. The full result ([V, 3, 1281] float16, 25 MB) is too big to ship, but it factorises.
A demo text vector is ``normalise([x W + b, 0])`` (``x`` the unit MiniLM vector, ``W``, ``b`` the
bridge, 0 on the anchor axis), and a family embedding is the renormalised mean of its templates'
vectors, so with ``w_i = 1 / ‖x_i W + b‖``

    normalise(Σ_i w_i (x_i W + b)) = normalise(m W + b),   m = Σ_i w_i x_i / Σ_i w_i.

The weighted mean ``m`` (384 numbers, a convex combination of unit vectors: float16 is ample)
reproduces each (term, family) embedding exactly, for 7.7 MB instead of 25 MB.
``scripts/build_demo_vocab_text.py`` writes the file; :func:`read_family_means` reads it back,
only when its metadata names the same text model + bridge, vocabulary and templates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

FORMAT = "insight-demo-vocab-text/1"
#: under resources/: the factorised embeddings of the default vocabulary (``make demo-vocab``)
RESOURCE = ("models", "demo-vocab-text.safetensors")


def family_means(x: torch.Tensor, bridge_W: torch.Tensor, bridge_b: torch.Tensor) -> torch.Tensor:
    """Unit sentence vectors ``x`` [..., k, text_dim] (k templates of one family) → the weighted
    means ``m`` [..., text_dim] with ``normalise(m W + b)`` = the family's embedding."""
    w = 1.0 / torch.linalg.vector_norm(x @ bridge_W + bridge_b, dim=-1, keepdim=True).clamp_min(1e-12)
    return (w * x).sum(dim=-2) / w.sum(dim=-2)


def encode_family_means(embed_sentences: Callable[[list[str]], torch.Tensor], bridge_W: torch.Tensor,
                        bridge_b: torch.Tensor, terms: Sequence[str], families: Sequence[str],
                        texts_of: Callable[[str, str], list[str]], terms_per_batch: int = 40,
                        on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The weighted means [len(terms), len(families), text_dim] float32 of every term × family;
    ``embed_sentences`` gives unit sentence vectors, ``texts_of(term, family)`` a family's texts."""
    means: np.ndarray | None = None
    step = max(1, int(terms_per_batch))
    for start in range(0, len(terms), step):
        chunk = terms[start:start + step]
        for j, family in enumerate(families):
            texts = [text for term in chunk for text in texts_of(term, family)]
            with torch.inference_mode():
                x = embed_sentences(texts).float().reshape(len(chunk), len(texts) // len(chunk), -1)
                m = family_means(x, bridge_W, bridge_b).cpu().numpy()
            if means is None:
                means = np.empty((len(terms), len(families), m.shape[-1]), np.float32)
            means[start:start + len(chunk), j] = m
        if on_progress is not None:
            on_progress(start + len(chunk), len(terms))
    assert means is not None, "no terms"
    return means


def expand(means: torch.Tensor, bridge_W: torch.Tensor, bridge_b: torch.Tensor, anchor: bool) -> torch.Tensor:
    """Weighted means [..., text_dim] → unit family embeddings [..., 1280 (+1 anchor axis, 0)]."""
    t = means.to(bridge_W) @ bridge_W + bridge_b
    if anchor:
        t = torch.cat([t, t.new_zeros(*t.shape[:-1], 1)], dim=-1)
    return F.normalize(t, dim=-1)


def file_metadata(text_identity: str, vocabulary: str, vocabulary_sha256: str, templates_sha256: str,
                  families: Sequence[str], n_terms: int) -> dict[str, str]:
    """What a file must record to be used: everything its numbers depend on (the EfficientNet
    weights do not matter for text, so ``text_identity`` is the MiniLM + bridge part of the id)."""
    return {"format": FORMAT, "text_identity": text_identity, "vocabulary": vocabulary,
            "vocabulary_sha256": vocabulary_sha256, "templates_sha256": templates_sha256,
            "families": ",".join(families), "n_terms": str(int(n_terms))}


def write_family_means(path: Path, means: np.ndarray, metadata: dict[str, str]) -> None:
    """Save ``means`` [V, F, text_dim] as float16 with ``metadata``, atomically."""
    from safetensors.numpy import save

    from ..fileio import atomic_write_bytes

    m16 = np.ascontiguousarray(means, dtype=np.float16)
    atomic_write_bytes(path, save({"means": m16}, metadata=metadata))


def read_family_means(path: Path, text_identity: str, vocabulary_sha256: str, templates_sha256: str,
                      families: Sequence[str], n_terms: int, text_dim: int) -> np.ndarray | None:
    """The weighted means [V, F, text_dim] float32 from ``path``, or None when absent or made for
    another text model, bridge, vocabulary or template set. A damaged file is ignored with a
    warning (it only saves time)."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            wanted = {"text_identity": text_identity, "vocabulary_sha256": vocabulary_sha256,
                      "templates_sha256": templates_sha256, "families": ",".join(families),
                      "n_terms": str(int(n_terms))}
            if any(meta.get(k) != v for k, v in wanted.items()):
                return None  # made for something else: not damage, just not ours
            means = fh.get_tensor("means")
        shape = (int(n_terms), len(families), int(text_dim))
        if means.shape != shape or not np.isfinite(means).all():
            raise ValueError(f"array has shape {means.shape} (expected {shape}) or non-finite values")
        return means.astype(np.float32)
    except Exception as exc:  # noqa: BLE001 — any damage means "encode as usual"
        log.warning("ignoring damaged shipped vocabulary embeddings %s: %s", path, exc)
        return None
