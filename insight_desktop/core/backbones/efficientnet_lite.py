"""EfficientNet-Lite0 in plain torch, with timm's module and tensor names (``tf_efficientnet_lite0``).

Why not ``timm.create_model``: importing timm costs 1.7–2.4 s on two cores, most of it because
``timm.layers`` imports torchvision, whose ``ops`` import ``torch._dynamo``; the demo backbone
needs none of that, and those seconds came before the app's first heatmap. The network is small
and fixed, so it is spelled out here: the same blocks, the same ``state_dict`` names in the same
order, TensorFlow's "same" padding where timm uses it (stride-2 convolutions), BatchNorm eps
1e-3, ReLU6 (``tests/core/test_efficientnet_lite.py`` checks names, shapes and outputs against
timm's model).

Lite0 (Tan & Le 2019, "lite" variant: no squeeze-excitation, ReLU6, fixed stem and head):
stem 3×3/2 → 32; one depthwise-separable block → 16; inverted-residual stages (repeats, kernel,
stride, expansion 6, channels) (2, 3, 2, 24), (2, 5, 2, 40), (3, 3, 2, 80), (3, 5, 1, 112),
(4, 5, 2, 192), (1, 3, 1, 320); head 1×1 → 1280; classifier 1280 → 1000.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
#: (repeats, kernel, stride, out channels) of the inverted-residual stages (expansion 6)
STAGES = ((2, 3, 2, 24), (2, 5, 2, 40), (3, 3, 2, 80), (3, 5, 1, 112), (4, 5, 2, 192), (1, 3, 1, 320))
STEM, FIRST, HEAD, CLASSES = 32, 16, 1280, 1000


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding (uneven: the extra pixel goes right/bottom)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        pad_h = _same_pad(ih, self.kernel_size[0], self.stride[0])
        pad_w = _same_pad(iw, self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_pad(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """timm's ``padding='same'``: static symmetric padding at stride 1, TF "same" at stride 2."""
    if stride == 1:
        return nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, kernel, stride, 0, groups=groups, bias=False)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm followed by ReLU6 (or nothing), as timm's ``BatchNormAct2d`` (same tensor names)."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = BatchNormAct2d(cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return y + x if self.skip else y


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int = 6):
        super().__init__()
        mid = cin * expansion
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = BatchNormAct2d(cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """``forward_features``: images [B, 3, H, W] → [B, 1280, H/32, W/32]; ``classifier``: ImageNet rows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = _conv(3, STEM, 3, 2)
        self.bn1 = BatchNormAct2d(STEM)
        stages: list[nn.Module] = [nn.Sequential(DepthwiseSeparableConv(STEM, FIRST, 3, 1))]
        cin = FIRST
        for repeats, kernel, stride, cout in STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, kernel, stride if i == 0 else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, HEAD, 1)
        self.bn2 = BatchNormAct2d(HEAD)
        self.classifier = nn.Linear(HEAD, CLASSES)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x).mean(dim=(2, 3)))
