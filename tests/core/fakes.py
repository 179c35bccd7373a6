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


# -- fakes for the analysis engine (tasks: segmentation, classification) -----------------------
COLOUR_WORDS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
                "yellow": (1.0, 1.0, 0.0), "cyan": (0.0, 1.0, 1.0), "magenta": (1.0, 0.0, 1.0)}


class TextColourBackbone(PatchColourBackbone):
    """PatchColourBackbone with a text tower: a prompt naming a colour ("a photo of a red.")
    embeds to the direction of that colour's patch features, so class text directions are
    planted. Other prompts get a fixed pseudo-random direction. With ``background=True`` the
    FOUND head says "background" (logit < 0) where a patch is darker than mid-grey."""

    def __init__(self, d: int = 8, patch: int = 16, crop: int = 64, seed: int = 0, background: bool = False):
        super().__init__(d=d, patch=patch, crop=crop, seed=seed)
        self.id = f"test-text-colour/d{d}/p{patch}/s{seed}"
        self.spec = BackboneSpec("test-text-colour", {"d": d})
        self.with_background = background
        self.text_calls = 0

    def dense(self, images: torch.Tensor) -> DenseOutput:
        out = super().dense(images)
        if not self.with_background:
            return out
        p = self.preprocessing.patch_size
        brightness = torch.nn.functional.avg_pool2d(images, p).mean(dim=1, keepdim=True)
        return DenseOutput(out.features, 10.0 * (brightness - 0.5))

    def encode_text(self, texts):
        import re
        import zlib

        self.text_calls += 1
        rows = []
        for text in texts:
            word = next((w for w in COLOUR_WORDS if re.search(rf"\b{w}\b", text)), None)
            if word is not None:
                rows.append(torch.tensor(COLOUR_WORDS[word]) @ self.proj)
            else:
                g = torch.Generator().manual_seed(zlib.crc32(text.encode()))
                rows.append(torch.randn(self.feature_dim, generator=g))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def lossless_sae(d: int, b_dec=None):
    """An SAE with x̂ = x exactly for every x: m = 2d concepts ±e_i, W_enc = [I, −I], W_dec = [I; −I].

    z = [ReLU(x − b), ReLU(b − x)] and x̂ = ReLU(x − b) − ReLU(b − x) + b = x; at most d concepts
    fire per token, so k = d; threshold 0 keeps every positive code.
    """
    from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig

    sae = MatryoshkaSAE(SAEConfig(d_in=d, n_concepts=2 * d, k=d, group_sizes=(d, d)))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.copy_(torch.zeros(d) if b_dec is None else torch.as_tensor(b_dec, dtype=torch.float32))
        sae.threshold.fill_(0.0)
    return sae


def random_sae(d: int, m: int, k: int = 4, seed: int = 0, threshold: float = 0.05):
    """A lossy SAE with random weights, a non-zero decoder bias and a set inference threshold."""
    from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig

    half = m // 4
    sae = MatryoshkaSAE(SAEConfig(d_in=d, n_concepts=m, k=k, group_sizes=(half, m - half)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.reset_parameters(g)
        sae.b_enc.copy_(0.05 * torch.randn(m, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(d, generator=g))
        sae.threshold.fill_(threshold)
    return sae


def write_test_bundle(path, backbone, sae, *, seed: int = 0):
    """A complete bundle for ``sae`` on ``backbone`` (random relations, names "c0", "c1", …)."""
    import numpy as np

    from insight_desktop.core.concepts.bundle import write_bundle
    from insight_desktop.core.concepts.codes import SparseCodes
    from insight_desktop.core.concepts.compute import compute_relations_from_codes
    from insight_desktop.core.concepts.naming import ConceptNames

    m = sae.config.n_concepts
    rng = np.random.default_rng(seed)
    z = rng.random((64, m)) * (rng.random((64, m)) < 0.2)
    z[:, 1] = np.where(z[:, 0] > 0, 0.5, z[:, 1])  # concept 1 fires wherever 0 does: 1 is a parent of 0
    relations = compute_relations_from_codes([(SparseCodes.from_dense(z), np.arange(64))], m, sae.config.group_ends)
    names = ConceptNames(names=tuple(f"c{i}" for i in range(m)), candidates=((),) * m, method="vanilla")
    info = {"id": backbone.id, "spec": backbone.spec.to_dict(), "feature_dim": backbone.feature_dim}
    return write_bundle(path, backbone=info, sae=sae, relations=relations, names=names,
                        provenance={"images": 0, "tokens": 64, "command": "test"})


def write_block_photos(folder, n: int, seed: int = 1):
    """``n`` 224-px PNGs of a random background with three coloured 64-px blocks, so concepts have
    something to find; returns the folder (created if needed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb = np.zeros((224, 224, 3), np.uint8)
        rgb[:] = rng.integers(0, 255, 3)
        for _ in range(3):
            y, x = rng.integers(0, 160, 2)
            rgb[y:y + 64, x:x + 64] = rng.integers(0, 255, 3)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
    return folder
