"""Evaluation data on disk and the metrics computed on it.

* Classification folders: one sub-folder per class (its name is the class name), images inside.
* Segmentation datasets: ``images/``, ``masks/`` (PNG label indices, 255 = ignore; matched to
  images by file stem) and ``classes.txt`` (one class per line; line i is label i).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..images import ImageLoadError, find_images, load_image
from .prompts import ClassListError, validate_classes

IGNORE_LABEL = 255


class DatasetError(ValueError):
    """A dataset folder does not have the expected layout; the message says what is missing."""


def class_folders(folder: str | os.PathLike) -> list[tuple[str, list[Path]]]:
    """``(class name, images)`` for every sub-folder holding images, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"'{root}' is not a folder")
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = find_images(sub)
        if images:
            out.append((sub.name, images))
    if len(out) < 2:
        raise DatasetError(f"'{root}' needs at least two sub-folders of images, one per class (found {len(out)})")
    try:
        validate_classes([name for name, _ in out])
    except ClassListError as exc:
        raise DatasetError(f"'{root}': class folders {exc}") from None
    return out


def labelled_image_batches(folder: str | os.PathLike, batch_size: int, on_error: Callable[[ImageLoadError], None]):
    """A class-folder dataset in batches: ``(class names, image count, batches)`` where each batch
    is ``(labels, images, images done)``; unreadable files go to ``on_error`` and are skipped."""
    classes = class_folders(folder)
    items = [(c, path) for c, (_, paths) in enumerate(classes) for path in paths]

    def batches():
        for start in range(0, len(items), batch_size):
            labels, images = [], []
            for c, path in items[start:start + batch_size]:
                try:
                    images.append(load_image(path))
                    labels.append(c)
                except ImageLoadError as err:
                    on_error(err)
            yield labels, images, min(start + batch_size, len(items))

    return [name for name, _ in classes], len(items), batches()


def prompt_name(class_name: str) -> str:
    """Folder names often use underscores for spaces ("golden_retriever"); prompts should not."""
    return " ".join(class_name.replace("_", " ").split())


@dataclass(frozen=True)
class SegmentationDataset:
    classes: tuple[str, ...]
    pairs: tuple[tuple[Path, Path], ...]   # (image, mask)
    unmatched: tuple[Path, ...]            # images without a mask


def segmentation_dataset(folder: str | os.PathLike) -> SegmentationDataset:
    root = Path(folder)
    for part in ("images", "masks", "classes.txt"):
        if not (root / part).exists():
            raise DatasetError(f"segmentation dataset '{root}' lacks '{part}' (expected images/, masks/, classes.txt)")
    lines = (root / "classes.txt").read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    try:
        classes = validate_classes(lines)
    except ClassListError as exc:
        raise DatasetError(f"'{root / 'classes.txt'}': {exc}") from None
    if len(classes) > IGNORE_LABEL:
        raise DatasetError(f"'{root / 'classes.txt'}' lists {len(classes)} classes; "
                           f"at most {IGNORE_LABEL} fit in PNG masks")
    masks = {p.stem: p for p in find_images(root / "masks")}
    pairs, unmatched = [], []
    for image in find_images(root / "images"):
        (pairs.append((image, masks[image.stem])) if image.stem in masks else unmatched.append(image))
    if not pairs:
        raise DatasetError(f"no image in '{root / 'images'}' has a mask with the same name in '{root / 'masks'}'")
    return SegmentationDataset(classes, tuple(pairs), tuple(unmatched))


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """Label indices of a palette or greyscale PNG, uint8 [H, W] (palette indices, not colours)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise DatasetError(f"mask '{path}' is {im.mode}, not a palette or greyscale image of label indices")
        return np.asarray(im, dtype=np.uint8).copy()


def confusion(pred: np.ndarray, target: np.ndarray, n_classes: int, ignore: int = IGNORE_LABEL) -> np.ndarray:
    """Confusion counts ``[target, prediction]``, int64 ``[C, C + 1]``.

    Ignored and out-of-range targets are skipped. The extra last column counts predictions
    outside the classes (e.g. FOUND background when no class is called "background"): they are
    misses of their target class, not hits of any class.
    """
    t = np.asarray(target).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    keep = (t != ignore) & (t < n_classes)
    t, p = t[keep], np.minimum(p[keep], n_classes)
    return np.bincount(t * (n_classes + 1) + p, minlength=n_classes * (n_classes + 1)).reshape(n_classes, n_classes + 1)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for classes absent from targets and predictions."""
    n = conf.shape[0]
    tp = np.diag(conf[:, :n]).astype(np.float64)
    union = conf[:, :n].sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over the classes that occur (in targets or predictions), as mmseg reports it."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    n = conf.shape[0]
    total = conf.sum()
    return float(np.trace(conf[:, :n]) / total) if total else float("nan")
