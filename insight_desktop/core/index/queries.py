"""Questions a folder index answers fast: where a concept fires, how often, and what tells groups apart.

Every query reads the ``stats`` rows of one or two concepts (clustered by concept, so a few
thousand rows at most), or the small ``folder_counts`` aggregate (the contrast); only the top
patches decode codes, and only of the images that can still hold one of the best patches.
"A concept fires in an image" means its largest activation there is above ``min_activation``
(default 0: any patch). Results are frozen dataclasses, safe to hand to another thread; a
:class:`FolderIndex` itself belongs to the thread that opened it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..tasks.codes import PatchCodes
from . import schema
from .store import connect, read_meta


@dataclass(frozen=True)
class ImageHit:
    """An image where a concept fires: its largest activation, mean over all patches, patches where it fires."""

    path: str          # relative to the indexed folder, POSIX
    folder: str        # its sub-folder ("" for the top)
    max: float
    mean: float
    patches: int
    n_patches: int


@dataclass(frozen=True)
class PatchHit:
    """One patch where a concept fires: grid cell, activation, and its box in the image's pixels."""

    path: str
    row: int
    col: int
    value: float
    grid: tuple[int, int]
    box: tuple[float, float, float, float]   # (top, left, bottom, right); may pass the image's edge


@dataclass(frozen=True)
class FolderShare:
    """``images`` of the ``total`` indexed images of ``folder`` (and below it, for a group)."""

    folder: str
    images: int
    total: int

    @property
    def share(self) -> float:
        return self.images / self.total if self.total else 0.0


@dataclass(frozen=True)
class Frequency:
    """A concept's frequency: the share of images where it fires, over the folder and per sub-folder."""

    concept: int
    images: int
    total: int
    per_folder: tuple[FolderShare, ...]   # every sub-folder with indexed images, sorted by name

    @property
    def share(self) -> float:
        return self.images / self.total if self.total else 0.0


@dataclass(frozen=True)
class ConceptContrast:
    """How a concept's frequency differs between groups A and B.

    ``log_odds``: the log odds ratio of firing in A vs B with ½ added to each of the four counts
    (Haldane–Anscombe, so a concept absent from one group stays finite); ``z``: that divided by
    its standard error √(1/(a+½) + 1/(n_A−a+½) + 1/(b+½) + 1/(n_B−b+½)) — a Wald z-score, so a
    difference seen in few images ranks below the same difference seen in many."""

    concept: int
    images_a: int
    images_b: int
    share_a: float
    share_b: float
    log_odds: float
    z: float


@dataclass(frozen=True)
class Contrast:
    """Concepts ranked by how much they distinguish group A from group B (by ``z``, ties by id)."""

    group_a: tuple[str, ...]
    group_b: tuple[str, ...]
    n_a: int
    n_b: int
    toward_a: tuple[ConceptContrast, ...]   # more frequent in A, largest z first
    toward_b: tuple[ConceptContrast, ...]   # more frequent in B, most negative z first


@dataclass(frozen=True)
class IndexInfo:
    path: Path
    folder: str                 # the indexed folder's absolute path when it was built
    model_identity: str
    n_concepts: int
    images: int                 # indexed
    errors: int                 # could not be indexed
    folders: tuple[FolderShare, ...]   # images per sub-folder (``images`` = ``total``)


class FolderIndex:
    """Read-only queries on one index file (:mod:`.schema`). Open one per thread; ``close()`` when done."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.con = connect(self.path, readonly=True)
        try:
            self.meta = read_meta(self.con, self.path)
        except BaseException:
            self.con.close()
            raise
        self.n_concepts = int(self.meta["n_concepts"])
        self._ids, self._codec = self.meta["concept_dtype"], self.meta["codec"]

    def close(self) -> None:
        self.con.close()

    @property
    def root(self) -> Path:
        """The indexed folder (absolute, as it was when built): a hit's file is ``root / hit.path``."""
        return Path(self.meta.get("folder", ""))

    def __enter__(self) -> "FolderIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the folder
    def info(self) -> IndexInfo:
        errors = self.con.execute("SELECT count(*) FROM images WHERE status = 'error'").fetchone()[0]
        folders = self._folder_totals()
        return IndexInfo(self.path, self.meta.get("folder", ""), self.meta["model_identity"], self.n_concepts,
                         sum(folders.values()), int(errors),
                         tuple(FolderShare(f, n, n) for f, n in sorted(folders.items())))

    def errors(self) -> tuple[tuple[str, str], ...]:
        """(path, why) of every image that could not be indexed."""
        rows = self.con.execute("SELECT path, error FROM images WHERE status = 'error' ORDER BY path")
        return tuple((p, e or "") for p, e in rows)

    def image_codes(self, path: str) -> PatchCodes:
        """The stored (float16-rounded) codes of one image; KeyError when it is not indexed."""
        row = self.con.execute("SELECT c.indptr, c.concepts, c.activations, i.grid_h, i.grid_w FROM images i "
                               "JOIN codes c ON c.image_id = i.id WHERE i.path = ?", (path,)).fetchone()
        if row is None:
            raise KeyError(f"'{path}' is not in the index")
        indptr, ids, values = self._decode(row[:3])
        return PatchCodes((row[3], row[4]), self.n_concepts, indptr.astype(np.int64), ids.astype(np.int32),
                          values.astype(np.float32))

    # ------------------------------------------------------------------ where a concept fires
    def top_images(self, concept: int, n: int | None = 20, *, min_activation: float = 0.0) -> tuple[ImageHit, ...]:
        """Images where ``concept`` fires, by largest activation (ties: index order); ``n=None``: all."""
        self._check(concept)
        # sorted and cut first, joined after: the join then looks up n images, not every one it fires in
        rows = self.con.execute(
            "SELECT i.path, i.folder, s.max, s.mean, s.patches, i.n_patches FROM (SELECT image_id, max, mean, patches "
            "FROM stats WHERE concept = ? AND max > ? ORDER BY max DESC, image_id LIMIT ?) s "
            "JOIN images i ON i.id = s.image_id ORDER BY s.max DESC, s.image_id",
            (int(concept), float(min_activation), -1 if n is None else int(n)))
        return tuple(ImageHit(*r) for r in rows)

    def image_activations(self, concept: int) -> dict[str, float]:
        """Every indexed image's largest activation of ``concept`` (0.0 where it does not fire), e.g.
        to sort or filter a filmstrip."""
        self._check(concept)
        return dict(self.con.execute(
            "SELECT i.path, coalesce(s.max, 0.0) FROM images i LEFT JOIN stats s ON s.concept = ? AND "
            "s.image_id = i.id WHERE i.status = 'ok'", (int(concept),)))

    def top_patches(self, concept: int, n: int = 20, *, per_image: int | None = 1) -> tuple[PatchHit, ...]:
        """The ``n`` patches where ``concept`` fires most, at most ``per_image`` from one image
        (None: no limit). Exact: images are decoded best first and only while their max can
        still beat the ``n``-th best patch found."""
        self._check(concept)
        if n <= 0 or per_image is not None and per_image <= 0:
            return ()
        # ids first (a sort of small rows), then the blobs of one image at a time: sorting rows
        # that carry the blobs would read every image's codes
        ranked = self.con.execute("SELECT image_id, max FROM stats WHERE concept = ? ORDER BY max DESC, image_id",
                                  (int(concept),))  # read lazily: usually only the first few rows are needed
        take = n if per_image is None else min(per_image, n)
        best: list[tuple[float, int, int]] = []   # (-value, image rank, patch), the n best so far, sorted
        images: list[tuple] = []                  # (path, grid, geometry) by rank
        for rank, (image_id, top) in enumerate(ranked):
            if len(best) >= n and top < -best[n - 1][0]:
                break
            path, gh, gw, ih, iw, ah, aw, p, *blobs = self.con.execute(
                "SELECT i.path, i.grid_h, i.grid_w, i.image_h, i.image_w, i.analysis_h, i.analysis_w, i.patch_size, "
                "c.indptr, c.concepts, c.activations FROM images i JOIN codes c ON c.image_id = i.id WHERE i.id = ?",
                (image_id,)).fetchone()
            images.append((path, gh, gw, ih, iw, ah, aw, p))
            indptr, ids, values = self._decode(blobs)
            at = np.flatnonzero(ids == concept)
            patch = np.searchsorted(indptr, at, side="right") - 1
            v = values[at].astype(np.float64)
            order = np.lexsort((patch, -v))[:take]
            best = sorted(best + [(-float(v[j]), rank, int(patch[j])) for j in order])[:n]
        hits = []
        for neg, rank, q in best:
            path, gh, gw, ih, iw, ah, aw, p = images[rank]
            r, c = divmod(q, gw)
            box = (r * ih * p / ah, c * iw * p / aw, (r + 1) * ih * p / ah, (c + 1) * iw * p / aw)
            hits.append(PatchHit(path, r, c, -neg, (gh, gw), box))
        return tuple(hits)

    def a_not_b(self, a: int, b: int, n: int | None = 50, *, min_activation: float = 0.0) -> tuple[ImageHit, ...]:
        """Images where concept ``a`` fires and ``b`` does not, by ``a``'s largest activation."""
        self._check(a)
        self._check(b)
        rows = self.con.execute(
            "SELECT i.path, i.folder, s.max, s.mean, s.patches, i.n_patches FROM (SELECT image_id, max, mean, patches "
            "FROM stats s WHERE concept = ? AND max > ? AND NOT EXISTS (SELECT 1 FROM stats t WHERE t.concept = ? "
            "AND t.image_id = s.image_id AND t.max > ?) ORDER BY max DESC, image_id LIMIT ?) s "
            "JOIN images i ON i.id = s.image_id ORDER BY s.max DESC, s.image_id",
            (int(a), float(min_activation), int(b), float(min_activation), -1 if n is None else int(n)))
        return tuple(ImageHit(*r) for r in rows)

    # ------------------------------------------------------------------ how often, and where
    def frequency(self, concept: int, *, min_activation: float = 0.0) -> Frequency:
        """The share of indexed images where ``concept`` fires, over the folder and per sub-folder."""
        self._check(concept)
        totals = self._folder_totals()
        if min_activation <= 0:  # "fires anywhere": the per-folder counts kept at every write
            marks = ",".join("?" * len(totals))  # primary-key lookups, one per sub-folder
            hits = dict(self.con.execute(f"SELECT folder, images FROM folder_counts WHERE concept = ? AND folder IN "
                                         f"({marks})", (int(concept), *totals)))
        else:
            hits = dict(self.con.execute(
                "SELECT i.folder, count(*) FROM stats s JOIN images i ON i.id = s.image_id WHERE s.concept = ? "
                "AND s.max > ? GROUP BY i.folder", (int(concept), float(min_activation))))
        per = tuple(FolderShare(f, int(hits.get(f, 0)), t) for f, t in sorted(totals.items()))
        return Frequency(int(concept), sum(s.images for s in per), sum(totals.values()), per)

    def contrast(self, group_a: str | Sequence[str], group_b: str | Sequence[str], n: int = 20, *,
                 min_images: int = 1) -> Contrast:
        """Concepts ranked by how much they tell sub-folder group A from group B (a group: one or
        more sub-folders, each with everything below it); statistic: :class:`ConceptContrast`.
        Concepts firing in fewer than ``min_images`` images of both groups together are left out."""
        ga, gb = _group(group_a), _group(group_b)
        totals = self._folder_totals()
        fa, fb = self._members(ga, totals), self._members(gb, totals)
        if set(fa) & set(fb):
            raise ValueError(f"the groups share sub-folders: {', '.join(sorted(set(fa) & set(fb))) or '(top)'}")
        n_a, n_b = sum(totals[f] for f in fa), sum(totals[f] for f in fb)
        a, b = self._counts(fa), self._counts(fb)
        seen = np.flatnonzero(a + b >= max(min_images, 1))
        ca, cb = a[seen].astype(np.float64), b[seen].astype(np.float64)
        log_odds = (np.log(ca + 0.5) - np.log(n_a - ca + 0.5)) - (np.log(cb + 0.5) - np.log(n_b - cb + 0.5))
        se = np.sqrt(1 / (ca + 0.5) + 1 / (n_a - ca + 0.5) + 1 / (cb + 0.5) + 1 / (n_b - cb + 0.5))
        z = log_odds / se

        def ranked(order: np.ndarray) -> tuple[ConceptContrast, ...]:  # records only for the n shown
            return tuple(ConceptContrast(int(seen[i]), int(ca[i]), int(cb[i]), float(ca[i] / n_a), float(cb[i] / n_b),
                                         float(log_odds[i]), float(z[i])) for i in order[:n])

        up, down = np.flatnonzero(z > 0), np.flatnonzero(z < 0)
        up = up[np.lexsort((seen[up], -z[up]))]
        down = down[np.lexsort((seen[down], z[down]))]
        return Contrast(ga, gb, n_a, n_b, ranked(up), ranked(down))

    # ------------------------------------------------------------------ helpers
    def _check(self, concept: int) -> None:
        if not 0 <= int(concept) < self.n_concepts:
            raise ValueError(f"concept {concept} does not exist: this model has concepts 0..{self.n_concepts - 1}")

    def _decode(self, blobs: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indptr, ids, values = blobs
        return (schema.decode(indptr, schema.INDPTR_DTYPE, self._codec), schema.decode(ids, self._ids, self._codec),
                schema.decode(values, schema.VALUE_DTYPE, self._codec))

    def _folder_totals(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT folder, count(*) FROM images WHERE status = 'ok' GROUP BY folder"))

    def _members(self, group: tuple[str, ...], totals: dict[str, int]) -> list[str]:
        found = [f for f in totals if any(g == "" or f == g or f.startswith(g + "/") for g in group)]
        if not found:
            known = ", ".join(sorted(repr(f) for f in totals)) or "none"
            raise ValueError(f"no indexed images in sub-folder {' or '.join(map(repr, group))} (sub-folders: {known})")
        return sorted(found)

    def _counts(self, folders: Sequence[str]) -> np.ndarray:
        """Images of these sub-folders each concept fires in, int64 [m] (from ``folder_counts``)."""
        out = np.zeros(self.n_concepts, np.int64)
        marks = ",".join("?" * len(folders))
        # up to m rows per sub-folder: two comma-joined strings cross into Python ~10× faster than
        # row tuples (both aggregates walk the same rows in the same order)
        concepts, counts = self.con.execute(f"SELECT group_concat(concept), group_concat(images) FROM folder_counts "
                                            f"WHERE folder IN ({marks})", tuple(folders)).fetchone()
        if concepts:
            np.add.at(out, np.array(concepts.split(","), np.int64), np.array(counts.split(","), np.int64))
        return out


def _group(group: str | Sequence[str]) -> tuple[str, ...]:
    """A group's sub-folders as relative POSIX paths without trailing slashes ("" or "." is the whole folder)."""
    items = (group,) if isinstance(group, str) else tuple(group)
    out = tuple("" if g.strip() in ("", ".") else g.replace(os.sep, "/").strip().strip("/") for g in items)
    if not out:
        raise ValueError("a group needs at least one sub-folder")
    return out
