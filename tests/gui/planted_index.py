"""Folder indexes with planted codes, written through the core's IndexStore (no model runs):
each image's codes put chosen concepts at chosen activations, so a test knows every answer."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

GRID = (2, 2)


def planted_codes(n_concepts: int, fires: Mapping[int, float]):
    """Codes on a 2×2 grid where concept c peaks at ``fires[c]`` (in patch 0; half of it in patch 3)."""
    from insight_desktop.core.tasks.codes import PatchCodes

    ids = sorted(int(c) for c, v in fires.items() if v > 0)
    rows = [ids, [], [], ids]
    values = [[fires[c] for c in ids], [], [], [fires[c] / 2 for c in ids]]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    return PatchCodes(GRID, n_concepts, indptr, np.array(sum(rows, []), np.int64),
                      np.array(sum(values, []), np.float32))


def write_images(folder: Path, names) -> list[Path]:
    """Small PNGs (sub-folders made as needed), each its own colour."""
    out = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 32), (20 * i % 255, 80, 160)).save(path)
        out.append(path)
    return out


def plant_index(folder: Path, model_identity: str, n_concepts: int, fires: Mapping[str, Mapping[int, float]],
                index: Path | None = None) -> Path:
    """Index ``folder``'s images (relative POSIX path → {concept: activation}) where the app looks
    for it (``index_path``, under INSIGHT_DATA_DIR in tests); returns the index file."""
    from insight_desktop.core.index import ImageEntry, IndexStore, index_path

    path = index or index_path(folder, model_identity)
    with IndexStore(path, model_identity=model_identity, n_concepts=n_concepts, folder=folder) as store:
        for rel, concepts in fires.items():
            store.put_image(ImageEntry.of(folder / rel, folder), planted_codes(n_concepts, concepts),
                            image_size=(32, 40), analysis_size=(32, 32), patch_size=16, fvu=0.2)
    return path
