"""The backbone protocol, its spec and its preprocessing.

A backbone turns images into dense, language-aligned patch features ``[B, d, h, w]`` and text
into vectors ``[N, d]`` in the same space (docs/method.md §1). Anything that satisfies :class:`Backbone`
can sit under the concept model; :mod:`.registry` creates backbones by short name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily, on the worker thread
    import torch


class BackboneError(RuntimeError):
    """A backbone or its weights cannot be loaded or used; the message says why."""


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 image becomes a normalised float tensor for this backbone.

    ``mode="crop"``: resize the short side to ``crop_size`` (bicubic) and centre-crop
    ``crop_size``² — used for SAE training and image-level statistics. The geometry is
    torchvision's ``Resize(crop_size, BICUBIC)`` + ``CenterCrop(crop_size)``, which the reference
    code uses (docs/method.md §1.1): the long side becomes ``int(crop_size · long / short)``
    (truncated) and the crop starts ``round((side − crop_size) / 2)`` pixels in.
    ``mode="full"``: keep the image size; pad H and W with black (0) on the bottom/right up to
    multiples of ``patch_size``, *then* normalise, as CLIP-DINOiser does (docs/method.md §1.1) —
    so the padding is black, not the mean colour.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    patch_size: int
    crop_size: int = 224

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "patch_size": self.patch_size,
                "crop_size": self.crop_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(tuple(d["mean"]), tuple(d["std"]), int(d["patch_size"]), int(d.get("crop_size", 224)))

    def resize_crop(self, rgb: np.ndarray, size: int | None = None) -> np.ndarray:
        """Short side to ``size`` (bicubic), centre crop ``size``×``size``; uint8 in, uint8 out."""
        from PIL import Image

        size = size or self.crop_size
        nh, nw = resized_short_side(rgb.shape[0], rgb.shape[1], size)
        img = Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BICUBIC)  # PIL returns a copy at the same size
        top, left = centre_crop_offsets(nh, nw, size)
        return np.asarray(img.crop((left, top, left + size, top + size)))

    def to_tensor(self, rgb: np.ndarray, mode: str = "crop", size: int | None = None) -> "torch.Tensor":
        """One image → normalised ``[3, H, W]`` float32 tensor (H, W multiples of the patch size)."""
        import torch

        if mode == "crop":
            rgb = self.resize_crop(rgb, size)
        elif mode != "full":
            raise ValueError(f"unknown preprocessing mode {mode!r}; use 'crop' or 'full'")
        # A fresh float array: the input may be a read-only view (e.g. a memory-mapped image).
        x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
        p = self.patch_size
        ph, pw = (-x.shape[1]) % p, (-x.shape[2]) % p
        if ph or pw:  # black in raw RGB, before normalising (the reference's make_input_divisible)
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), value=0.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std


def resized_short_side(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) after torchvision's ``Resize(size)``: short side ``size``, long side
    ``int(size · long / short)`` (truncated, not rounded)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def centre_crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop(size)``: ``int(round((side − size) / 2))``
    (Python's round, so halves go to the even neighbour)."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def check_image_batch(images: "torch.Tensor", patch_size: int, device) -> "torch.Tensor":
    """Validate a ``[B, 3, H, W]`` batch (H, W positive multiples of the patch) and move it to ``device``."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a [B, 3, H, W] tensor, got {shape}")
    p = patch_size
    if images.shape[2] % p or images.shape[3] % p or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"image height and width must be positive multiples of the patch size {p}, "
                         f"got {tuple(images.shape[2:])}")
    return images.to(device, torch.float32)


@dataclass(frozen=True)
class DenseOutput:
    """Dense outputs for a batch: features ``[B, d, h, w]`` and, if the backbone has one,
    background logits ``[B, 1, h, w]`` (FOUND head; background where sigmoid ≤ 0.5)."""

    features: "torch.Tensor"
    background_logits: "torch.Tensor | None" = None


@runtime_checkable
class Backbone(Protocol):
    """What the concept model needs from a vision-language encoder."""

    #: stable identifier of architecture + weights, e.g. ``clip-dinoiser/ViT-B-16/laion2b_s34b_b88k/…``
    id: str
    #: registry name and options that recreate this backbone (stored in token stores and bundles)
    spec: "BackboneSpec"
    feature_dim: int
    preprocessing: Preprocessing
    device: "torch.device"
    #: human-readable notes the user must see (e.g. "running as plain MaskCLIP: no last.pt")
    notices: tuple[str, ...]

    def dense(self, images: "torch.Tensor") -> DenseOutput: ...

    def dense_features(self, images: "torch.Tensor") -> "torch.Tensor": ...

    def encode_text(self, texts: list[str]) -> "torch.Tensor": ...


@dataclass(frozen=True)
class BackboneSpec:
    """Registry name + JSON-able options; ``create_backbone(spec)`` rebuilds the backbone."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BackboneSpec":
        return cls(str(d["name"]), dict(d.get("options", {})))
