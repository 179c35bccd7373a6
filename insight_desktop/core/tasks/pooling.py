"""Image-level concept vectors ``z̄`` (max over patches, docs/method.md §3) of centre crops, in batches.

Used where many images are classified or a probe is trained: every image becomes one
``crop_size``² view (short side resized, centre crop — docs/method.md §1.1's image-level protocol), so
the probe sees at inference the same kind of input it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, eq=False)
class PooledCodes:
    """``z̄`` of one image as ``(concepts ascending, values > 0)`` and the mean raw patch feature."""

    concepts: np.ndarray      # int64 [n]
    values: np.ndarray        # float32 [n]
    mean_feature: np.ndarray  # float32 [d]: the opaque reference's image vector
    n_concepts: int

    def __post_init__(self) -> None:
        for name, dtype in (("concepts", np.int64), ("values", np.float32), ("mean_feature", np.float32)):
            arr = np.array(getattr(self, name), dtype=dtype, copy=True)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)


def encode_pooled(backbone, sae, images: Sequence[np.ndarray], *, size: int | None = None, batch_size: int = 16,
                  should_stop: Callable[[], bool] | None = None) -> list[PooledCodes]:
    """``z̄`` of every RGB uint8 image (centre crop ``size``, default the backbone's crop size).

    Images go through the backbone ``batch_size`` at a time and through the SAE one at a time,
    so the dense ``[tokens, m]`` codes never exceed one image. Stops early (returning what is
    done) when ``should_stop()`` turns true.
    """
    import torch

    pre = backbone.preprocessing
    device = next(sae.parameters()).device
    out: list[PooledCodes] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            if should_stop is not None and should_stop():
                break
            batch = torch.stack([pre.to_tensor(as_rgb(im), mode="crop", size=size)
                                 for im in images[start:start + batch_size]])
            features = backbone.dense_features(batch.to(backbone.device)).float().to(device)
            for f in features:
                tokens = f.flatten(1).T                                     # [h·w, d]
                z_bar = sae.encode(tokens).amax(dim=0)                      # [m]
                nz = torch.nonzero(z_bar).flatten()
                out.append(PooledCodes(nz.cpu().numpy(), z_bar[nz].float().cpu().numpy(),
                                       tokens.mean(dim=0).cpu().numpy(), int(z_bar.shape[0])))
    return out


def pooled_matrix(pooled: Sequence[PooledCodes], n_concepts: int | None = None) -> sp.csr_matrix:
    """Stack ``z̄`` vectors into a CSR matrix ``[N, m]`` (float64)."""
    m = int(n_concepts if n_concepts is not None else (pooled[0].n_concepts if pooled else 0))
    indptr = np.concatenate([[0], np.cumsum([p.concepts.size for p in pooled])]).astype(np.int64)
    indices = np.concatenate([p.concepts for p in pooled]) if pooled else np.zeros(0, np.int64)
    values = np.concatenate([p.values for p in pooled]).astype(np.float64) if pooled else np.zeros(0)
    return sp.csr_matrix((values, indices, indptr), shape=(len(pooled), m))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An H×W×3 uint8 array from H×W×3, H×W×1 or H×W (greyscale) uint8; anything else is refused."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8 arrays, not {a.dtype} (load files with core.images.load_image)")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"images must be H×W×3 RGB (or H×W greyscale) with pixels, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)
