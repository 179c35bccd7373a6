"""A tiny, seeded OpenCLIP model + CLIP-DINOiser heads on disk, for tests and offline demos.

The files have exactly the formats of the real ones (an open_clip JSON model config, a
safetensors checkpoint, a CLIP-DINOiser ``last.pt``), so the tiny model goes through the same
loading path as ViT-B/16 — only the numbers are random.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..fileio import atomic_output, atomic_save_safetensors, atomic_write_bytes
from .openclip_loading import OBJ_PROJ_DIM

TINY_MODEL_NAME = "insight-tiny-vit"


@dataclass(frozen=True)
class TinyModelFiles:
    config_path: Path  # open_clip model config JSON (registered by its stem)
    checkpoint_path: Path  # full open_clip state dict, safetensors
    dinoiser_path: Path  # CLIP-DINOiser-format last.pt

    @property
    def model_name(self) -> str:
        return self.config_path.stem


def tiny_model_config(*, width: int, layers: int, heads: int, embed_dim: int, image_size: int, patch_size: int) -> dict:
    """An open_clip model config with a tiny ViT image tower and a tiny text tower."""
    if width % heads:
        raise ValueError(f"width {width} must be divisible by heads {heads}")
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": image_size,
            "layers": layers,
            "width": width,
            "head_width": width // heads,  # open_clip derives the head count as width // head_width
            "patch_size": patch_size,
        },
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def build_tiny_openclip(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    width: int = 64,
    layers: int = 2,
    heads: int = 2,
    embed_dim: int = 32,
    image_size: int = 224,
    patch_size: int = 16,
) -> TinyModelFiles:
    """Write a tiny model's config, checkpoint and ``last.pt`` into ``folder``; deterministic per seed."""
    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = tiny_model_config(width=width, layers=layers, heads=heads, embed_dim=embed_dim, image_size=image_size,
                            patch_size=patch_size)
    config_path = folder / f"{TINY_MODEL_NAME}.json"
    atomic_write_bytes(config_path, (json.dumps(cfg, indent=2) + "\n").encode("utf-8"))
    open_clip.add_model_config(config_path)

    # fork_rng: seeding must not disturb the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # open_clip warns that no pretrained weights were loaded: random weights are the point here.
        logging.disable(logging.WARNING)
        try:
            model = open_clip.create_model(TINY_MODEL_NAME, pretrained=None, device="cpu")
        finally:
            logging.disable(logging.NOTSET)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                # open_clip initialises biases to 0 and norms to 1; give them signal so that a
                # test notices when a bias or a norm's affine part is dropped.
                if name.endswith("bias") or ".ln_" in name or name.startswith(("ln_", "visual.ln_")):
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))
        state = {k: v for k, v in model.state_dict().items()}
        heads_state = {
            "obj_proj.weight": 0.05 * torch.randn(OBJ_PROJ_DIM, width, 3, 3, generator=gen),
            "obj_proj.bias": 0.05 * torch.randn(OBJ_PROJ_DIM, generator=gen),
            "bkg_decoder.weight": torch.randn(1, width, 1, 1, generator=gen),
            "bkg_decoder.bias": 0.1 * torch.randn(1, generator=gen),
        }

    checkpoint_path = folder / f"{TINY_MODEL_NAME}.safetensors"
    atomic_save_safetensors(checkpoint_path, state, metadata={"format": "pt"})
    dinoiser_path = folder / "last.pt"
    save_upstream_last_pt(dinoiser_path, heads_state)
    return TinyModelFiles(config_path, checkpoint_path, dinoiser_path)


#: the tensors CLIP-DINOiser's training script keeps in ``last.pt``, in its order
UPSTREAM_LAST_PT_KEYS = ("obj_proj.bias", "obj_proj.weight", "bkg_decoder.bias", "bkg_decoder.weight")


def save_upstream_last_pt(path: str | os.PathLike, heads: dict[str, torch.Tensor], epoch: int = 99) -> Path:
    """Write ``heads`` exactly as CLIP-DINOiser's ``train.py`` writes ``last.pt``.

    Upstream saves ``{'epoch': …, 'model_state_dict': {…}}`` with the four head tensors under
    their bare module names (no wrapper prefix), and its demo and evaluation scripts read
    ``ckpt['model_state_dict']``. Tests load this file to prove the real layout is accepted.
    """
    path = Path(path)
    state = {key: heads[key].detach().cpu() for key in UPSTREAM_LAST_PT_KEYS}
    with atomic_output(path) as fh:
        torch.save({"epoch": int(epoch), "model_state_dict": state}, fh)
    return path
