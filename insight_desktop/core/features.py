"""Dense-feature extraction over image folders into an on-disk token store.

A token store is a folder::

    store.json                manifest: format, backbone, preprocessing, committed shards, images
    shard-00000.tokens.npy    [n, d] float16 or float32 — one row per patch token
    shard-00000.index.npy     [n, 3] int32 — (image number, patch row, patch column) of each row

Shards are plain ``.npy`` files (no pickles) so they can be memory-mapped. A shard becomes part of
the store only when the manifest that lists it has been replaced atomically, so an interrupted
extraction loses at most the shard in progress and resumes with the next unprocessed image.
The store is a :class:`~insight_desktop.core.sae.data.TokenSource` for SAE training: batches are
whole images, shuffled by image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .fileio import atomic_output, atomic_write_json, read_json
from .images import ImageLoadError, find_images, load_image

FORMAT = "insight-token-store"
FORMAT_VERSION = 1
#: a store joined from the parts of several processes (core/distributed_build.py) lists shards in
#: sub-folders; older readers must refuse it rather than look for its shards in the root
JOINED_FORMAT_VERSION = 2
MANIFEST = "store.json"


class FeatureStoreError(RuntimeError):
    """A token store is missing, damaged, or does not match the requested extraction."""


@dataclass(frozen=True)
class ExtractionProgress:
    done: int
    total: int
    path: Path | None
    tokens: int
    failed: int
    elapsed_s: float


@dataclass(frozen=True)
class ExtractionSummary:
    store: Path
    images: int
    tokens: int
    failed: tuple[tuple[str, str], ...]
    skipped_existing: int
    stopped_early: bool


def _shard_names(i: int) -> tuple[str, str]:
    return f"shard-{i:05d}.tokens.npy", f"shard-{i:05d}.index.npy"


def shard_files(root: Path, shard: dict) -> tuple[Path, Path]:
    """The two files of a manifest's shard entry; a joined store's entries name their part folder."""
    folder = root / shard["part"] if "part" in shard else root
    tok_name, idx_name = _shard_names(int(shard.get("part_id", shard["id"])))
    return folder / tok_name, folder / idx_name


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_output(path) as fh:
        np.save(fh, arr, allow_pickle=False)


class TokenStore:
    """Read access to a token store; memory-maps its shards."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise FeatureStoreError(f"'{self.root}' is not a token store: {MANIFEST} is missing")
        try:
            self.manifest = read_json(manifest_path)
        except (OSError, ValueError) as exc:
            raise FeatureStoreError(f"cannot read '{manifest_path}': {exc}") from exc
        if self.manifest.get("format") != FORMAT:
            raise FeatureStoreError(f"'{manifest_path}' is not an Insight token store manifest")
        if int(self.manifest.get("format_version", 0)) > JOINED_FORMAT_VERSION:
            raise FeatureStoreError(
                f"'{self.root}' was written by a newer Insight Desktop (store format "
                f"{self.manifest['format_version']}, this version reads up to {JOINED_FORMAT_VERSION})")
        self.d = int(self.manifest["feature_dim"])
        self.images: list[dict] = self.manifest["images"]
        self._tokens: list[np.ndarray] = []
        self._index: list[np.ndarray] = []
        for shard in self.manifest["shards"]:
            tok_path, idx_path = shard_files(self.root, shard)
            try:
                tok = np.load(tok_path, mmap_mode="r", allow_pickle=False)
                idx = np.load(idx_path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise FeatureStoreError(f"token store '{self.root}': shard {shard['id']} is unreadable: {exc}") from exc
            if tok.shape != (shard["n_tokens"], self.d) or idx.shape != (shard["n_tokens"], 3):
                raise FeatureStoreError(
                    f"token store '{self.root}': shard {shard['id']} has shape {tok.shape}, "
                    f"expected ({shard['n_tokens']}, {self.d}) — the file is damaged")
            self._tokens.append(tok)
            self._index.append(idx)

    # -- facts -------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return sum(int(s["n_tokens"]) for s in self.manifest["shards"])

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def backbone_spec(self) -> dict:
        return self.manifest["backbone"]["spec"]

    def image_tokens(self, i: int) -> np.ndarray:
        """Tokens of image ``i`` ([grid_h·grid_w, d], row-major over the patch grid)."""
        rec = self.images[i]
        return self._tokens[rec["shard"]][rec["offset"]:rec["offset"] + rec["count"]]

    def image_path(self, i: int) -> Path:
        """Where image ``i`` was read from (paths are stored relative to the source folder)."""
        return Path(self.manifest["source"]) / self.images[i]["path"]

    def locate(self, token_ids: np.ndarray) -> np.ndarray:
        """Global token ids (store order) → [n, 3] int64 (image number, patch row, patch column)."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        counts = np.array([rec["count"] for rec in self.images], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        if token_ids.size and (token_ids.min() < 0 or token_ids.max() >= offsets[-1]):
            raise IndexError(f"token ids must lie in 0..{offsets[-1] - 1}")
        image = np.searchsorted(offsets, token_ids, side="right") - 1
        local = token_ids - offsets[image]
        widths = np.array([rec["grid"][1] for rec in self.images], dtype=np.int64)[image]
        return np.stack([image, local // widths, local % widths], axis=1)

    def image_index(self, i: int) -> np.ndarray:
        rec = self.images[i]
        rows = self._index[rec["shard"]][rec["offset"]:rec["offset"] + rec["count"]]
        base = int(self.manifest["shards"][rec["shard"]].get("image_base", 0))
        if base:  # a joined part numbers its images from 0; the store numbers them globally
            rows = rows + np.array([base, 0, 0], dtype=rows.dtype)
        return rows

    # -- TokenSource protocol ----------------------------------------------------------------
    def _epoch_batches(self, batch_tokens: int, epoch: int, seed: int) -> list[np.ndarray]:
        order = np.random.default_rng(seed + epoch).permutation(len(self.images))
        counts = np.array([self.images[i]["count"] for i in order])
        # Close a batch as soon as it holds at least batch_tokens tokens (whole images only).
        cuts, acc = [], 0
        for pos, c in enumerate(counts):
            acc += c
            if acc >= batch_tokens:
                cuts.append(pos + 1)
                acc = 0
        if acc:
            cuts.append(len(order))
        return np.split(order, cuts[:-1]) if cuts else []

    def num_batches(self, batch_tokens: int) -> int:
        return len(self._epoch_batches(batch_tokens, 0, 0))

    def iter_batches(self, batch_tokens: int, *, epoch: int = 0, seed: int = 0, skip: int = 0) -> Iterator[np.ndarray]:
        for group in self._epoch_batches(batch_tokens, epoch, seed)[skip:]:
            yield np.concatenate([self.image_tokens(int(i)) for i in group]).astype(np.float32, copy=False)

    def iter_batch_slices(self, batch_tokens: int, *, epoch: int = 0, seed: int = 0, skip: int = 0,
                          rank: int = 0, world_size: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """``(tokens in the global batch, rank ``rank``'s rows ⌊N·r/W⌋ … ⌊N·(r+1)/W⌋ of it)`` for each
        batch of :meth:`iter_batches`, reading only those rows from the memory-mapped shards, so
        ``world_size`` ranks read (and convert) each batch once between them instead of once each.
        The rows are those ``sae.distributed.shard_rows`` cuts (this layer cannot import it)."""
        for group in self._epoch_batches(batch_tokens, epoch, seed)[skip:]:
            counts = [int(self.images[int(i)]["count"]) for i in group]
            n = sum(counts)
            lo, hi = n * rank // world_size, n * (rank + 1) // world_size
            out = np.empty((hi - lo, self.d), dtype=np.float32)   # read and convert in one pass
            start = 0
            for i, c in zip(group, counts):
                a, b = max(lo - start, 0), min(hi - start, c)
                if a < b:
                    out[start + a - lo:start + b - lo] = self.image_tokens(int(i))[a:b]
                start += c
            yield n, out

    def summary(self) -> str:
        m = self.manifest
        size = sum(f.stat().st_size for shard in m["shards"] for f in shard_files(self.root, shard))
        return "\n".join([
            f"token store    {self.root}",
            f"backbone       {m['backbone']['id']}",
            f"features       d = {self.d}, {m['dtype']}, {m['mode']} {m['size']} px",
            f"images         {self.n_images} ({len(m.get('failed', []))} unreadable)",
            f"tokens         {self.n_tokens:,} in {len(m['shards'])} shard(s), {size / 2**20:.1f} MiB",
            f"source         {m.get('source', '?')}",
        ])


def store_view(rgb: np.ndarray, preprocessing, mode: str, size: int) -> np.ndarray:
    """An image as the store sees it (uint8 RGB): centre crop at ``size``, or in full mode the
    whole image with its long side at most ``size``. Patch (r, c) of the store covers pixels
    [r·p, (r+1)·p) × [c·p, (c+1)·p) of this view."""
    if mode == "crop":
        return preprocessing.resize_crop(rgb, size)
    if max(rgb.shape[:2]) > size:
        from PIL import Image

        h, w = rgb.shape[:2]
        s = size / max(h, w)
        new_size = (max(1, round(w * s)), max(1, round(h * s)))
        rgb = np.asarray(Image.fromarray(rgb).resize(new_size, Image.Resampling.BICUBIC))
    return rgb


def preprocess_for_store(backbone, rgb: np.ndarray, mode: str, size: int):
    """The normalised, padded tensor of :func:`store_view`."""
    return backbone.preprocessing.to_tensor(store_view(rgb, backbone.preprocessing, mode, size), mode="full")


def extract_features(
    source: str | Path | Sequence[str | Path],
    out: str | Path,
    backbone,
    *,
    mode: str = "crop",
    size: int | None = None,
    dtype: str = "float16",
    batch_size: int = 16,
    shard_tokens: int = 65536,
    on_progress: Callable[[ExtractionProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    root: str | Path | None = None,
) -> ExtractionSummary:
    """Extract dense features of every image under ``source`` (a folder, recursive, or a list of
    files) into the store ``out``. Re-running on the same store resumes where it stopped.
    ``root``: the folder image paths are stored relative to, for a list of files (default: their
    common folder) — one process's share of a folder keeps the folder's keys."""
    import torch

    if mode not in ("crop", "full"):
        raise ValueError(f"mode must be 'crop' or 'full', not {mode!r}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, not {dtype!r}")
    size = int(size or backbone.preprocessing.crop_size)
    out = Path(out)
    if isinstance(source, (str, Path)):
        root = Path(source)
        paths = find_images(root)
    else:
        paths = [Path(p) for p in source]
        root = Path(root) if root is not None else Path(_common_root(paths))
    keys = [_key(p, root) for p in paths]

    settings = {"backbone": {"id": backbone.id, "spec": backbone.spec.to_dict()},
                "feature_dim": int(backbone.feature_dim), "mode": mode, "size": size, "dtype": dtype}
    manifest = _open_or_create(out, settings, root)
    done = {rec["path"] for rec in manifest["images"]} | {f[0] for f in manifest["failed"]}
    todo = [(p, k) for p, k in zip(paths, keys) if k not in done]
    skipped_existing = len(paths) - len(todo)

    writer = _ShardWriter(out, manifest, shard_tokens, np.dtype(dtype))
    t0, processed, stopped = time.monotonic(), 0, False
    try:
        for start in range(0, len(todo), batch_size if mode == "crop" else 1):
            if should_stop is not None and should_stop():
                stopped = True
                break
            chunk = todo[start:start + (batch_size if mode == "crop" else 1)]
            tensors, ok = [], []
            for path, key in chunk:
                try:
                    tensors.append(preprocess_for_store(backbone, load_image(path), mode, size))
                    ok.append(key)
                except ImageLoadError as exc:
                    manifest["failed"].append([key, exc.reason])
            if tensors:
                with torch.inference_mode():
                    feats = backbone.dense_features(torch.stack(tensors).to(backbone.device))
                feats = feats.float().cpu().numpy()
                for key, f in zip(ok, feats):
                    writer.add(key, f)
            processed += len(chunk)
            if on_progress is not None:
                on_progress(ExtractionProgress(skipped_existing + processed, len(paths), chunk[-1][0],
                                               writer.total_tokens, len(manifest["failed"]), time.monotonic() - t0))
    finally:
        writer.flush()  # commit what is complete, also on Ctrl+C
    return ExtractionSummary(out, len(manifest["images"]), writer.total_tokens,
                             tuple(tuple(f) for f in manifest["failed"]), skipped_existing, stopped)


class _ShardWriter:
    """Buffers tokens of finished images; each flush writes one shard, then the manifest."""

    def __init__(self, root: Path, manifest: dict, shard_tokens: int, dtype: np.dtype):
        self.root, self.manifest, self.shard_tokens, self.dtype = root, manifest, shard_tokens, dtype
        self.tokens: list[np.ndarray] = []
        self.index: list[np.ndarray] = []
        self.records: list[dict] = []
        self.pending = 0

    @property
    def total_tokens(self) -> int:
        return sum(s["n_tokens"] for s in self.manifest["shards"]) + self.pending

    def add(self, key: str, feats: np.ndarray) -> None:
        d, h, w = feats.shape
        rows, cols = np.divmod(np.arange(h * w, dtype=np.int32), w)
        image_no = len(self.manifest["images"]) + len(self.records)
        self.tokens.append(feats.reshape(d, h * w).T.astype(self.dtype))
        self.index.append(np.stack([np.full(h * w, image_no, np.int32), rows, cols], axis=1))
        self.records.append({"path": key, "grid": [h, w], "offset": self.pending, "count": h * w})
        self.pending += h * w
        if self.pending >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self.records:
            return
        shard_id = len(self.manifest["shards"])
        tok_name, idx_name = _shard_names(shard_id)
        _save_npy(self.root / tok_name, np.concatenate(self.tokens))
        _save_npy(self.root / idx_name, np.concatenate(self.index))
        for rec in self.records:
            rec["shard"] = shard_id
        self.manifest["shards"].append({"id": shard_id, "n_tokens": self.pending, "n_images": len(self.records)})
        self.manifest["images"].extend(self.records)
        # The manifest is the commit point: the shard exists only once it is listed here.
        atomic_write_json(self.root / MANIFEST, self.manifest)
        self.tokens, self.index, self.records, self.pending = [], [], [], 0


def _open_or_create(out: Path, settings: dict, root: Path) -> dict:
    path = out / MANIFEST
    if path.exists():
        manifest = TokenStore(out).manifest
        for key in ("feature_dim", "mode", "size", "dtype"):
            if manifest[key] != settings[key]:
                raise FeatureStoreError(
                    f"'{out}' holds features with {key} = {manifest[key]!r}, not {settings[key]!r}: "
                    f"choose another --out folder or the same settings to resume")
        if manifest["backbone"]["id"] != settings["backbone"]["id"]:
            raise FeatureStoreError(
                f"'{out}' holds features of backbone {manifest['backbone']['id']!r}, not "
                f"{settings['backbone']['id']!r}: choose another --out folder")
        return manifest
    if out.exists() and any(out.iterdir()):
        raise FeatureStoreError(f"'{out}' exists, is not empty and is not a token store")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **settings, "source": str(root.resolve()),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "shards": [], "images": [], "failed": []}
    atomic_write_json(path, manifest)
    return manifest


def _key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _common_root(paths: Sequence[Path]) -> str:
    import os

    if not paths:
        return "."
    resolved = [str(p.resolve().parent) for p in paths]
    return os.path.commonpath(resolved)


def estimate_store_bytes(n_images: int, tokens_per_image: int, d: int, dtype: str = "float16") -> int:
    """Disk needed for a store (tokens + index), for a clear message before a long extraction."""
    per_token = d * np.dtype(dtype).itemsize + 3 * 4
    return int(math.ceil(n_images * tokens_per_image * per_token))
