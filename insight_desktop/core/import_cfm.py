"""Importing the authors' release (SAE state dict, concept names, D matrix) into a bundle.

The released D matrix is dense m × m (268 MB in float32 for m = 8192). It is memory-mapped where
the format allows (``.npy``, ``.safetensors``, ``torch.load(mmap=True)``) and sparsified a block
of rows at a time, so it is never held densely twice: entries whose share D̂_ij = D_ij / D_ii is
below ``min_share`` are dropped (they are far below τ and can never make a parent edge).
The release has no firing counts and no top tokens: the imported relations have f = 0, no C and
no μ (names come from the release, so hierarchy-aware naming is not needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

DEFAULT_MIN_SHARE = 0.01
#: CLIP-DINOiser's last.pt in the model store (``insight models get clip-dinoiser``)
STORE_DINOISER = "store:clip-dinoiser"


def reference_backbone(dinoiser: str | None = STORE_DINOISER) -> dict[str, object]:
    """The spec of the backbone the authors' SAE was trained on: F⁺ of CLIP-DINOiser on ViT-B/16
    laion2b, with ``dinoiser`` as its ``last.pt``. Without it the features would be plain MaskCLIP,
    which the released SAE never saw."""
    return {"name": "clip-dinoiser",
            "options": {"model": "ViT-B-16", "pretrained": "laion2b_s34b_b88k", "dinoiser": dinoiser}}


class CFMImportError(ValueError):
    """A release file cannot be imported; the message names the file and the reason."""


def read_names(path: str | Path, m: int) -> list[str]:
    """Concept names: a text file (one per line) or a JSON list / {index: name} mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CFMImportError(f"cannot read names file '{path}': {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CFMImportError(f"names file '{path}' is not valid JSON: {exc}") from exc
        if isinstance(data, dict):
            names = [""] * m
            for key, value in data.items():
                names[int(key)] = str(value)
        else:
            names = [str(v) for v in data]
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
    if len(names) != m:
        raise CFMImportError(f"names file '{path}' has {len(names)} names, the SAE has {m} concepts")
    return names


def _open_dense(path: Path) -> Any:
    """A row-sliceable view of a dense matrix file without reading it all."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".safetensors":
            from safetensors import safe_open

            fh = safe_open(str(path), framework="numpy")
            keys = list(fh.keys())
            if len(keys) != 1:
                raise CFMImportError(f"'{path}' holds {len(keys)} tensors; expected the D matrix alone")
            return fh.get_slice(keys[0])
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if isinstance(obj, dict):
            tensors = [v for v in obj.values() if hasattr(v, "shape") and len(v.shape) == 2]
            if len(tensors) != 1:
                raise CFMImportError(f"'{path}' holds no single 2-D tensor to read as the D matrix")
            obj = tensors[0]
        return obj
    except CFMImportError:
        raise
    except Exception as exc:  # noqa: BLE001 — many formats, many failure types
        raise CFMImportError(f"cannot read D matrix '{path}': {exc}") from exc


def sparsify_d(path: str | Path, m: int, *, min_share: float = DEFAULT_MIN_SHARE, block: int = 256) -> sp.csr_matrix:
    """Read a dense D matrix block by block, keeping entries with D_ij ≥ min_share · D_ii."""
    path = Path(path)
    dense = _open_dense(path)
    shape = tuple(dense.get_shape()) if hasattr(dense, "get_shape") else tuple(dense.shape)
    if shape != (m, m):
        raise CFMImportError(f"D matrix '{path}' has shape {shape}, expected ({m}, {m})")
    rows, cols, vals = [], [], []
    for start in range(0, m, block):
        stop = min(m, start + block)
        chunk = np.asarray(dense[start:stop], dtype=np.float64)
        diag = chunk[np.arange(stop - start), np.arange(start, stop)]
        keep = (chunk > 0) & (chunk >= min_share * diag[:, None])
        keep[np.arange(stop - start), np.arange(start, stop)] = diag > 0
        r, c = np.nonzero(keep)
        rows.append(r + start)
        cols.append(c)
        vals.append(chunk[r, c])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))


def import_release(sae_file: str | Path, names_file: str | Path, out: str | Path, *,
                   relations_file: str | Path | None = None, backbone: dict | None = None,
                   tau: float = 0.75, min_share: float = DEFAULT_MIN_SHARE, command: str = "") -> Path:
    """Turn the released files into a bundle at ``out``."""
    from .concepts.bundle import write_bundle
    from .concepts.naming import ConceptNames, NameCandidate
    from .concepts.relations import Relations
    from .sae import import_dictionary_learning

    sae = import_dictionary_learning(sae_file)
    m = sae.config.n_concepts
    names = read_names(names_file, m)
    if relations_file is not None:
        D = sparsify_d(relations_file, m, min_share=min_share)
    else:
        D = sp.identity(m, format="csr") * 0.0
    empty_top = np.full((m, 1), -1, dtype=np.int64)
    relations = Relations(n_concepts=m, n_tokens=0, group_ends=sae.config.group_ends, f=np.zeros(m, np.int64),
                          C=sp.csr_matrix((m, m), dtype=np.int64), D=D.astype(np.float64), top_tokens=empty_top,
                          top_values=np.full((m, 1), -np.inf, np.float32),
                          top_codes=sp.csr_matrix((m, m), dtype=np.float32), tau=tau,
                          provenance={"imported": "authors' release: D only, no firing counts, no top tokens"})
    concept_names = ConceptNames(names=tuple(names),
                                 candidates=tuple((NameCandidate(n, "noun", "release", 1.0),) if n else ()
                                                  for n in names),
                                 method="release")
    spec = backbone or reference_backbone()
    provenance = {"imported_from": {"sae": str(Path(sae_file).resolve()), "names": str(Path(names_file).resolve()),
                                    "relations": str(Path(relations_file).resolve()) if relations_file else None},
                  "min_share": min_share, "command": command}
    return write_bundle(out, backbone={"id": None, "spec": spec, "feature_dim": sae.config.d_in}, sae=sae,
                        relations=relations, names=concept_names, provenance=provenance)
