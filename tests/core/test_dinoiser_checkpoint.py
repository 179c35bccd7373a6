"""CLIP-DINOiser's official ``last.pt`` layout is accepted everywhere a checkpoint is unwrapped.

Upstream ``train.py`` saves ``{'epoch': …, 'model_state_dict': {obj_proj.bias, obj_proj.weight,
bkg_decoder.bias, bkg_decoder.weight}}`` and its demo and evaluation read
``ckpt['model_state_dict']``. Every file here is written by
:func:`insight_desktop.core.backbones.tiny.save_upstream_last_pt`, which writes exactly that.
"""

from __future__ import annotations

import pytest
import torch

from insight_desktop.core.backbones import create_backbone
from insight_desktop.core.backbones.openclip_loading import OBJ_PROJ_DIM, load_dinoiser_heads
from insight_desktop.core.backbones.tiny import UPSTREAM_LAST_PT_KEYS, save_upstream_last_pt
from insight_desktop.core.store.files import guess_kind, validate


def upstream_heads(width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obj_proj.weight": torch.randn(OBJ_PROJ_DIM, width, 3, 3, generator=g),
        "obj_proj.bias": torch.randn(OBJ_PROJ_DIM, generator=g),
        "bkg_decoder.weight": torch.randn(1, width, 1, 1, generator=g),
        "bkg_decoder.bias": torch.randn(1, generator=g),
    }


@pytest.fixture
def vit_b16_last_pt(tmp_path):
    heads = upstream_heads(768)
    return save_upstream_last_pt(tmp_path / "last.pt", heads, epoch=99), heads


def test_the_helper_writes_exactly_the_upstream_layout(vit_b16_last_pt):
    path, heads = vit_b16_last_pt
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw) == ["epoch", "model_state_dict"] and raw["epoch"] == 99
    assert tuple(raw["model_state_dict"]) == UPSTREAM_LAST_PT_KEYS
    assert set(UPSTREAM_LAST_PT_KEYS) == {"obj_proj.bias", "obj_proj.weight", "bkg_decoder.bias", "bkg_decoder.weight"}


def test_load_dinoiser_heads_reads_model_state_dict(vit_b16_last_pt):
    path, heads = vit_b16_last_pt
    loaded = load_dinoiser_heads(path, 768)
    assert torch.equal(loaded.obj_proj.weight, heads["obj_proj.weight"])
    assert torch.equal(loaded.obj_proj.bias, heads["obj_proj.bias"])
    assert torch.equal(loaded.bkg_decoder.weight, heads["bkg_decoder.weight"])
    assert torch.equal(loaded.bkg_decoder.bias, heads["bkg_decoder.bias"])
    assert loaded.obj_proj.padding_mode == "replicate" and loaded.obj_proj.padding == (1, 1)


def test_store_guesses_and_validates_the_upstream_file(vit_b16_last_pt):
    path, _ = vit_b16_last_pt
    assert guess_kind(path) == "dinoiser"
    assert validate(path, "dinoiser") == {"width": 768}


def test_the_backbone_uses_the_heads_of_an_upstream_file(tiny_model_files, tmp_path):
    """The tiny model's own last.pt is in the upstream layout; a second upstream file with other
    heads must change the features (the heads are really read, not silently skipped)."""
    raw = torch.load(tiny_model_files.dinoiser_path, map_location="cpu", weights_only=True)
    assert list(raw) == ["epoch", "model_state_dict"]
    other = save_upstream_last_pt(tmp_path / "last.pt", upstream_heads(64, seed=5))
    common = {"device": "cpu", "model": str(tiny_model_files.config_path),
              "pretrained": str(tiny_model_files.checkpoint_path)}
    a = create_backbone("clip-dinoiser", dinoiser=str(tiny_model_files.dinoiser_path), **common)
    b = create_backbone("clip-dinoiser", dinoiser=str(other), **common)
    assert a.notices == () and b.notices == ()
    assert torch.equal(b.bkg_decoder.weight, upstream_heads(64, seed=5)["bkg_decoder.weight"])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fa, fb = a.dense(x), b.dense(x)
    assert not torch.allclose(fa.background_logits, fb.background_logits)


def test_info_describes_the_upstream_file(vit_b16_last_pt):
    from insight_desktop.core.inspect import describe

    text = describe(vit_b16_last_pt[0])
    assert "CLIP-DINOiser weights" in text and "obj_proj.weight" in text and "[256, 768, 3, 3]" in text
