"""Helpers of ``benchmarks/naming_quality.py``: photos and masks, the name judge, one model's run.

Kept apart from the command line so the pure parts (masks, IoU, the judge, duplicate rate) are
tested on planted values (``tests/core/test_naming_eval.py``) without a model.

**Photos.** A held-out photo of ``resources/demo-photos/photos.csv`` is an RGB photo or a
cut-out with transparency (Tux Paint stamps). Cut-outs are laid on a *backdrop* for every
metric: mid-grey (128, 128, 128) by default, or a centre crop of another photo. Their alpha
channel, thresholded at 128, is the ground-truth foreground mask for segmentation mIoU; a
cut-out whose mask covers less than :data:`MIN_FOREGROUND` of the picture (or more than
1 − that) has no usable mask (the mostly transparent "glass") and is left out of mIoU only.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from insight_desktop.core.fileio import atomic_output
from insight_desktop.core.tasks.datasets import confusion, mean_iou
from insight_desktop.core.tasks.segmentation import BACKGROUND_NAME

TOP = 10
GREY = (128, 128, 128)
ALPHA_THRESHOLD = 128
MIN_FOREGROUND = 0.05
#: bump when evaluate() or the analysis it relies on changes what it computes (stale cached runs)
RUN_VERSION = 1
#: the bundle members an analysis reads (names and thumbnails do not change a run)
ANALYSIS_MEMBERS = ("sae.safetensors", "relations.safetensors")
_SUFFIX = re.compile(r" \(\d+\)$")
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")
STOP = frozenset("a an the of on in with and at to its by from for into over under".split())


# --------------------------------------------------------------------------- photos and masks
def load_rgba(path: Path) -> np.ndarray:
    """The photo as RGBA uint8 [H, W, 4] (opaque where the file has no alpha)."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGBA")).copy()


def alpha_mask(rgba: np.ndarray) -> np.ndarray | None:
    """Foreground mask (alpha ≥ 128) of a cut-out, or None when the picture is opaque everywhere."""
    alpha = rgba[..., 3]
    if alpha.min() >= 255:
        return None
    return alpha >= ALPHA_THRESHOLD


def backdrop(size: tuple[int, int], source: Path | None = None) -> np.ndarray:
    """A deterministic RGB background of ``size`` (H, W): mid-grey, or the centre crop of
    ``source`` scaled to cover ``size`` (PIL's ``ImageOps.fit``)."""
    h, w = size
    if source is None:
        return np.broadcast_to(np.array(GREY, dtype=np.uint8), (h, w, 3)).copy()
    with Image.open(source) as im:
        return np.asarray(ImageOps.fit(im.convert("RGB"), (w, h), Image.Resampling.BICUBIC)).copy()


def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``rgba`` laid over ``background`` (alpha blending, as PIL's ``alpha_composite``), RGB uint8."""
    bg = Image.fromarray(np.dstack([background, np.full(background.shape[:2], 255, np.uint8)]), "RGBA")
    bg.alpha_composite(Image.fromarray(rgba, "RGBA"))
    return np.asarray(bg.convert("RGB")).copy()


def usable_mask(mask: np.ndarray | None, min_foreground: float = MIN_FOREGROUND) -> bool:
    if mask is None:
        return False
    share = float(mask.mean())
    return min_foreground <= share <= 1.0 - min_foreground


def binary_miou(labels: np.ndarray, mask: np.ndarray, foreground: int = 0) -> float:
    """Mean IoU over {foreground, background} of predicted ``labels`` [H, W] (``foreground`` is
    the photo's class; any other label counts as background) against ``mask`` [H, W] (True =
    foreground), with the core's confusion/mIoU (classes absent from both are skipped)."""
    if labels.shape != mask.shape:
        raise ValueError(f"labels {labels.shape} and mask {mask.shape} differ in size")
    pred = np.where(labels == foreground, 0, 1)
    target = np.where(mask, 0, 1)
    return mean_iou(confusion(pred, target, 2))


# --------------------------------------------------------------------------- names
def base(name: str) -> str:
    """A display name without its duplicate number: "cat (2)" → "cat"."""
    return _SUFFIX.sub("", name).strip().lower()


def duplicate_rate(names: Sequence[str]) -> float:
    """Share of names that another name equals (ignoring case); "cat (2)" differs from "cat"."""
    keys = [n.casefold() for n in names]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return sum(1 for k in keys if counts[k] > 1) / max(len(keys), 1)


class Judge:
    """Decides whether a concept name fits a photo (label + description) and whether it is concrete.

    A name fits when it (or its WordNet lemma) is a word of the description, or when a WordNet
    relation links it to the label: same synset, hypernym/hyponym at any depth, or siblings
    under a common parent one step up — but a name near the top of the hierarchy (depth < 5:
    "object", "whole", "organism") relates to everything and never fits.
    """

    def __init__(self, wn: Any, concrete: set[str]):
        self.wn, self.concrete = wn, concrete
        self._memo: dict[tuple[str, str], bool] = {}

    def words(self, text: str) -> set[str]:
        toks = {t for t in _WORD.findall(text.lower()) if t not in STOP}
        return toks | {lem for t in toks if (lem := self.wn.lemma(t))}

    def fits(self, name: str, label: str, desc_words: set[str]) -> bool:
        n = base(name)
        lem = self.wn.lemma(n) or n
        if n in desc_words or lem in desc_words or n == label:
            return True
        key = (lem, label)
        if key not in self._memo:
            self._memo[key] = self.wn.related(lem, label, max_up=1) and self._specific(lem)
        return self._memo[key]

    def precision(self, names: Sequence[str], label: str, description: str, ids: Sequence[int]) -> float:
        """Share of the concepts ``ids`` whose names fit the photo."""
        words = self.words(description + " " + label)
        return sum(self.fits(names[j], label, words) for j in ids) / max(len(ids), 1)

    def _specific(self, lemma: str) -> bool:
        senses = self.wn.senses(lemma)
        return bool(senses) and depth(self.wn, senses[0].offset) >= 5

    def is_concrete(self, name: str) -> bool:
        n = base(name)
        return n in self.concrete or (self.wn.lemma(n) or "") in self.concrete


def depth(wn: Any, offset: str) -> int:
    """Steps from a synset up to the first root met (shortest hypernym path)."""
    frontier, d, seen = {offset}, 0, {offset}
    while frontier and all(wn.synsets[o].hypernyms for o in frontier):
        frontier = {h for o in frontier for h in wn.synsets[o].hypernyms} - seen
        seen |= frontier
        d += 1
    return d


# --------------------------------------------------------------------------- one model's run
@dataclass(frozen=True)
class Photo:
    id: str
    label: str
    description: str
    path: Path


@dataclass(frozen=True)
class ModelRun:
    """What one model did on the held-out photos (everything but the names)."""

    top: tuple[tuple[int, ...], ...]  # its TOP strongest concepts per photo (pooled max)
    fvu: np.ndarray                   # [photos]
    rank: np.ndarray                  # [photos] rank of the true class, concept path (0 = top-1)
    rank_opaque: np.ndarray           # [photos] the same, opaque path
    miou: np.ndarray                  # [cut-outs with a usable mask] concept path
    miou_opaque: np.ndarray           # the same, opaque path
    seconds: float

    def accuracy(self, k: int = 1, opaque: bool = False) -> float:
        return float(np.mean((self.rank_opaque if opaque else self.rank) < k))


def true_rank(logits: np.ndarray, truth: int) -> int:
    """How many classes score strictly higher than the true one (0: it is the top-1)."""
    return int(np.sum(np.asarray(logits) > logits[truth]))


def evaluate(analyzer: Any, photos: Sequence[Photo], classes: Sequence[str], *, backdrop_source: Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> ModelRun:
    """Analyse every photo twice at most: with all ``classes`` (top concepts, FVU, zero-shot on
    the analysed grid, concept and opaque paths, docs/method.md §6.2) and, for a cut-out with a
    usable mask, with [its label, "background"] (segmentation, both paths, §6.1)."""
    t0 = time.monotonic()
    index = {c: i for i, c in enumerate(classes)}
    top, fvu, rank, rank_op, miou, miou_op = [], [], [], [], [], []
    for i, p in enumerate(photos):
        rgba = load_rgba(p.path)
        mask = alpha_mask(rgba)
        rgb = composite(rgba, backdrop(rgba.shape[:2], backdrop_source))
        a = analyzer.analyze(rgb, classes=classes)
        top.append(tuple(c.concept for c in a.concepts[:TOP]))
        fvu.append(a.faithfulness.fvu)
        rank.append(true_rank(a.classification.logits, index[p.label]))
        rank_op.append(true_rank(a.classification.opaque_logits, index[p.label]))
        if usable_mask(mask):
            seg = analyzer.analyze(rgb, classes=[p.label, BACKGROUND_NAME], classify=False).segmentation
            miou.append(binary_miou(seg.labels, mask))
            miou_op.append(binary_miou(seg.opaque_labels, mask))
        if progress is not None:
            progress(i + 1, len(photos))
    return ModelRun(tuple(top), np.array(fvu), np.array(rank), np.array(rank_op), np.array(miou),
                    np.array(miou_op), time.monotonic() - t0)


_ARRAYS = ("fvu", "rank", "rank_opaque", "miou", "miou_opaque")


def save_run(path: Path, run: ModelRun) -> None:
    """``run`` as an .npz, written atomically (top concepts padded with −1)."""
    top = np.full((len(run.top), TOP), -1, np.int64)
    for i, ids in enumerate(run.top):
        top[i, :len(ids)] = ids
    with atomic_output(path) as fh:
        np.savez(fh, top=top, seconds=np.float64(run.seconds), **{k: getattr(run, k) for k in _ARRAYS})


def load_run(path: Path) -> ModelRun | None:
    """A run saved by :func:`save_run`, or None when there is none (or it cannot be read)."""
    try:
        with np.load(path) as z:
            top = tuple(tuple(int(j) for j in row if j >= 0) for row in z["top"])
            return ModelRun(top, *(z[k] for k in _ARRAYS), seconds=float(z["seconds"]))
    except (OSError, KeyError, ValueError):
        return None


def run_key(bundle: Path, backbone_id: str, photos: Sequence[Photo], classes: Sequence[str],
            backdrop_source: Path | None) -> str:
    """What a model's run depends on: the bundle's SAE and relations (not its names or thumbnails:
    a renamed model reuses the run), every photo's bytes, the backbone (its id names its
    weights), the labels and classes, the backdrop and :data:`RUN_VERSION`."""
    h = hashlib.sha256(f"v{RUN_VERSION}\0{backbone_id}\0{chr(0).join(classes)}\0".encode())
    with zipfile.ZipFile(bundle) as z:
        for member in ANALYSIS_MEMBERS:
            with z.open(member) as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
    for path in (*(p.path for p in photos), *((backdrop_source,) if backdrop_source else ())):
        with open(path, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    h.update("\0".join(f"{p.id}={p.label}" for p in photos).encode())
    return h.hexdigest()[:32]


def constant_miou(photos: Sequence[Photo]) -> float:
    """mIoU of the better constant prediction (all foreground or all background) per usable mask,
    averaged: the floor a segmentation has to beat."""
    shares = [float(m.mean()) for p in photos if usable_mask(m := alpha_mask(load_rgba(p.path)))]
    return float(np.mean([max(s, 1.0 - s) / 2 for s in shares])) if shares else float("nan")


def print_progress(what: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        print(f"\r{what}: {done}/{total} photos", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return report
