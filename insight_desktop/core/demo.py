"""``insight demo``: the core end to end on a tiny model it builds itself (no downloads).

A tiny, randomly initialised OpenCLIP ViT goes through the real loading path (config file +
checkpoint + CLIP-DINOiser ``last.pt``); a small Matryoshka SAE is trained on augmented views of
the bundled sample photos; then one photo is encoded and its concepts are printed with a patch
map. The model and SAE are cached, so later runs only encode.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .paths import demo_model_path, resource_path, sample_images, user_cache_dir

if TYPE_CHECKING:  # torch is imported when the demo runs, not when this module is
    import torch

SHADES = " .:-=+*#%@"


def _views(rgb: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random resized crops (30–100 % of the area) with horizontal flips."""
    from PIL import Image

    h, w = rgb.shape[:2]
    views = []
    for _ in range(n):
        side = int(min(h, w) * np.sqrt(rng.uniform(0.3, 1.0)))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = Image.fromarray(rgb[top:top + side, left:left + side]).resize((size, size), Image.Resampling.BICUBIC)
        view = np.asarray(crop)
        views.append(view[:, ::-1].copy() if rng.random() < 0.5 else view)
    return views


def _features(backbone, rgbs: list[np.ndarray], mode: str) -> list[torch.Tensor]:
    """Dense features [d, h, w] of each image, float32 on the CPU."""
    import torch

    out = []
    with torch.inference_mode():
        for rgb in rgbs:
            x = backbone.preprocessing.to_tensor(rgb, mode=mode)[None].to(backbone.device)
            f = backbone.dense_features(x)[0].float().cpu()
            out.append(f)
    return out


def prepare(cache: Path, device: str, log) -> tuple:
    """The tiny backbone and its SAE, built on first use and cached."""
    from .backbones.tiny import TINY_MODEL_NAME, TinyModelFiles, build_tiny_openclip
    from .images import load_image
    from .sae import ArrayTokenSource, SAEConfig, TrainConfig, group_sizes_from_fractions, load_sae, save_sae, train_sae
    from .store.open_backbone import open_backbone

    folder = cache / "tiny-openclip"
    files = TinyModelFiles(folder / f"{TINY_MODEL_NAME}.json", folder / f"{TINY_MODEL_NAME}.safetensors",
                           folder / "last.pt")
    if not all(p.exists() for p in (files.config_path, files.checkpoint_path, files.dinoiser_path)):
        log("building a tiny, randomly initialised OpenCLIP model…")
        files = build_tiny_openclip(folder, seed=0)
    backbone = open_backbone("clip-dinoiser", device=device, model=str(files.config_path),
                             pretrained=str(files.checkpoint_path), dinoiser=str(files.dinoiser_path))
    sae_path = cache / "sae.safetensors"
    if sae_path.exists():
        return backbone, load_sae(sae_path)
    log("training a small concept dictionary on augmented views of the sample photos…")
    rng = np.random.default_rng(0)
    views = [v for p in sample_images() for v in _views(load_image(p), 12, backbone.preprocessing.crop_size, rng)]
    feats = _features(backbone, views, "crop")
    tokens = np.concatenate([f.reshape(f.shape[0], -1).T.numpy() for f in feats])
    d, m = tokens.shape[1], 128
    sae_config = SAEConfig(d_in=d, n_concepts=m, k=4, group_sizes=group_sizes_from_fractions(m, (0.25, 0.75)))
    train_config = TrainConfig(lr=2e-3, batch_tokens=2048, epochs=40, threshold_start_step=50,
                               dead_tokens=20_000, checkpoint_every=0, seed=0)
    result = train_sae(ArrayTokenSource(tokens, group_size=feats[0].shape[1] * feats[0].shape[2]),
                       sae_config, train_config, device=device)
    save_sae(result.sae, sae_path)
    return backbone, result.sae


DEMO_CLASSES = ("cat", "dog", "coffee cup", "rocket", "flower", "person", "building")


def _print_map(z_map: np.ndarray, title: str) -> None:
    heat = z_map ** 2  # display rule of docs/method.md §3: square, divide by max
    if heat.max() <= 0:
        return
    heat = heat / heat.max()
    print(f"\n{title}")
    for row in heat:
        print("  " + "".join(SHADES[min(len(SHADES) - 1, int(v * len(SHADES)))] * 2 for v in row))


def run_bundled_demo(model: Path, image: str | None = None, device: str = "auto") -> None:
    """The bundled demo concept model (real weights) on a sample photo: named concepts, where they
    fire, and a zero-shot classification explained by concepts."""
    from .concepts.names import NameBook
    from .engine import Analyzer

    t0 = time.monotonic()
    analyzer = Analyzer(model, device=device)
    path = Path(image) if image else resource_path("samples", "chelsea.png")
    analysis = analyzer.analyze(path, classes=list(DEMO_CLASSES))
    cls = analysis.classification
    assert cls is not None  # classes were given, so there is a zero-shot classification
    names = NameBook(analyzer.model.names)  # the one place names are looked up
    print(f"Insight Desktop {__version__} — the bundled demo concept model")
    print(f"model     {model.name}: {analyzer.model.n_concepts} concepts, backbone {analyzer.backbone.id}")
    for notice in dict.fromkeys((*analyzer.notices, *analysis.notices)):  # once each, in order
        print(f"note      {notice}")
    h, w = analysis.grid
    print(f"image     {path.name}: {analysis.image_size[1]}×{analysis.image_size[0]} px → {w}×{h} patches")
    print(f"codes     FVU {analysis.faithfulness.fvu:.3f}, cosine(x, x̂) {analysis.faithfulness.cosine:.3f}")
    print("\n concept  name                  level  max act  patches  parents")
    for c in analysis.concepts[:10]:
        parents = ", ".join(names.name(p) for p in c.parents[:2]) or "—"
        name = names.name(c.concept)[:20]
        print(f" {c.concept:>7}  {name:<20}  {c.level:>5}  {c.activation:>7.3f}  {c.patches:>7}  {parents}")
    if analysis.concepts:
        top = analysis.concepts[0]
        _print_map(analysis.concept_map(top.concept),
                   f"where '{names.name(top.concept)}' fires (one character per patch):")
    order = np.argsort(-cls.probabilities)[:3]
    print("\nzero-shot classification through concepts:")
    for c in order:
        ranked = np.argsort(-cls.contributions[c])[:3]
        why = ", ".join(f"{names.name(cls.concepts[j])} {cls.contributions[c][j]:+.2f}" for j in ranked)
        print(f"  {cls.class_names[c]:<12} {cls.probabilities[c]:6.1%}   because of: {why}")
    print(f"\ndone in {time.monotonic() - t0:.1f} s. See it in the desktop app: insight-desktop (or make run).")


def run_demo(image: str | None = None, device: str = "auto", quiet: bool = False, tiny: bool = False) -> None:
    model = None if tiny else demo_model_path()
    if model is not None:
        run_bundled_demo(model, image, device)
        return
    import torch

    from .images import load_image

    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    t0 = time.monotonic()
    cache = user_cache_dir() / "demo" / f"v{__version__}"
    backbone, sae = prepare(cache, device, log)
    path = Path(image) if image else resource_path("samples", "chelsea.png")
    rgb = load_image(path)
    # Long side 448 → a patch grid of up to 28 columns.
    scale = 448 / max(rgb.shape[:2])
    from PIL import Image

    small = np.asarray(Image.fromarray(rgb).resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
                                                   Image.Resampling.BICUBIC))
    f = _features(backbone, [small], "full")[0]
    d, h, w = f.shape
    x = f.reshape(d, h * w).T
    with torch.inference_mode():
        z = sae.encode(x)
        x_hat = sae.decode(z)
    fvu = float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    cos = float(torch.nn.functional.cosine_similarity(x, x_hat, dim=1).mean())
    z = z.numpy()
    image_vec = z.max(axis=0)
    top = np.argsort(-image_vec)[:8]
    top = top[image_vec[top] > 0]

    print(f"Insight Desktop {__version__} — demonstration on a tiny, randomly initialised model")
    print(f"backbone  {backbone.id} on {backbone.device}")
    for notice in backbone.notices:
        print(f"note      {notice}")
    print(f"SAE       d = {sae.config.d_in}, {sae.config.n_concepts} concepts in levels "
          f"{list(sae.config.group_sizes)}, k = {sae.config.k}")
    print(f"image     {path.name}: {rgb.shape[1]}×{rgb.shape[0]} px → {w}×{h} patches")
    print(f"codes     {np.count_nonzero(z) / z.shape[0]:.1f} active concepts per patch; "
          f"FVU {fvu:.3f}, cosine(x, x̂) {cos:.3f}")
    print("\n concept  level  max act  patches")
    for j in top:
        print(f" {j:>7}  {sae.config.level_of(int(j)):>5}  {image_vec[j]:>7.3f}  {np.count_nonzero(z[:, j]):>7}")
    if len(top):
        j = int(top[0])
        heat = z[:, j].reshape(h, w) ** 2  # display rule of docs/method.md §3: square, divide by max
        heat = heat / heat.max()
        print(f"\nwhere concept {j} fires (squared activation, one character per patch):")
        for row in heat:
            print("  " + "".join(SHADES[min(len(SHADES) - 1, int(v * len(SHADES)))] * 2 for v in row))
    print(f"\ndone in {time.monotonic() - t0:.1f} s (a tiny random model: the concepts mean nothing).")
