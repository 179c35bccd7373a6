"""Thumbnails of each concept's top patches: small JPEG strips, so a model shows what a concept
looks like without its training images.

For concept i, the top tokens of the relations pass (store token ids) are located in their source
images; each crop is the patch plus ``context`` patches around it, resized to ``crop_px`` and laid
side by side, best first. Concepts are processed in chunks so memory stays bounded; each strip is
written atomically as ``NNNNN.jpg``, so an interrupted run resumes with the missing ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..features import TokenStore, store_view
from ..fileio import atomic_write_bytes
from ..images import ImageLoadError, load_image

DEFAULT_PER_CONCEPT = 8
DEFAULT_CROP_PX = 64


@dataclass(frozen=True)
class ThumbnailSummary:
    written: int
    existing: int
    missing_images: tuple[str, ...]
    stopped_early: bool


def strip_name(concept: int) -> str:
    return f"{concept:05d}.jpg"


def make_thumbnails(store: TokenStore, preprocessing, relations, out_dir: str | Path, *,
                    per_concept: int = DEFAULT_PER_CONCEPT, crop_px: int = DEFAULT_CROP_PX, context: int = 1,
                    chunk: int = 512, quality: int = 85,
                    on_progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> ThumbnailSummary:
    """Write one JPEG strip per concept that has top tokens into ``out_dir``."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = relations.n_concepts
    top = relations.top_tokens[:, :per_concept]
    todo = [i for i in range(m) if top[i, 0] >= 0 and not (out_dir / strip_name(i)).exists()]
    existing = int((top[:, 0] >= 0).sum()) - len(todo)
    mode, size, patch = store.manifest["mode"], int(store.manifest["size"]), preprocessing.patch_size
    missing: set[str] = set()
    written = 0
    for start in range(0, len(todo), chunk):
        if should_stop is not None and should_stop():
            return ThumbnailSummary(written, existing, tuple(sorted(missing)), True)
        concepts = todo[start:start + chunk]
        tokens = top[concepts]
        valid = tokens >= 0
        where = np.full(tokens.shape + (3,), -1, dtype=np.int64)
        where[valid] = store.locate(tokens[valid])
        crops: dict[tuple[int, int], np.ndarray] = {}
        # Load every needed image once per chunk.
        for image_no in np.unique(where[..., 0][valid]):
            try:
                view = store_view(load_image(store.image_path(int(image_no))), preprocessing, mode, size)
            except ImageLoadError:
                missing.add(store.images[int(image_no)]["path"])
                continue
            hits = np.argwhere(valid & (where[..., 0] == image_no))
            for ci, r in hits:
                _, row, col = where[ci, r]
                top_px, left_px = max(0, (row - context) * patch), max(0, (col - context) * patch)
                box = view[top_px:(row + 1 + context) * patch, left_px:(col + 1 + context) * patch]
                if box.size:
                    crop = Image.fromarray(np.ascontiguousarray(box))
                    crops[(int(ci), int(r))] = np.asarray(crop.resize((crop_px, crop_px), Image.Resampling.BILINEAR))
        for ci, concept in enumerate(concepts):
            tiles = [crops[(ci, r)] for r in range(tokens.shape[1]) if (ci, r) in crops]
            if not tiles:
                continue
            buf = io.BytesIO()
            Image.fromarray(np.concatenate(tiles, axis=1)).save(buf, format="JPEG", quality=quality)
            atomic_write_bytes(out_dir / strip_name(concept), buf.getvalue())
            written += 1
        if on_progress is not None:
            on_progress(min(start + chunk, len(todo)), len(todo))
    return ThumbnailSummary(written, existing, tuple(sorted(missing)), False)


def read_thumbnails(folder: str | Path) -> dict[int, bytes]:
    folder = Path(folder)
    return {int(p.stem): p.read_bytes() for p in sorted(folder.glob("*.jpg")) if p.stem.isdigit()}
