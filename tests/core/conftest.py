"""Shared core fixtures: a tiny real OpenCLIP + CLIP-DINOiser model, built once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory):
    """Files of a tiny seeded open_clip ViT (4 blocks, width 64, d = 32, 224 px, patch 16):
    ``.config_path`` (JSON), ``.checkpoint_path`` (safetensors), ``.dinoiser_path`` (last.pt)."""
    from insight_desktop.core.backbones.tiny import build_tiny_openclip

    # 4 blocks so that "third from last" (block 1) differs from the first and the last block.
    return build_tiny_openclip(tmp_path_factory.mktemp("tiny_openclip"), seed=0, layers=4)


@pytest.fixture
def tiny_backbone(tiny_model_files):
    """The tiny model as a ``clip-dinoiser`` backbone with DINOiser heads, on CPU."""
    from insight_desktop.core.backbones import create_backbone

    return create_backbone(
        "clip-dinoiser",
        device="cpu",
        model=str(tiny_model_files.config_path),
        pretrained=str(tiny_model_files.checkpoint_path),
        dinoiser=str(tiny_model_files.dinoiser_path),
    )
