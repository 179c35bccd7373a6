"""The plain-torch EfficientNet-Lite0 is timm's ``tf_efficientnet_lite0``: same names, shapes, outputs."""

from __future__ import annotations

import pytest
import torch

from insight_desktop.core.backbones.efficientnet_lite import EfficientNetLite0

timm = pytest.importorskip("timm")


@pytest.fixture(scope="module")
def pair():
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, v in reference.state_dict().items():
        if not v.is_floating_point():
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.1
    reference.load_state_dict(state)
    ours = EfficientNetLite0().eval()
    ours.load_state_dict(state)
    return reference, ours


def test_same_tensor_names_in_the_same_order_with_the_same_shapes(pair):
    reference, ours = pair
    a, b = reference.state_dict(), ours.state_dict()
    assert list(a) == list(b) and len(a) == 296
    assert all(a[k].shape == b[k].shape for k in a)


@pytest.mark.parametrize("size", [(448, 672), (225, 301), (32, 32)])
def test_same_features_and_logits(pair, size):
    reference, ours = pair
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(ours.forward_features(x), reference.forward_features(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)
