"""The offline demo backbone ``demo-effnet-minilm``: real packaged weights, shapes, the bridge, maps.

Everything loads from installed packages and the bundled bridge (``HF_HUB_OFFLINE=1`` is set by
conftest.py), so these tests also prove that the demo works without a network.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from insight_desktop.core.backbones import Backbone, BackboneError, BackboneSpec, available_backbones, create_backbone
from insight_desktop.core.backbones import demo_effnet_minilm as demo
from insight_desktop.core.backbones.openclip_loading import file_sha256
from insight_desktop.core.images import load_image
from insight_desktop.core.paths import resource_path

D = demo.VISION_DIM + 1  # 1280 feature channels + the anchor coordinate


@pytest.fixture(scope="module")
def bb():
    return create_backbone("demo-effnet-minilm", device="cpu")


def photo(name: str) -> np.ndarray:
    return load_image(resource_path("samples", name))


def grid_features(bb, name: str, long_side: int = 448) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features [d, h, w] of a sample photo resized to ``long_side`` (full mode, padded to 32), and the
    patch centres as fractions of the photo's height and width (> 1 for padding-only patches)."""
    rgb = photo(name)
    h, w = rgb.shape[:2]
    s = long_side / max(h, w)
    rgb = np.asarray(Image.fromarray(rgb).resize((round(w * s), round(h * s)), Image.BICUBIC))
    f = bb.dense_features(bb.preprocessing.to_tensor(rgb, mode="full")[None])[0]
    cy = (torch.arange(f.shape[1]) + 0.5) * demo.STRIDE / rgb.shape[0]
    cx = (torch.arange(f.shape[2]) + 0.5) * demo.STRIDE / rgb.shape[1]
    return f, cy, cx


# ----------------------------------------------------------------------------- loading, identity


def test_registered_offline_and_honest_about_being_a_demo(bb):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert "demo-effnet-minilm" in available_backbones()
    assert isinstance(bb, Backbone)
    assert bb.feature_dim == D and bb.device == torch.device("cpu")
    p = bb.preprocessing
    assert (p.mean, p.std, p.patch_size, p.crop_size) == ((0.5,) * 3, (0.5,) * 3, 32, 224)
    assert len(bb.notices) == 1 and "not CLIP" in bb.notices[0]
    # id: architecture and the hashes of all three weight sources
    parts = bb.id.split("/")
    assert parts[0] == "demo-effnet-minilm" and len(parts) == 4
    assert parts[1] == f"tf_efficientnet_lite0@{file_sha256(demo.efficientnet_weights_path())[:12]}"
    assert parts[2].startswith("all-MiniLM-L6-v2@") and parts[3].startswith("bridge@")


def test_weights_really_are_the_packages(bb):
    path = demo.efficientnet_weights_path()
    assert "site-packages" in path.parts or "dist-packages" in path.parts
    package = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(bb.vision.classifier.weight, package["_fc.weight"])
    assert torch.equal(bb.vision.conv_stem.weight, package["_conv_stem.weight"])
    assert (demo.minilm_model_dir() / "model.safetensors").is_file()


def test_spec_round_trip_and_anchor_option(bb):
    assert bb.spec == BackboneSpec("demo-effnet-minilm", {})  # portable: no machine-specific paths
    again = create_backbone(BackboneSpec.from_dict(bb.spec.to_dict()), device="cpu")
    assert again.id == bb.id and again.spec == bb.spec
    plain = create_backbone("demo-effnet-minilm", device="cpu", anchor=0)
    assert plain.feature_dim == 1280 and plain.id == bb.id + "/anchor=0"
    assert create_backbone(plain.spec, device="cpu").id == plain.id
    x = torch.zeros(1, 3, 64, 64)
    assert torch.allclose(plain.dense_features(x), bb.dense_features(x)[:, :1280])


def test_other_local_files_can_be_given(bb, tmp_path):
    # timm-named safetensors weights, a copied text model and a copied bridge give the same numbers.
    weights = tmp_path / "effnet.safetensors"
    save_file({k: v.contiguous() for k, v in bb.vision.state_dict().items()}, str(weights))
    text = tmp_path / "minilm"
    shutil.copytree(demo.minilm_model_dir(), text)
    bridge = tmp_path / "bridge.safetensors"
    shutil.copyfile(demo.default_bridge_path(), bridge)
    other = create_backbone("demo-effnet-minilm", device="cpu", weights=str(weights), text_model=str(text),
                            bridge=str(bridge))
    assert other.spec.options == {"weights": str(weights), "text_model": str(text), "bridge": str(bridge)}
    ours, theirs = bb.id.split("/"), other.id.split("/")
    assert theirs[1] != ours[1]  # another weights file (same tensors) → another hash
    assert theirs[2] == ours[2].replace("all-MiniLM-L6-v2@", "minilm@") and theirs[3] == ours[3]  # same content
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    assert torch.equal(other.dense_features(x), bb.dense_features(x))
    assert torch.allclose(other.encode_text(["a red car"]), bb.encode_text(["a red car"]), atol=1e-6)


def test_clear_errors(bb, tmp_path):
    with pytest.raises(BackboneError, match="unknown option"):
        create_backbone("demo-effnet-minilm", device="cpu", colour="red")
    with pytest.raises(BackboneError, match="anchor"):
        create_backbone("demo-effnet-minilm", device="cpu", anchor=-1)
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("demo-effnet-minilm", device="cpu", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(BackboneError, match="modules.json"):
        create_backbone("demo-effnet-minilm", device="cpu", text_model=str(tmp_path))

    state = {k: v.contiguous() for k, v in bb.vision.state_dict().items()}
    short = tmp_path / "short.safetensors"
    save_file(dict(list(state.items())[:-1]), str(short))
    with pytest.raises(BackboneError, match="295 tensors"):
        demo.load_efficientnet(short)
    swapped = tmp_path / "swapped.safetensors"  # same count, but the classifier rows are in the wrong place
    items = list(state.items())
    items[-2], items[0] = (items[-2][0], items[0][1]), (items[0][0], items[-2][1])
    save_file(dict(items), str(swapped))
    with pytest.raises(BackboneError, match="does not match"):
        demo.load_efficientnet(swapped)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="cannot read"):
        demo.load_efficientnet(garbage)

    bad_bridge = tmp_path / "bridge.safetensors"
    save_file({"W": torch.zeros(384, 512), "b": torch.zeros(512)}, str(bad_bridge))
    with pytest.raises(BackboneError, match="needs W"):
        create_backbone("demo-effnet-minilm", device="cpu", bridge=str(bad_bridge))


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("hw, grid", [((224, 224), (7, 7)), ((448, 448), (14, 14)), ((96, 160), (3, 5)),
                                      ((32, 32), (1, 1))])
def test_feature_shapes(bb, hw, grid):
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    f = bb.dense_features(x)
    assert f.shape == (2, D, *grid) and f.dtype == torch.float32 and torch.isfinite(f).all()
    assert (f[:, -1] == demo.ANCHOR).all()
    assert (f[:, :-1] >= 0).all() and (f[:, :-1] <= 6).all()  # after ReLU6
    out = bb.dense(x)
    assert out.background_logits is None and torch.equal(out.features, f)
    # the same as timm's own forward_features: nothing but the anchor is added
    with torch.inference_mode():
        assert torch.allclose(f[:, :-1], bb.vision.forward_features(x), atol=1e-5)


def test_odd_sized_photo_in_full_mode_is_padded_to_whole_patches(bb):
    rgb = photo("chelsea.png")  # 300×451
    x = bb.preprocessing.to_tensor(rgb, mode="full")
    assert x.shape == (3, 320, 480)
    assert bb.dense_features(x[None]).shape == (1, D, 10, 15)
    with pytest.raises(ValueError, match="multiples of the patch size 32"):
        bb.dense_features(torch.zeros(1, 3, 225, 224))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        bb.dense_features(torch.zeros(3, 224, 224))


# ----------------------------------------------------------------------------- text


def test_encode_text_unit_norm_in_the_feature_space(bb):
    t = bb.encode_text(["a cat", "a red car on a street", "a cat"])
    assert t.shape == (3, D) and t.dtype == torch.float32
    assert torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (t[:, -1] == 0).all()  # text has nothing on the anchor axis
    assert torch.allclose(t[0], t[2], atol=1e-6) and not torch.allclose(t[0], t[1], atol=1e-2)
    assert bb.encode_text([]).shape == (0, D)
    assert bb.encode_text("a cat").shape == (1, D)


def test_bridge_file_is_small_documented_and_reproduces_the_classifier_rows(bb):
    path = demo.default_bridge_path()
    assert path.stat().st_size <= 5_000_000
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        assert fh.get_tensor("W").shape == (384, 1280) and fh.get_tensor("b").shape == (1280,)
    assert meta["format"] == "insight-demo-bridge" and meta["template"] == "a photo of a {}"
    assert float(meta["lambda"]) > 0 and float(meta["heldout_top1"]) > 0.3 and meta["date"]
    assert meta["efficientnet_weights_sha256"] == file_sha256(demo.efficientnet_weights_path())
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    idx = list(range(0, 1000, 10))
    t = bb.encode_text([f"a photo of a {IMAGENET_CLASSNAMES[i]}" for i in idx])[:, :1280]
    best = (t @ F.normalize(bb.vision.classifier.weight, dim=1).T).argmax(1).tolist()
    hits = [IMAGENET_CLASSNAMES[j] == IMAGENET_CLASSNAMES[i] for i, j in zip(idx, best)]
    assert np.mean(hits) >= 0.9


CANDIDATES = ["cat", "dog", "coffee cup", "rocket", "car", "bird", "flower", "palace"]


@pytest.mark.parametrize("name, expected", [("chelsea.png", "cat"), ("coffee.png", "coffee cup"),
                                            ("rocket.jpg", "rocket")])
def test_pooled_features_classify_real_photos_through_the_bridge(bb, name, expected):
    x = bb.preprocessing.to_tensor(photo(name), mode="crop")[None]
    pooled = F.normalize(bb.dense_features(x)[0].mean(dim=(1, 2)), dim=0)
    scores = bb.encode_text([f"a photo of a {c}" for c in CANDIDATES]) @ pooled
    assert CANDIDATES[int(scores.argmax())] == expected


# Boxes checked by eye on the photos, as fractions (x0, y0, x1, y1); "far" = clearly not the object.
REGIONS = [
    # the cat fills the left three quarters; the right edge is blurred background
    ("chelsea.png", "cat", (0.0, 0.0, 0.75, 1.0), lambda cy, cx: cx >= 0.85),
    # the cup (with handle) in the upper middle; the far region is the table around the saucer's edge
    ("coffee.png", "coffee cup", (0.29, 0.04, 0.68, 0.75), lambda cy, cx: (cx <= 0.15) | (cx >= 0.85) | (cy >= 0.9)),
    # the camera on the tripod, held at eye level; the far region is the lawn and sky on the right
    ("camera.png", "camera", (0.35, 0.15, 0.75, 0.55), lambda cy, cx: cx >= 0.8),
]


@pytest.mark.parametrize("name, text, box, far", REGIONS, ids=[r[1] for r in REGIONS])
def test_text_to_region_maps_land_on_the_object(bb, name, text, box, far):
    f, cy, cx = grid_features(bb, name)
    cos = torch.einsum("dhw,d->hw", F.normalize(f, dim=0), bb.encode_text([text])[0])
    cy, cx = cy[:, None].expand_as(cos), cx[None, :].expand_as(cos)
    photo_part = (cy < 1) & (cx < 1)  # not the padding
    x0, y0, x1, y1 = box
    inside = (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1) & photo_part
    outside = far(cy, cx) & photo_part
    peak = int(cos.flatten().argmax())
    assert inside.flatten()[peak], f"the {text!r} map peaks outside the {text}"
    assert cos[inside].mean() > 1.5 * cos[outside].mean() and cos[inside].mean() > 0
