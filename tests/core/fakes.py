"""A tiny, exact stand-in backbone: each patch's feature is a fixed linear map of its mean colour.

Lets store/training tests check *where* every token came from without a neural network.
"""

from __future__ import annotations

import numpy as np
import torch

from insight_desktop.core.backbones import BackboneSpec, DenseOutput, Preprocessing


class PatchColourBackbone:
    def __init__(self, d: int = 8, patch: int = 16, crop: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(3, d, generator=g)
        self.feature_dim = d
        self.preprocessing = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), patch_size=patch, crop_size=crop)
        self.device = torch.device("cpu")
        self.id = f"test-patch-colour/d{d}/p{patch}/s{seed}"
        self.spec = BackboneSpec("test-patch-colour", {"d": d})
        self.notices = ()
        self.calls = 0

    def dense(self, images: torch.Tensor) -> DenseOutput:
        self.calls += 1
        p = self.preprocessing.patch_size
        means = torch.nn.functional.avg_pool2d(images, p)  # [B, 3, h, w]
        return DenseOutput(torch.einsum("bchw,cd->bdhw", means, self.proj))

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.dense(images).features

    def encode_text(self, texts):
        raise NotImplementedError

    def expected(self, rgb: np.ndarray) -> np.ndarray:
        """Features [h·w, d] the store must hold for an image already at the store's size."""
        p = self.preprocessing.patch_size
        h, w = rgb.shape[0] // p, rgb.shape[1] // p
        means = rgb[: h * p, : w * p].reshape(h, p, w, p, 3).mean(axis=(1, 3)) / 255.0
        return (means.reshape(h * w, 3) @ self.proj.numpy()).astype(np.float32)
