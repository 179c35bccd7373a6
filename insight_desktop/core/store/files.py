"""What a model file is and whether it is valid (copying it into the store: :mod:`.staging`).

Kinds: ``bundle`` (a concept-model folder or ``.zip``), ``dinoiser`` (CLIP-DINOiser's
``last.pt``: ``obj_proj``/``bkg_decoder`` keys), ``openclip`` (an open_clip state dict:
``visual.`` keys, in ``.safetensors``, ``.bin``, ``.pt`` or ``.pth``). Everything is validated
before it is copied; third-party checkpoints are read with ``torch.load(weights_only=True)`` or
safetensors, never unpickled freely (ARCHITECTURE rule 6).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .index import StoreError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key → shape of the state dict in a checkpoint, read without keeping the tensors."""
    with open(path, "rb") as fh:
        if fh.read(len(LFS_POINTER)) == LFS_POINTER:  # a repository served the pointer, not the file
            raise StoreError(f"{path.name} is a Git LFS pointer file, not the weights themselves: download the "
                             "file through the repository's web page (the 'download raw file' button)")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
        import torch

        try:  # mmap: a 600 MB checkpoint is not read into memory just to look at its keys
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) torch files cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a bad file
        raise StoreError(f"{path.name} is not a readable checkpoint: {_first_line(exc)} ({path})") from None
    from ..backbones.openclip_loading import state_dict_of

    obj = state_dict_of(obj)
    if obj is None:
        raise StoreError(f"{path.name} holds no state dict (a dict of tensors): {path}")
    out = {}
    for key, value in obj.items():
        if hasattr(value, "shape"):
            out[str(key).removeprefix("module.")] = tuple(value.shape)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def kind_of_state(shapes: dict[str, tuple[int, ...]]) -> str | None:
    if any(k.endswith(("obj_proj.weight", "bkg_decoder.weight")) for k in shapes):
        return "dinoiser"
    if any(k.startswith("visual.") for k in shapes):
        return "openclip"
    return None


def guess_kind(path: Path) -> str:
    """The kind of ``path`` from its form and, for weights, its keys; StoreError when unclear."""
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return "bundle"
        raise StoreError(f"folder {path} has no manifest.json: it is not a concept model")
    if not path.is_file():
        raise StoreError(f"{path} does not exist")
    if path.suffix.lower() == ".zip":
        return "bundle"
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise StoreError(f"cannot tell what {path.name} is: expected a concept model (.zip or folder) or weights "
                         f"({', '.join(WEIGHT_SUFFIXES)})")
    kind = kind_of_state(tensor_shapes(path))
    if kind is None:
        raise StoreError(f"{path.name} is neither CLIP-DINOiser weights (obj_proj/bkg_decoder keys) nor an "
                         "OpenCLIP checkpoint (visual.* keys); give the kind explicitly if you are sure")
    return kind


def validate(path: Path, kind: str, *, openclip_model: str | None = None) -> dict[str, Any]:
    """Check that ``path`` is a usable ``kind``; return what was learnt (``width``, ``model``)."""
    if kind == "bundle":
        from ..concepts.bundle import BundleError, ConceptModel

        try:
            ConceptModel.load(path).close()
        except BundleError as exc:
            raise StoreError(f"{path.name} is not a valid concept model: {exc}") from None
        return {}
    if kind == "dinoiser":
        return _validate_dinoiser(path)
    if kind == "openclip":
        return _validate_openclip(path, openclip_model)
    raise StoreError(f"cannot import a file of kind {kind!r}"
                     + (": the authors' release is several files, use import_release" if kind == "sae-release" else ""))


def _validate_dinoiser(path: Path) -> dict[str, Any]:
    from ..backbones import BackboneError
    from ..backbones.openclip_loading import load_dinoiser_heads

    if path.suffix.lower() not in (".pt", ".pth", ".bin"):
        raise StoreError(f"{path.name}: CLIP-DINOiser weights are a torch file (last.pt), not {path.suffix}")
    widths = [s[1] for k, s in tensor_shapes(path).items() if k.endswith("obj_proj.weight") and len(s) == 4]
    if len(widths) != 1:
        raise StoreError(f"{path.name} is not CLIP-DINOiser's last.pt: no single obj_proj.weight of shape "
                         "[256, width, 3, 3]")
    try:
        load_dinoiser_heads(path, int(widths[0]))
    except BackboneError as exc:
        raise StoreError(str(exc)) from None
    return {"width": int(widths[0])}


def _validate_openclip(path: Path, model: str | None) -> dict[str, Any]:
    """Keys of an open_clip CLIP; with ``model`` also the image tower's shapes against its config."""
    shapes = tensor_shapes(path)
    if kind_of_state(shapes) != "openclip":
        raise StoreError(f"{path.name} is not an OpenCLIP checkpoint: it has no visual.* keys")
    if not any(k in shapes for k in ("token_embedding.weight", "text.token_embedding.weight", "text_projection")):
        raise StoreError(f"{path.name} has an image tower but no text tower; the app needs both")
    if model is not None:
        problem = openclip_mismatch(shapes, model)
        if problem:
            raise StoreError(f"{path.name} does not fit open_clip model {model}: {problem}")
    return {"model": model}


def openclip_mismatch(shapes: dict[str, tuple[int, ...]], model: str) -> str | None:
    """Why ``shapes`` cannot be open_clip ``model``'s checkpoint, or None if they fit."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    if cfg is None:
        return f"open_clip knows no model {model!r}"
    vision = cfg.get("vision_cfg", {})
    width, patch, embed = vision.get("width"), vision.get("patch_size"), cfg.get("embed_dim")
    expected = {"visual.conv1.weight": (width, 3, patch, patch), "visual.proj": (width, embed)}
    for key, shape in expected.items():
        if None in shape or key not in shapes:
            continue  # a timm or ResNet tower: no such key to compare
        if shapes[key] != shape:
            return f"{key} has shape {list(shapes[key])}, expected {list(shape)}"
    return None


def delete_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
