"""The reference backbone: CLIP-DINOiser on an OpenCLIP ViT (docs/method.md §1).

Dense features are MaskCLIP's value-path features of the last ViT block (F_mc); with
CLIP-DINOiser's ``last.pt`` they are pooled over patches whose ``obj_proj`` embeddings
correlate (F⁺), and a FOUND background head scores every patch. Without ``last.pt`` the
backbone still works, as plain MaskCLIP, and says so in :attr:`ClipDinoiserBackbone.notices`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import resolve_device
from .base import BackboneError, BackboneSpec, DenseOutput, Preprocessing, check_image_batch
from .openclip_loading import (
    create_openclip_model,
    file_sha256,
    load_dinoiser_heads,
    resolve_model_config,
    resolve_pretrained,
)

if TYPE_CHECKING:  # open_clip is imported when a model is built, not when this module is
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    from .openclip_loading import DinoiserHeads

#: correlation threshold of DINOiser pooling (docs/method.md §1.3)
GAMMA = 0.2
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NO_DINOISER_NOTICE = (
    "No CLIP-DINOiser weights (last.pt): running as plain MaskCLIP features, "
    "without DINOiser pooling or background head."
)


def maskclip_value_path(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's value path through one open_clip ``ResidualAttentionBlock`` (docs/method.md §1.2).

    The attention is replaced by its value projection alone, so every token only sees itself:
    ``v = x + ls_1(out_proj(W_v ln_1(x) + b_v))``, ``v = v + ls_2(mlp(ln_2(v)))``. All operations
    act on the last (channel) dimension, so ``x`` may be batch-first or sequence-first.
    """
    attn = block.attn
    width = x.shape[-1]
    if attn.in_proj_weight is not None:
        w_v = attn.in_proj_weight[2 * width : 3 * width]
    else:  # separate q/k/v weights (only when kdim/vdim differ from the embedding dim)
        w_v = attn.v_proj_weight
    b_v = attn.in_proj_bias[2 * width : 3 * width] if attn.in_proj_bias is not None else None
    y_v = attn.out_proj(F.linear(block.ln_1(x), w_v, b_v))
    v = x + block.ls_1(y_v)
    return v + block.ls_2(block.mlp(block.ln_2(v)))


def dinoiser_pool(features: torch.Tensor, proj: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """CLIP-DINOiser's correlation pooling (docs/method.md §1.3).

    ``features`` [B, d, h, w] (F_mc), ``proj`` [B, c, h, w] (``obj_proj`` output). With P the
    per-patch L2-normalised ``proj``, ``corr = PᵀP`` with entries below ``gamma`` set to 0, and
    ``F⁺(p) = Σ_q corr(p, q) F(q) / (Σ_q corr(p, q) + 1e-6)``.
    """
    b, d, h, w = features.shape
    if proj.shape[0] != b or proj.shape[-2:] != features.shape[-2:]:
        raise ValueError(f"dinoiser_pool: proj {tuple(proj.shape)} does not match features {tuple(features.shape)}")
    p = F.normalize(proj.flatten(2).float(), dim=1)  # [B, c, hw]
    corr = p.transpose(1, 2) @ p  # [B, hw(p), hw(q)]
    corr = torch.where(corr < gamma, torch.zeros_like(corr), corr)
    pooled = features.flatten(2).float() @ corr.transpose(1, 2)  # [B, d, hw(p)] = Σ_q F(q) corr(p, q)
    pooled = pooled / (corr.sum(dim=2).unsqueeze(1) + 1e-6)
    return pooled.reshape(b, d, h, w).to(features.dtype)


def check_vision_tower(visual: nn.Module | torch.Tensor) -> VisionTransformer:
    """``visual``, checked: a :class:`BackboneError` unless it is a plain open_clip ViT MaskCLIP can read."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    kind = type(visual).__name__
    if not isinstance(visual, VisionTransformer):
        raise BackboneError(f"unsupported vision tower {kind}: clip-dinoiser needs an open_clip VisionTransformer "
                            "(not a ResNet or timm tower)")
    if getattr(visual, "attn_pool", None) is not None:
        raise BackboneError("unsupported vision tower: attention pooling (CoCa-style) has no MaskCLIP value path")
    if visual.proj is None:
        raise BackboneError("unsupported vision tower: it has no output projection (visual.proj)")
    for blk in visual.transformer.resblocks:
        if not isinstance(blk, ResidualAttentionBlock) or not isinstance(blk.attn, nn.MultiheadAttention):
            raise BackboneError(f"unsupported transformer block {type(blk).__name__}: "
                                "the value path needs nn.MultiheadAttention")
    if visual.patch_size[0] != visual.patch_size[1] or visual.image_size[0] != visual.image_size[1]:
        raise BackboneError("unsupported vision tower: patches and the native image size must be square")
    return visual


class ClipDinoiserBackbone:
    """Dense CLIP-DINOiser features and CLIP text embeddings; see the module docstring."""

    #: texts per forward pass in :meth:`encode_text`
    text_batch_size = 256

    def __init__(
        self,
        model: CLIP | CustomTextCLIP,
        tokenizer: Any,
        *,
        device: torch.device,
        id: str,
        spec: BackboneSpec,
        dinoiser: DinoiserHeads | None = None,
        gamma: float = GAMMA,
    ) -> None:
        self.visual = check_vision_tower(model.visual)
        self.model = model.eval().to(device)  # moves self.visual too: it is a submodule
        self.tokenizer = tokenizer
        self.device = device
        self.id = id
        self.spec = spec
        self.gamma = float(gamma)
        self.obj_proj = dinoiser.obj_proj.to(device) if dinoiser is not None else None
        self.bkg_decoder = dinoiser.bkg_decoder.to(device) if dinoiser is not None else None
        self.notices: tuple[str, ...] = () if dinoiser is not None else (NO_DINOISER_NOTICE,)
        self.feature_dim = int(self.visual.proj.shape[1])
        self.width = int(self.visual.proj.shape[0])
        n_blocks = len(self.visual.transformer.resblocks)
        #: block whose ln_2 output feeds the DINOiser heads: the third from last (docs/method.md §1.3)
        self.layer_index = max(0, n_blocks - 3)
        self.batch_first = bool(getattr(self.visual.transformer, "batch_first", True))
        self.preprocessing = Preprocessing(
            OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, patch_size=int(self.visual.patch_size[0]),
            crop_size=int(self.visual.image_size[0]),
        )
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ images

    def resized_positional_embedding(self, h: int, w: int) -> torch.Tensor:
        """Positional embedding [1 + h·w, W] for an h×w patch grid (bicubic on the grid part)."""
        key = (h, w)
        if key not in self._pos_cache:
            pos = self.visual.positional_embedding
            gh, gw = self.visual.grid_size
            if (h, w) == (gh, gw):
                self._pos_cache[key] = pos  # native size: exactly the trained embedding
            else:
                grid = pos[1:].reshape(1, gh, gw, -1).permute(0, 3, 1, 2).float()
                grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
                grid = grid.permute(0, 2, 3, 1).reshape(h * w, -1).to(pos.dtype)
                self._pos_cache[key] = torch.cat([pos[:1], grid], dim=0)
        return self._pos_cache[key]

    def dense(self, images: torch.Tensor) -> DenseOutput:
        """Images [B, 3, H, W] (normalised, H and W multiples of the patch) → features [B, d, h, w]."""
        images = self._check_images(images)
        with torch.inference_mode():
            f_mc, layer = self._forward(images, with_layer=self.obj_proj is not None)
            if self.obj_proj is None or self.bkg_decoder is None or layer is None:
                return DenseOutput(f_mc, None)
            features = dinoiser_pool(f_mc, self.obj_proj(layer), self.gamma)
            background = self.bkg_decoder(F.normalize(layer, dim=1))
            return DenseOutput(features, background)

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.dense(images).features

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        return check_image_batch(images, self.preprocessing.patch_size, self.device)

    def _forward(self, images: torch.Tensor, with_layer: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(F_mc [B, d, h, w], ln_2 output of block ``layer_index`` [B, W, h, w] or None)."""
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))  # [B, W, h, w]
        b, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [B, hw, W]
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1) + self.resized_positional_embedding(h, w).to(x.dtype)
        x = v.ln_pre(v.patch_dropout(x))
        if not self.batch_first:
            x = x.transpose(0, 1)

        blocks = v.transformer.resblocks
        captured: list[torch.Tensor] = []
        hook = (blocks[self.layer_index].ln_2.register_forward_hook(lambda _m, _i, out: captured.append(out))
                if with_layer else None)
        try:
            for blk in blocks[:-1]:
                x = blk(x)
            if with_layer and not captured:  # a one-block model: its only block is the layer block
                blocks[-1](x)
        finally:
            if hook is not None:
                hook.remove()

        x = maskclip_value_path(blocks[-1], x)  # position-wise, so the layout does not matter
        if not self.batch_first:
            x = x.transpose(0, 1)
        x = v.ln_post(x)[:, 1:] @ v.proj  # [B, hw, d]
        f_mc = x.transpose(1, 2).reshape(b, -1, h, w)
        layer = None
        if with_layer:
            t = captured[0] if self.batch_first else captured[0].transpose(0, 1)
            layer = t[:, 1:].transpose(1, 2).reshape(b, -1, h, w)
        return f_mc, layer

    # ------------------------------------------------------------------ text

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """open_clip tokens [N, context_length] (on CPU)."""
        return self.tokenizer(list(texts))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Texts → L2-normalised embeddings [N, d] in the image feature space."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.text_batch_size):
                tokens = self.tokenize(texts[i : i + self.text_batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float())
        return torch.cat(out) if out else torch.empty(0, self.feature_dim, device=self.device)

    def __repr__(self) -> str:
        return f"ClipDinoiserBackbone(id={self.id!r}, device={self.device})"


def create_clip_dinoiser(
    device: str | None = "auto",
    model: str = "ViT-B-16",
    pretrained: str = "laion2b_s34b_b88k",
    dinoiser: str | None = None,
    cache_dir: str | None = None,
    pretrained_fallback: str | None = None,
    offline_hint: str = "",
    **kw: Any,
) -> ClipDinoiserBackbone:
    """Build the CLIP-DINOiser backbone from local files only (never downloads).

    ``model``: an open_clip config name or a JSON model-config file; ``pretrained``: an
    open_clip tag already in the local cache, or a checkpoint file; ``dinoiser``: CLIP-DINOiser's
    ``last.pt`` (optional; without it the features are plain MaskCLIP). Option ``gamma``
    overrides the pooling threshold. ``pretrained_fallback`` and ``offline_hint`` come from the
    caller, not the spec: a local copy of the ``pretrained`` tag's weights for when open_clip's
    cache has none, and how to get them when neither has (see :func:`resolve_pretrained`).
    Model-store references (``store:<id>``) are resolved to files above the backbones, by
    :func:`insight_desktop.core.store.open_backbone.open_backbone`.
    """
    import open_clip

    gamma = float(kw.pop("gamma", GAMMA))
    if kw:
        raise BackboneError(f"unknown option(s) for clip-dinoiser: {', '.join(sorted(kw))}")
    torch_device = resolve_device(device)
    model = str(model)
    pretrained = str(pretrained) if pretrained is not None else None
    for name, value in (("model", model), ("pretrained", pretrained), ("dinoiser", dinoiser)):
        _refuse_reference(name, value)
    model_name, config_path = resolve_model_config(model)
    weights = resolve_pretrained(model_name, pretrained, cache_dir, fallback_file=pretrained_fallback,
                                 offline_hint=offline_hint)
    clip = create_openclip_model(model_name, weights, cache_dir)
    visual = check_vision_tower(clip.visual)
    heads = load_dinoiser_heads(dinoiser, int(visual.proj.shape[0])) if dinoiser else None
    # The tokenizer is made now: open_clip's config registry is global and may change later.
    tokenizer = open_clip.get_tokenizer(model_name)

    weights_hash = file_sha256(config_path, weights.path)[:12]
    tail = f"dinoiser@{file_sha256(dinoiser)[:12]}" if dinoiser else "maskclip"
    backbone_id = f"clip-dinoiser/{model_name}/{weights.label}@{weights_hash}/{tail}"
    options: dict[str, Any] = {
        "model": model,
        "pretrained": pretrained,
        "dinoiser": str(dinoiser) if dinoiser else None,
    }
    if cache_dir is not None:
        options["cache_dir"] = str(cache_dir)
    if gamma != GAMMA:
        options["gamma"] = gamma
        backbone_id += f"/gamma={gamma:g}"
    spec = BackboneSpec("clip-dinoiser", options)
    return ClipDinoiserBackbone(clip, tokenizer, device=torch_device, id=backbone_id, spec=spec, dinoiser=heads,
                                gamma=gamma)


def _refuse_reference(option: str, value: Any) -> None:
    """A ``store:<id>`` that reached the backbone unresolved: say where it should have been resolved."""
    if isinstance(value, str) and value.startswith("store:"):
        raise BackboneError(f"{option}={value!r} names a file in the model store; open the backbone with "
                            "open_backbone (insight_desktop.core.store.open_backbone), which resolves it")


__all__ = [
    "GAMMA",
    "NO_DINOISER_NOTICE",
    "ClipDinoiserBackbone",
    "check_vision_tower",
    "create_clip_dinoiser",
    "dinoiser_pool",
    "maskclip_value_path",
]
