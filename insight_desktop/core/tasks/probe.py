"""The concept-bottleneck probe (docs/method.md §6a): a sparse linear classifier on image concept vectors.

``logits = W z̄`` (no bias), ``z̄`` = max-pooled codes of a centre crop. Loss: mean cross-entropy
``+ λ · mean|W|`` (the mean over all ``C · m`` weights, as docs/method.md §6 writes it).

**Solver (ours).** The problem is convex; accelerated proximal gradient (FISTA with adaptive
restart) reaches it with exact zeros in ``W`` (soft-thresholding), unlike a subgradient
optimiser, and is deterministic. Step ``1/L`` with ``L = ½ σ_max(Z)² / N``, a bound on the
curvature of softmax cross-entropy. Only concepts that fire in some training image get columns;
the others have zero gradient and stay exactly 0.

**λ selection.** A stratified ``holdout`` share of every class (seeded) is held out; the probe
is fitted on the rest for a path of λ (from ``λ_max``, where ``W = 0`` is optimal, down by
factors of √10, warm-started), the λ with the best held-out accuracy wins (ties: the larger λ,
i.e. the sparser probe), and the probe is refitted on all images with that λ.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

#: λ path, as fractions of λ_max
LAMBDA_FRACTIONS = tuple(10.0 ** (-k / 2) for k in range(1, 9))


class ProbeError(ValueError):
    """A probe cannot be trained or used (too few images, classes that do not match, …)."""


@dataclass(frozen=True, eq=False)
class ProbeFit:
    """A trained probe and how its λ was chosen."""

    W: np.ndarray                      # float32 [C, m]
    class_names: tuple[str, ...]
    lam: float
    lambdas: np.ndarray                # float64 [L]: the path tried on the split
    heldout_accuracy: np.ndarray       # float64 [L]
    train_index: np.ndarray            # int64: images the path was fitted on
    heldout_index: np.ndarray          # int64: images λ was chosen on
    train_accuracy: float              # of the final fit, on all images
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("W", "lambdas", "heldout_accuracy", "train_index", "heldout_index"):
            getattr(self, name).flags.writeable = False

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.W))

    def metadata(self) -> dict[str, Any]:
        """JSON-able facts stored with the probe in the bundle."""
        return {"lambda": self.lam, "lambdas": self.lambdas.tolist(),
                "heldout_accuracy": self.heldout_accuracy.tolist(),
                "train_images": int(self.train_index.size), "heldout_images": int(self.heldout_index.size),
                "train_accuracy": self.train_accuracy, "nonzero_weights": self.nnz, **self.extra}


def stratified_split(y: np.ndarray, holdout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train, heldout)`` indices: ``round(holdout · n_c)`` images of every class with ≥ 2 images
    (at least one, never all) are held out, chosen with ``seed``."""
    if not 0 < holdout < 1:
        raise ProbeError(f"holdout must lie strictly between 0 and 1, got {holdout}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size >= 2:
            k = min(max(1, int(round(holdout * idx.size))), idx.size - 1)
            held.append(rng.permutation(idx)[:k])
    heldout = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(y.size), heldout)
    return train.astype(np.int64), heldout.astype(np.int64)


def fit_probe(Z: sp.spmatrix | np.ndarray, y: Sequence[int] | np.ndarray, class_names: Sequence[str], *,
              lam: float | None = None, holdout: float = 0.2, seed: int = 0, max_iter: int = 500,
              tol: float = 1e-6) -> ProbeFit:
    """Train the probe on concept vectors ``Z`` [N, m] with labels ``y`` (indices into ``class_names``).

    ``lam`` fixes λ (no selection); otherwise λ is chosen on a stratified held-out split.
    """
    Z = sp.csr_matrix(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n_classes, m = len(class_names), Z.shape[1]
    if Z.shape[0] != y.size:
        raise ProbeError(f"{Z.shape[0]} concept vectors but {y.size} labels")
    if n_classes < 2 or y.size == 0 or y.min() < 0 or y.max() >= n_classes:
        raise ProbeError(f"labels must lie in 0..{n_classes - 1} with at least two classes")
    active = np.unique(Z.indices)
    Za = Z[:, active]
    if lam is not None:
        lambdas, accuracy = np.array([float(lam)]), np.array([np.nan])
        train, heldout = np.arange(y.size), np.zeros(0, np.int64)
        best = float(lam)
    else:
        train, heldout = stratified_split(y, holdout, seed)
        if heldout.size == 0:
            raise ProbeError("choosing λ needs at least two images in some class (or give λ explicitly)")
        lambdas = _lambda_max(Za[train], y[train], n_classes, m) * np.asarray(LAMBDA_FRACTIONS)
        accuracy = np.zeros(lambdas.size)
        W = np.zeros((n_classes, active.size))
        for i, value in enumerate(lambdas):  # warm starts down the path
            W = _fista(Za[train], y[train], n_classes, value / (n_classes * m), W, max_iter, tol)
            accuracy[i] = np.mean(np.argmax(Za[heldout] @ W.T, axis=1) == y[heldout])
        best = float(lambdas[int(np.argmax(accuracy))])  # first maximum = largest λ among ties
    W_active = _fista(Za, y, n_classes, best / (n_classes * m), np.zeros((n_classes, active.size)), max_iter, tol)
    W_full = np.zeros((n_classes, m), dtype=np.float32)
    W_full[:, active] = W_active
    train_acc = float(np.mean(np.argmax(Za @ W_active.T, axis=1) == y))
    return ProbeFit(W_full, tuple(class_names), best, lambdas, accuracy, train, heldout, train_acc)


def _lambda_max(Z: sp.csr_matrix, y: np.ndarray, n_classes: int, m: int) -> float:
    """Smallest λ for which ``W = 0`` is optimal: ``C · m · max|∇CE(0)|``."""
    grad = _grad(Z, y, n_classes, np.zeros((n_classes, Z.shape[1])))[0]
    return max(float(np.abs(grad).max()) * n_classes * m, 1e-12)


def _grad(Z: sp.csr_matrix, y: np.ndarray, n_classes: int, W: np.ndarray) -> tuple[np.ndarray, float]:
    logits = Z @ W.T
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss = -float(np.mean(np.log(np.maximum(p[np.arange(y.size), y], 1e-300))))
    p[np.arange(y.size), y] -= 1.0
    return np.asarray(Z.T @ p).T / y.size, loss


def _fista(Z: sp.csr_matrix, y: np.ndarray, n_classes: int, l1: float, W0: np.ndarray, max_iter: int, tol: float,
           ) -> np.ndarray:
    """Minimise ``CE(W) + l1 · ‖W‖₁`` from ``W0`` (accelerated proximal gradient, adaptive restart)."""
    if Z.shape[1] == 0:
        return W0.copy()
    from scipy.sparse.linalg import svds

    if min(Z.shape) > 1:
        sigma = float(svds(Z, k=1, return_singular_vectors=False, random_state=0)[0])
    else:
        sigma = float(sp.linalg.norm(Z))
    step = 1.0 / max(0.5 * sigma * sigma / Z.shape[0], 1e-12)
    W, V, t = W0.copy(), W0.copy(), 1.0
    for _ in range(max_iter):
        g, _ = _grad(Z, y, n_classes, V)
        W_new = V - step * g
        W_new = np.sign(W_new) * np.maximum(np.abs(W_new) - step * l1, 0.0)
        if np.sum((V - W_new) * (W_new - W)) > 0:  # momentum points uphill: restart it
            t = 1.0
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        V = W_new + ((t - 1.0) / t_new) * (W_new - W)
        change = float(np.abs(W_new - W).max())
        W, t = W_new, t_new
        if change <= tol * (1.0 + float(np.abs(W).max())):
            break
    return W


def train_probe(folder: str | os.PathLike, encoder: Any, *, lam: float | None = None, holdout: float = 0.2,
                seed: int = 0, batch_size: int = 16, on_progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> ProbeFit | None:
    """Train a probe on a folder with one sub-folder of images per class.

    ``encoder``: an :class:`~insight_desktop.core.engine.Analyzer` or a ``(backbone, sae)`` pair.
    Unreadable images are skipped (and logged). Returns None when stopped early.
    """
    from .datasets import labelled_image_batches
    from .pooling import encode_pooled, pooled_matrix

    if isinstance(encoder, tuple):
        backbone, sae = encoder
        encode = lambda ims: encode_pooled(backbone, sae, ims, batch_size=batch_size)  # noqa: E731
    else:
        encode = lambda ims: encoder.pooled(ims, batch_size=batch_size)  # noqa: E731
    pooled, labels, skipped = [], [], []
    class_names, total, batches = labelled_image_batches(folder, batch_size, lambda err: skipped.append(str(err)))
    for batch_labels, images, done in batches:
        if should_stop is not None and should_stop():
            return None
        pooled += encode(images) if images else []
        labels += batch_labels
        if on_progress is not None:
            on_progress(done, total)
    if skipped:
        log.warning("skipped %d unreadable image(s):\n%s", len(skipped), "\n".join(skipped))
    if not pooled:
        raise ProbeError(f"no readable images under '{folder}'")
    fit = fit_probe(pooled_matrix(pooled), labels, class_names, lam=lam, holdout=holdout, seed=seed)
    return dataclasses.replace(fit, extra={"images": len(labels), "skipped": len(skipped), "seed": seed,
                                           "holdout": holdout, "view": "crop", "pooling": "max"})
