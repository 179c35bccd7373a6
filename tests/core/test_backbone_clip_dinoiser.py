"""The clip-dinoiser backbone (docs/method.md §1) against hand computations on a tiny real OpenCLIP model."""

from __future__ import annotations

import argparse
import json
import math
import re
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from insight_desktop.core.backbones import Backbone, BackboneError, BackboneSpec, available_backbones, create_backbone
from insight_desktop.core.backbones import clip_dinoiser as cd
from insight_desktop.core.backbones.tiny import build_tiny_openclip
from insight_desktop.core.devices import DeviceError

# ----------------------------------------------------------------------------- helpers


def make(files, dinoiser=True, **kw):
    return create_backbone(
        "clip-dinoiser",
        device="cpu",
        model=str(files.config_path),
        pretrained=str(files.checkpoint_path),
        dinoiser=str(files.dinoiser_path) if dinoiser else None,
        **kw,
    )


@pytest.fixture
def maskclip(tiny_model_files):
    return make(tiny_model_files, dinoiser=False)


def images(b=2, h=224, w=224, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def reference_vit(sd, cfg, x):
    """Hand-written ViT + MaskCLIP value path from raw state-dict tensors (no open_clip modules).

    Returns the ln_2 output of every block (CLS dropped, [B, W, h, w]), F_mc [B, d, h, w] and the
    pooled image embedding of the ordinary forward (to validate this reference against open_clip).
    """
    vc = cfg["vision_cfg"]
    p, width, n_layers = vc["patch_size"], vc["width"], vc["layers"]
    heads = width // vc["head_width"]
    B, _, H, W = x.shape
    h, w = H // p, W // p
    sd = {k[len("visual.") :]: v.double() for k, v in sd.items() if k.startswith("visual.")}
    x = x.double()
    patches = x.unfold(2, p, p).unfold(3, p, p)  # [B, 3, h, w, p, p]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(B, h * w, 3 * p * p)
    tok = patches @ sd["conv1.weight"].reshape(width, -1).T
    pos = sd["positional_embedding"]
    g = vc["image_size"] // p
    if (h, w) != (g, g):
        grid = pos[1:].reshape(1, g, g, width).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, width)])
    t = torch.cat([sd["class_embedding"].expand(B, 1, width), tok], 1) + pos
    t = ln(t, sd["ln_pre.weight"], sd["ln_pre.bias"])

    def blk(i, name):
        return sd[f"transformer.resblocks.{i}.{name}"]

    def mlp(i, y):
        y = gelu(y @ blk(i, "mlp.c_fc.weight").T + blk(i, "mlp.c_fc.bias"))
        return y @ blk(i, "mlp.c_proj.weight").T + blk(i, "mlp.c_proj.bias")

    ln2_out = []
    for i in range(n_layers):
        wqkv, bqkv = blk(i, "attn.in_proj_weight"), blk(i, "attn.in_proj_bias")
        wo, bo = blk(i, "attn.out_proj.weight"), blk(i, "attn.out_proj.bias")
        y = ln(t, blk(i, "ln_1.weight"), blk(i, "ln_1.bias"))
        if i == n_layers - 1:  # MaskCLIP: value path of the last block, every token sees itself
            yv = y @ wqkv[2 * width :].T + bqkv[2 * width :]
            v = t + (yv @ wo.T + bo)
            v = v + mlp(i, ln(v, blk(i, "ln_2.weight"), blk(i, "ln_2.bias")))
            f = ln(v, sd["ln_post.weight"], sd["ln_post.bias"])[:, 1:] @ sd["proj"]
            f_mc = f.transpose(1, 2).reshape(B, -1, h, w)
        q, k, vv = (y @ wqkv.T + bqkv).split(width, dim=-1)
        split = lambda z: z.reshape(B, -1, heads, width // heads).transpose(1, 2)  # noqa: E731
        a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(width // heads), dim=-1)
        att = (a @ split(vv)).transpose(1, 2).reshape(B, -1, width)
        t = t + (att @ wo.T + bo)
        l2 = ln(t, blk(i, "ln_2.weight"), blk(i, "ln_2.bias"))
        ln2_out.append(l2[:, 1:].transpose(1, 2).reshape(B, width, h, w))
        t = t + mlp(i, l2)
    pooled = ln(t[:, 0], sd["ln_post.weight"], sd["ln_post.bias"]) @ sd["proj"]
    return ln2_out, f_mc, pooled


def expected_heads(files, layer):
    """obj_proj (3×3, replicate padding) and bkg_decoder (1×1 on normalised features) by hand."""
    st = torch.load(files.dinoiser_path, map_location="cpu", weights_only=True)["model_state_dict"]
    padded = F.pad(layer, (1, 1, 1, 1), mode="replicate")
    proj = F.conv2d(padded, st["obj_proj.weight"].double(), st["obj_proj.bias"].double())
    unit = layer / layer.norm(dim=1, keepdim=True)
    bkg = (torch.einsum("bchw,c->bhw", unit, st["bkg_decoder.weight"].double().flatten())[:, None]
           + st["bkg_decoder.bias"].double())
    return proj, bkg


# ----------------------------------------------------------------------------- registry and loading


def test_registry_builds_through_open_clip_and_loads_saved_weights(tiny_backbone, tiny_model_files):
    assert "clip-dinoiser" in available_backbones()
    assert isinstance(tiny_backbone, Backbone)
    saved = load_file(tiny_model_files.checkpoint_path)
    state = tiny_backbone.model.state_dict()
    assert set(saved) == set(state)
    for k, v in saved.items():
        assert torch.equal(state[k].cpu(), v), k
    assert tiny_backbone.feature_dim == 32 and tiny_backbone.width == 64
    assert tiny_backbone.layer_index == 1  # third from last of 4 blocks
    pre = tiny_backbone.preprocessing
    assert pre.mean == cd.OPENAI_CLIP_MEAN and pre.std == cd.OPENAI_CLIP_STD
    assert (pre.patch_size, pre.crop_size) == (16, 224)
    assert not tiny_backbone.model.training


def test_id_and_spec_identify_architecture_and_weights(tiny_backbone, maskclip, tiny_model_files):
    bid = tiny_backbone.id
    assert "clip-dinoiser" in bid and "insight-tiny-vit" in bid and tiny_model_files.checkpoint_path.name in bid
    assert re.search(r"@[0-9a-f]{12}/dinoiser@[0-9a-f]{12}$", bid)
    assert maskclip.id.endswith("/maskclip") and maskclip.id.split("/")[:3] == bid.split("/")[:3]
    assert tiny_backbone.spec == BackboneSpec(
        "clip-dinoiser",
        {
            "model": str(tiny_model_files.config_path),
            "pretrained": str(tiny_model_files.checkpoint_path),
            "dinoiser": str(tiny_model_files.dinoiser_path),
        },
    )
    options = json.loads(json.dumps(tiny_backbone.spec.to_dict()))["options"]
    assert options["dinoiser"] == str(tiny_model_files.dinoiser_path)


def test_other_weights_give_another_id(tiny_model_files, tmp_path):
    other = build_tiny_openclip(tmp_path, seed=1, layers=4)
    a, b = make(tiny_model_files), make(other)
    assert a.id.split("@")[1] != b.id.split("@")[1]


def test_spec_round_trip_gives_same_features(tiny_backbone):
    again = create_backbone(tiny_backbone.spec, device="cpu")
    x = images(1)
    assert again.id == tiny_backbone.id
    a, b = tiny_backbone.dense(x), again.dense(x)
    assert torch.equal(a.features, b.features) and torch.equal(a.background_logits, b.background_logits)


def test_device_is_resolved(tiny_model_files, monkeypatch):
    calls = []
    real = cd.resolve_device
    monkeypatch.setattr(cd, "resolve_device", lambda c: calls.append(c) or real(c))
    bb = make(tiny_model_files)
    assert calls == ["cpu"] and bb.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in bb.model.parameters())
    with pytest.raises(DeviceError):
        create_backbone(bb.spec, device="tpu")


def test_unknown_option_is_refused(tiny_model_files):
    with pytest.raises(BackboneError, match="dinoser"):
        make(tiny_model_files, dinoser="x")


def test_tiny_builder_is_deterministic(tiny_model_files, tmp_path):
    again = build_tiny_openclip(tmp_path, seed=0, layers=4)
    assert again.checkpoint_path.read_bytes() == tiny_model_files.checkpoint_path.read_bytes()
    a = torch.load(again.dinoiser_path, weights_only=True)["model_state_dict"]
    b = torch.load(tiny_model_files.dinoiser_path, weights_only=True)["model_state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- the math


@pytest.mark.parametrize("size", [224, 448])
def test_maskclip_features_equal_hand_computation(maskclip, tiny_model_files, size):
    cfg = json.loads(tiny_model_files.config_path.read_text())
    x = images(2, size, size)
    ln2, f_mc, pooled = reference_vit(load_file(tiny_model_files.checkpoint_path), cfg, x)
    if size == 224:  # the hand-written ViT is right: it reproduces open_clip's own image embedding
        with torch.inference_mode():
            torch.testing.assert_close(maskclip.model.encode_image(x).double(), pooled, atol=1e-4, rtol=1e-4)
    out = maskclip.dense(x)
    assert out.background_logits is None
    assert out.features.shape == (2, 32, size // 16, size // 16)
    torch.testing.assert_close(out.features.double(), f_mc, atol=1e-4, rtol=1e-4)


def test_value_path_handles_layerscale_and_either_layout():
    from open_clip.transformer import ResidualAttentionBlock

    torch.manual_seed(0)
    blk = ResidualAttentionBlock(8, 2, mlp_ratio=2.0, ls_init_value=0.5, batch_first=False).eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(5, 3, 8)  # [T, B, W]: sequence-first, as this block expects
    wv, bv = blk.attn.in_proj_weight[16:24], blk.attn.in_proj_bias[16:24]
    y = ln(x, blk.ln_1.weight, blk.ln_1.bias) @ wv.T + bv
    v = x + blk.ls_1.gamma * (y @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias)
    m = gelu(ln(v, blk.ln_2.weight, blk.ln_2.bias) @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias)
    expected = v + blk.ls_2.gamma * (m @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias)
    with torch.no_grad():
        torch.testing.assert_close(cd.maskclip_value_path(blk, x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cd.maskclip_value_path(blk, x.transpose(0, 1)), expected.transpose(0, 1),
                                   atol=1e-5, rtol=1e-5)


def _pool_example():
    # 2×2 grid, row-major p0..p3. Unit projections: p0=(1,0), p1=(.6,.8), p2=(0,1), p3=(11,-60)/61.
    proj = torch.tensor([[2.0, 3.0], [0.0, 11.0]]), torch.tensor([[0.0, 4.0], [5.0, -60.0]])
    feats = torch.tensor([[1.0, 0.0], [2.0, -1.0]]), torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    return torch.stack(feats)[None], torch.stack(proj)[None]  # [1, 2, 2, 2] each


def test_dinoiser_pool_hand_example_gamma_02():
    # corr after zeroing < 0.2:  p0: [1, .6, 0, 0]  p1: [.6, 1, .8, 0]  p2: [0, .8, 1, 0]  p3: [0, 0, 0, 1]
    # (p0·p3 = 11/61 ≈ 0.18 falls below gamma; negative correlations too)
    feats, proj = _pool_example()
    out = cd.dinoiser_pool(feats, proj, gamma=0.2)
    expected = torch.tensor(
        [
            [[1 / 1.6, 2.2 / 2.4], [2 / 1.8, -1.0]],  # channel 0 at p0, p1 / p2, p3
            [[0.6 / 1.6, 2.6 / 2.4], [2.8 / 1.8, 3.0]],  # channel 1
        ]
    )[None]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_dinoiser_pool_hand_example_gamma_01_keeps_weak_correlation():
    feats, proj = _pool_example()
    a = 11 / 61  # p0·p3, now ≥ gamma
    out = cd.dinoiser_pool(feats, proj, gamma=0.1)
    expected = torch.tensor(
        [
            [[(1 - a) / (1.6 + a), 2.2 / 2.4], [2 / 1.8, (a - 1) / (1 + a)]],
            [[(0.6 + 3 * a) / (1.6 + a), 2.6 / 2.4], [2.8 / 1.8, 3 / (1 + a)]],
        ]
    )[None]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert cd.GAMMA == 0.2


def test_dinoiser_features_and_background_head(tiny_backbone, maskclip, tiny_model_files):
    cfg = json.loads(tiny_model_files.config_path.read_text())
    x = images(2)
    seen = []
    blocks = tiny_backbone.model.visual.transformer.resblocks
    hook = blocks[len(blocks) - 3].ln_2.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        out = tiny_backbone.dense(x)
    finally:
        hook.remove()
    ln2, f_mc_ref, _ = reference_vit(load_file(tiny_model_files.checkpoint_path), cfg, x)
    layer = ln2[1]  # ln_2 output of block 1 = third from last of 4
    assert len(seen) == 1  # the tap block's ln_2 ran exactly once
    torch.testing.assert_close(seen[0][:, 1:].transpose(1, 2).reshape(layer.shape).double(), layer,
                               atol=1e-4, rtol=1e-4)

    proj, bkg = expected_heads(tiny_model_files, layer)
    f_mc = maskclip.dense(x).features
    torch.testing.assert_close(f_mc.double(), f_mc_ref, atol=1e-4, rtol=1e-4)
    expected = cd.dinoiser_pool(f_mc.double(), proj, gamma=0.2)
    torch.testing.assert_close(out.features.double(), expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out.features, f_mc, atol=1e-3)  # pooling changed something
    assert out.background_logits.shape == (2, 1, 14, 14)
    torch.testing.assert_close(out.background_logits.double(), bkg, atol=1e-4, rtol=1e-4)
    assert torch.equal(tiny_backbone.dense_features(x), out.features)


def test_gamma_option_changes_pooling(tiny_model_files):
    x = images(1)
    a, b = make(tiny_model_files), make(tiny_model_files, gamma=0.9)
    assert b.spec.options["gamma"] == 0.9 and a.id != b.id
    assert not torch.allclose(a.dense(x).features, b.dense(x).features)


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("hw, grid", [((224, 224), (14, 14)), ((448, 448), (28, 28)), ((64, 160), (4, 10))])
def test_dense_shapes(tiny_backbone, hw, grid):
    out = tiny_backbone.dense(images(2, *hw))
    assert out.features.shape == (2, 32, *grid)
    assert out.background_logits.shape == (2, 1, *grid)
    assert torch.isfinite(out.features).all()


def test_odd_image_through_full_preprocessing(tiny_backbone):
    rgb = np.random.default_rng(0).integers(0, 256, (100, 37, 3), dtype=np.uint8)
    x = tiny_backbone.preprocessing.to_tensor(rgb, mode="full")
    assert x.shape == (3, 112, 48)
    out = tiny_backbone.dense(x[None])
    assert out.features.shape == (1, 32, 7, 3) and out.background_logits.shape == (1, 1, 7, 3)


def test_positional_embedding_resizing(tiny_backbone):
    pos = tiny_backbone.model.visual.positional_embedding
    assert torch.equal(tiny_backbone.resized_positional_embedding(14, 14), pos)
    r = tiny_backbone.resized_positional_embedding(7, 3)
    assert r.shape == (1 + 21, 64) and torch.equal(r[0], pos[0])
    grid = pos[1:].reshape(1, 14, 14, 64).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(7, 3), mode="bicubic", align_corners=False)
    torch.testing.assert_close(r[1:], ref.permute(0, 2, 3, 1).reshape(21, 64))
    assert tiny_backbone.resized_positional_embedding(7, 3) is r  # cached per grid size


def test_bad_image_tensors_are_refused(tiny_backbone):
    with pytest.raises(ValueError, match="multiples"):
        tiny_backbone.dense(torch.zeros(1, 3, 100, 112))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_backbone.dense(torch.zeros(3, 224, 224))


# ----------------------------------------------------------------------------- text


def test_encode_text_matches_open_clip(tiny_backbone):
    import open_clip

    texts = ["a photo of a cat", "a dog", "sailboat", "something that is red", "to run"]
    emb = tiny_backbone.encode_text(texts)
    assert emb.shape == (5, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(5))
    tokens = open_clip.get_tokenizer("ViT-B-16")(texts)  # the same CLIP BPE tokenizer
    assert torch.equal(tiny_backbone.tokenize(texts), tokens)
    with torch.inference_mode():
        ref = tiny_backbone.model.encode_text(tokens, normalize=True)
    torch.testing.assert_close(emb, ref)
    tiny_backbone.text_batch_size = 2  # batching does not change the result
    torch.testing.assert_close(tiny_backbone.encode_text(texts), emb, atol=1e-6, rtol=1e-5)
    assert tiny_backbone.encode_text([]).shape == (0, 32)


# ----------------------------------------------------------------------------- notices


def test_notices(tiny_backbone, maskclip):
    assert tiny_backbone.notices == ()
    assert len(maskclip.notices) == 1 and "plain MaskCLIP" in maskclip.notices[0] and "last.pt" in maskclip.notices[0]


# ----------------------------------------------------------------------------- bad files


def _dinoiser_state(files):
    return torch.load(files.dinoiser_path, map_location="cpu", weights_only=True)["model_state_dict"]


@pytest.mark.parametrize("wrap", ["top", "state_dict", "module"])
def test_dinoiser_checkpoint_layouts_are_accepted(tiny_model_files, tiny_backbone, tmp_path, wrap):
    st = _dinoiser_state(tiny_model_files)
    obj = {"top": st, "state_dict": {"state_dict": st},
           "module": {"model": {f"module.{k}": v for k, v in st.items()}}}[wrap]
    path = tmp_path / "last.pt"
    torch.save(obj, path)
    bb = create_backbone(tiny_backbone.spec, device="cpu", dinoiser=str(path))
    x = images(1)
    torch.testing.assert_close(bb.dense(x).features, tiny_backbone.dense(x).features)


def _write_bad_dinoiser(files, tmp_path, kind):
    path = tmp_path / f"bad-{kind}.pt"
    st = _dinoiser_state(files)
    if kind == "shape":
        st["obj_proj.weight"] = torch.zeros(256, 32, 3, 3)
        torch.save({"model": st}, path)
    elif kind == "missing":
        del st["bkg_decoder.weight"]
        torch.save({"model": st}, path)
    elif kind == "truncated":
        data = files.dinoiser_path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "pickle":  # arbitrary Python objects: refused by weights_only loading
        torch.save({"model": st, "args": argparse.Namespace(lr=1.0)}, path)
    elif kind == "absent":
        pass
    return path


@pytest.mark.parametrize("kind, reason", [
    ("shape", "shape"), ("missing", "missing"), ("truncated", "corrupt"), ("text", "corrupt"), ("absent", "not found"),
    ("pickle", "weights_only"),
])
def test_bad_dinoiser_file_raises_backbone_error(tiny_model_files, tmp_path, kind, reason):
    path = _write_bad_dinoiser(tiny_model_files, tmp_path, kind)
    with pytest.raises(BackboneError) as e:
        create_backbone("clip-dinoiser", device="cpu", model=str(tiny_model_files.config_path),
                        pretrained=str(tiny_model_files.checkpoint_path), dinoiser=str(path))
    assert path.name in str(e.value) and reason in str(e.value)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_truncated_openclip_checkpoint_raises_backbone_error(tiny_model_files, tmp_path, suffix):
    if suffix == ".bin":  # a text file under a checkpoint name
        data = b"this is not a checkpoint\n" * 3
    elif suffix == ".pt":
        full = tmp_path / "full.pt"
        torch.save(load_file(tiny_model_files.checkpoint_path), full)
        data = full.read_bytes()
    else:
        data = tiny_model_files.checkpoint_path.read_bytes()
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(BackboneError, match=f"{bad.name}.*(truncated|corrupt)"):
        create_backbone("clip-dinoiser", device="cpu", model=str(tiny_model_files.config_path), pretrained=str(bad))


def test_checkpoint_for_another_config_raises_backbone_error(tiny_model_files, tmp_path):
    other = build_tiny_openclip(tmp_path, width=32, layers=4)
    with pytest.raises(BackboneError, match=f"{other.checkpoint_path.name}.*do not match"):
        create_backbone("clip-dinoiser", device="cpu", model=str(tiny_model_files.config_path),
                        pretrained=str(other.checkpoint_path))


def test_missing_files_raise_backbone_error(tiny_model_files, tmp_path):
    with pytest.raises(BackboneError, match="nope.safetensors.*not found"):
        create_backbone("clip-dinoiser", device="cpu", model=str(tiny_model_files.config_path),
                        pretrained=str(tmp_path / "nope.safetensors"))
    with pytest.raises(BackboneError, match="nope.json.*not found"):
        create_backbone("clip-dinoiser", device="cpu", model=str(tmp_path / "nope.json"),
                        pretrained=str(tiny_model_files.checkpoint_path))
    bad = tmp_path / "broken.json"
    bad.write_text("{ not json")
    with pytest.raises(BackboneError, match="broken.json"):
        create_backbone("clip-dinoiser", device="cpu", model=str(bad), pretrained=str(tiny_model_files.checkpoint_path))


def test_uncached_pretrained_tag_fails_fast_and_says_how_to_fix(tmp_path):
    start = time.monotonic()
    with pytest.raises(BackboneError) as e:
        create_backbone("clip-dinoiser", device="cpu", model="ViT-B-16", pretrained="laion2b_s34b_b88k",
                        cache_dir=str(tmp_path))
    assert time.monotonic() - start < 5
    msg = str(e.value)
    assert "not available offline" in msg and "laion2b_s34b_b88k" in msg and "local checkpoint file" in msg


def test_unknown_pretrained_tag_lists_known_tags():
    with pytest.raises(BackboneError, match="nor a known open_clip pretrained tag.*laion2b_s34b_b88k"):
        create_backbone("clip-dinoiser", device="cpu", model="ViT-B-16", pretrained="no-such-tag")
    with pytest.raises(BackboneError, match="unknown open_clip model"):
        create_backbone("clip-dinoiser", device="cpu", model="No-Such-Model", pretrained="x")


def test_unsupported_vision_towers_are_refused():
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    with pytest.raises(BackboneError, match="ModifiedResNet"):
        cd.check_vision_tower(ModifiedResNet([1, 1, 1, 1], output_dim=8, heads=2, image_size=64, width=8))
    pooled = VisionTransformer(32, 16, 16, 1, 2, 2.0, attentional_pool=True, attn_pooler_heads=2, attn_pooler_queries=2,
                               output_dim=8)
    with pytest.raises(BackboneError, match="attention pooling"):
        cd.check_vision_tower(pooled)
    cd.check_vision_tower(VisionTransformer(32, 16, 16, 1, 2, 2.0, output_dim=8))  # a plain ViT is fine
