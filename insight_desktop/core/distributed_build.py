"""``insight build-model`` on several processes (torchrun, Slurm): features, relations, the build.

One process is the ordinary build (:func:`~.build.build_model`); this module is what changes when
``torchrun`` starts N copies of the command (:mod:`.dist` says who each one is):

* **Features.** The sorted image list is cut into ``world_size`` contiguous ranges (whole
  extraction batches, so every image is encoded in the same batch as on one process). Rank r
  extracts its range into its own token store ``store/part-RRRRR-of-WWWWW/`` — an ordinary
  store, so it resumes by itself and a rank that dies loses only its unfinished shard. When all
  parts are complete, rank 0 writes ``store/store.json``, which lists the parts' shards in rank
  order: the joined store has the single-process store's images, in its order, with the same
  global token ids (:func:`join_parts`).
* **SAE.** Every rank trains on its slice of each global batch (:func:`~.sae.train_sae` with
  ``dist``); rank 0 writes the checkpoint and the result.
* **Relations.** The single-process pass cuts the store into batches of whole images; the
  batches are dealt out to ranks in contiguous runs of about equal token counts
  (:func:`relation_ranges`), so every token is encoded exactly as on one process. Each rank
  accumulates f, C, D and its top-30 lists over its run (with its own checkpoint) and saves them;
  rank 0 then adds the sparse matrices and merges the top lists by the pass's own order
  (value descending, then the smaller global token id): :func:`merge_relations`. f, C, the top
  tokens, their values and codes are identical to the single-process pass. D is a float64 sum of
  float32 codes taken in another order: identical too while those sums are exact (the ratio of the
  largest to the smallest code times the number of co-firing tokens below 2**29; measured: all
  1.46 M entries of D over 200 k tokens), else equal up to the last bit, as a single-process
  pass with another batch size is.
* **Naming, thumbnails, bundle:** rank 0 only; the other ranks end after the relations.

**Waiting** for each other between stages goes through marker files in the work folder, not
through a collective: after a rank died, the rerun's ranks may be hours apart (one resumes an
unfinished part, the others have nothing left to do), longer than a collective's timeout (NCCL's
default is 10 minutes). The work folder must therefore be on a file system all ranks share. The
markers of one run live under a run id that rank 0 chooses and broadcasts, so a marker left by an
earlier, interrupted run is never mistaken for this run's.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .dist import DistContext
from .fileio import atomic_write_bytes, atomic_write_json, read_json

#: seconds between two looks at the marker files while waiting for the other ranks
POLL_S = 0.5


def part_name(rank: int, world_size: int) -> str:
    """The folder (token store) or file stem of one rank's share of a stage."""
    return f"part-{rank:05d}-of-{world_size:05d}"


def shard_bounds(n: int, world_size: int, align: int = 1) -> list[int]:
    """``world_size + 1`` increasing cut points of ``range(n)``: rank r takes ``[b[r], b[r+1])``.

    Cuts fall on multiples of ``align`` (whole extraction batches), so a rank's batches are the
    single-process run's batches; ranks differ by at most one batch."""
    units = -(-n // max(1, align))
    return [min(n, (units * r // world_size) * align) for r in range(world_size + 1)]


# ------------------------------------------------------------------------------- waiting
class _Sync:
    """Marker-file barriers of one run: ``work/sync/RUN/STAGE/RANK`` holds the rank's status."""

    def __init__(self, work: Path, dist: DistContext, poll_s: float = POLL_S):
        self.dist, self.poll_s = dist, poll_s
        run = dist.broadcast_object(uuid.uuid4().hex if dist.is_main else None)
        self.root = work / "sync" / str(run)

    def arrive(self, stage: str, status: str = "done") -> None:
        atomic_write_bytes(self.root / stage / str(self.dist.rank), status.encode())

    def wait(self, stage: str, ranks: range | None = None) -> list[str]:
        """Block until every rank in ``ranks`` (default: all) arrived at ``stage``; their statuses."""
        folder = self.root / stage
        want = list(ranks if ranks is not None else range(self.dist.world_size))
        while True:
            statuses = [_read_marker(folder / str(r)) for r in want]
            if all(s is not None for s in statuses):
                return [str(s) for s in statuses]
            time.sleep(self.poll_s)

    def all(self, stage: str, status: str = "done") -> list[str]:
        self.arrive(stage, status)
        return self.wait(stage)


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------------ features
def extract_features_sharded(source: str | Path, out: str | Path, backbone, dist: DistContext, sync: _Sync, *,
                             mode: str = "crop", size: int | None = None, dtype: str = "float16",
                             batch_size: int = 16, shard_tokens: int = 65536, on_progress=None,
                             should_stop: Callable[[], bool] | None = None) -> bool:
    """This rank's share of the images under ``source`` into its part of the store ``out``; rank 0
    joins the parts once all are complete. Returns False when any rank was stopped (every rank
    then returns False; its part keeps what it committed)."""
    from .features import MANIFEST, FeatureStoreError, extract_features
    from .images import find_images

    root, out = Path(source), Path(out)
    manifest = out / MANIFEST
    if manifest.is_file() and "parts" not in read_json(manifest):
        raise FeatureStoreError(f"'{out}' was started on one process: finish it with one process (the same "
                                f"command without torchrun) or delete the work folder")
    paths = find_images(root)
    bounds = shard_bounds(len(paths), dist.world_size, batch_size if mode == "crop" else 1)
    mine = paths[bounds[dist.rank]:bounds[dist.rank + 1]]
    summary = extract_features(mine, out / part_name(dist.rank, dist.world_size), backbone, mode=mode, size=size,
                               dtype=dtype, batch_size=batch_size, shard_tokens=shard_tokens, root=root,
                               on_progress=on_progress, should_stop=should_stop)
    if "stopped" in sync.all("features", "stopped" if summary.stopped_early else "done"):
        return False
    if dist.is_main:
        join_parts(out, dist.world_size)
    sync.arrive("features-joined")
    sync.wait("features-joined", range(1))
    return True


def join_parts(out: str | Path, world_size: int) -> Path:
    """Write ``out/store.json`` listing the complete parts' shards, rank by rank (see module doc)."""
    from .features import JOINED_FORMAT_VERSION, MANIFEST, FeatureStoreError, TokenStore

    out = Path(out)
    names = [part_name(r, world_size) for r in range(world_size)]
    parts = [TokenStore(out / name).manifest for name in names]
    settings = ("backbone", "feature_dim", "mode", "size", "dtype", "source")
    for name, m in zip(names, parts):
        if any(m[k] != parts[0][k] for k in settings):
            raise FeatureStoreError(f"'{out / name}' was extracted with other settings than '{out / names[0]}'")
    shards: list[dict] = []
    images: list[dict] = []
    failed: list[list[str]] = []
    for name, m in zip(names, parts):
        base, ids = len(images), {}
        for shard in m["shards"]:
            ids[shard["id"]] = len(shards)
            shards.append({"id": len(shards), "n_tokens": shard["n_tokens"], "n_images": shard["n_images"],
                           "part": name, "part_id": shard["id"], "image_base": base})
        images += [{**rec, "shard": ids[rec["shard"]]} for rec in m["images"]]
        failed += m["failed"]
    joined = {"format": parts[0]["format"], "format_version": JOINED_FORMAT_VERSION,
              **{k: parts[0][k] for k in settings}, "created": parts[0]["created"],
              "shards": shards, "images": images, "failed": failed, "parts": names}
    atomic_write_json(out / MANIFEST, joined)
    return out / MANIFEST


# ----------------------------------------------------------------------------- relations
def relation_ranges(counts: np.ndarray, batch_tokens: int, world_size: int) -> list[int]:
    """Cut points (images) giving each rank a contiguous run of the single-process pass's batches,
    of about ``total / world_size`` tokens each."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n, total = len(counts), int(offsets[-1])
    starts, image = [], 0
    while image < n:  # the batches of compute_relations, exactly
        starts.append(image)
        end = min(int(np.searchsorted(offsets, offsets[image] + batch_tokens, side="left")), n)
        image = max(end, image + 1)
    owner = [min(world_size - 1, int(offsets[s]) * world_size // max(total, 1)) for s in starts]
    return [next((s for s, o in zip(starts, owner) if o >= r), n) for r in range(world_size)] + [n]


class _ImageRange:
    """Images ``lo … hi-1`` of a token store, read as :func:`~.concepts.compute.compute_relations`
    reads a store (token ids count from the range's first token)."""

    def __init__(self, store, lo: int, hi: int):
        self.store, self.lo = store, lo
        self.manifest = store.manifest
        self.images = store.images[lo:hi]

    def image_tokens(self, i: int) -> np.ndarray:
        return self.store.image_tokens(self.lo + i)


def compute_relations_sharded(store, sae, dist: DistContext, sync: _Sync, work: Path, *, batch_tokens: int = 8192,
                              device="cpu", tau: float = 0.75, on_progress=None,
                              should_stop: Callable[[], bool] | None = None):
    """This rank's share of the relation pass, saved to ``work/relations.parts/``; on rank 0 the
    merged :class:`~.concepts.relations.Relations` of the whole store, None on the others. Raises
    nothing on a stop: returns False on every rank (checkpoints kept)."""
    from .concepts.compute import _images_digest, _sae_fingerprint, compute_relations
    from .concepts.relations import Relations

    counts = np.array([int(rec["count"]) for rec in store.images], dtype=np.int64)
    bounds = relation_ranges(counts, batch_tokens, dist.world_size)
    lo, hi = bounds[dist.rank], bounds[dist.rank + 1]
    parts = work / "relations.parts"
    mine = parts / f"{part_name(dist.rank, dist.world_size)}.safetensors"
    status = "done"
    if not mine.exists():
        ckpt = work / "relations.ckpt" / part_name(dist.rank, dist.world_size)
        rel = compute_relations(_ImageRange(store, lo, hi), sae, batch_tokens=batch_tokens, device=device, tau=tau,
                                checkpoint_dir=ckpt, on_progress=on_progress, should_stop=should_stop)
        if rel is None:
            status = "stopped"
        else:
            tokens = rel.top_tokens.copy()
            tokens[tokens >= 0] += int(counts[:lo].sum())  # global token ids: the store's order
            dataclasses.replace(rel, top_tokens=tokens).save(mine)
    if "stopped" in sync.all("relations", status):
        return False
    if not dist.is_main:
        return None
    merged = Relations.load(parts / f"{part_name(0, dist.world_size)}.safetensors")
    for r in range(1, dist.world_size):
        merged = merge_relations(merged, Relations.load(parts / f"{part_name(r, dist.world_size)}.safetensors"))
    # the provenance of the single-process pass over the whole store
    provenance = {"images_digest": _images_digest(store, len(counts)),
                  "backbone": str(store.manifest["backbone"]["id"]), "sae": _sae_fingerprint(sae),
                  "images": len(counts)}
    return dataclasses.replace(merged, provenance=provenance)


def merge_relations(a, b):
    """The relations of two disjoint sets of tokens (global ids) as one pass over both would give:
    f, C, D and the token count add up; each concept's top list is the best ``top_n`` of both lists
    (value descending, then the smaller token id — the pass's own order), with their codes."""
    if (a.n_concepts, a.top_n, a.group_ends, a.eps) != (b.n_concepts, b.top_n, b.group_ends, b.eps):
        raise ValueError("relations of different SAEs or settings cannot be merged")
    m, n = a.n_concepts, a.top_n
    values = np.concatenate([a.top_values, b.top_values], axis=1)
    tokens = np.concatenate([a.top_tokens, b.top_tokens], axis=1)
    keep = np.lexsort((tokens, -values.astype(np.float64)), axis=1)[:, :n]  # padding (−inf) sorts last
    rows = np.arange(m)[:, None] * n
    source_row = np.where(keep < n, rows + keep, m * n + rows + keep - n).ravel()
    codes = sp.vstack([a.top_codes, b.top_codes], format="csr")[source_row]
    return dataclasses.replace(a, n_tokens=a.n_tokens + b.n_tokens, f=a.f + b.f, C=a.C + b.C, D=a.D + b.D,
                               top_tokens=np.take_along_axis(tokens, keep, axis=1),
                               top_values=np.take_along_axis(values, keep, axis=1), top_codes=codes)


# --------------------------------------------------------------------------------- build
def build_model_distributed(source, out, backbone, options, dist: DistContext, *, device: str = "auto",
                            command: str = "", keep_work: bool = False, on_progress=None, should_stop=None,
                            poll_s: float = POLL_S) -> Path:
    """:func:`~.build.build_model` on rank ``dist.rank`` of ``dist.world_size`` (see module doc).

    Every rank returns the bundle path; rank 0 writes it (the others end after the relations).
    On one process this is :func:`~.build.build_model`."""
    from . import build as b
    from .features import TokenStore

    if not dist.distributed:
        return b.build_model(source, out, backbone, options, device=device, command=command, keep_work=keep_work,
                             on_progress=on_progress, should_stop=should_stop)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"'{out}' exists already: choose another --out")
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    sync = _Sync(work, dist, poll_s)
    if dist.is_main:
        b._check_same_build(work, source, backbone, options)
    sync.all("start")
    report = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)

    report(b.StageProgress("features", 0, 1))
    done = extract_features_sharded(
        source, work / "store", backbone, dist, sync, mode=options.mode, size=options.size, dtype=options.dtype,
        batch_size=options.feature_batch, should_stop=stop,
        on_progress=lambda p: report(b.StageProgress("features", p.done, p.total, f"{p.tokens:,} tokens")))
    if not done:
        raise b._stopped("features")
    store = TokenStore(work / "store")
    if store.n_tokens == 0:
        raise ValueError(f"no readable images under '{source}'")

    sae = _sae(store, work, options, device, dist, sync, report, stop)

    path, relations = work / "relations.safetensors", None
    if not path.exists():
        from .devices import resolve_device

        report(b.StageProgress("relations", 0, 1))
        rel = compute_relations_sharded(
            store, sae, dist, sync, work, batch_tokens=options.relations_batch_tokens, device=resolve_device(device),
            tau=options.tau, should_stop=stop,
            on_progress=lambda p: report(b.StageProgress("relations", p.tokens_done, p.total_tokens)))
        if rel is False:
            raise b._stopped("relations")
        if dist.is_main:
            rel.save(path)
            relations = rel
    if not dist.is_main:
        return out  # naming, thumbnails and the bundle are rank 0's
    shutil.rmtree(work / "relations.parts", ignore_errors=True)
    shutil.rmtree(work / "relations.ckpt", ignore_errors=True)
    if relations is None:
        from .concepts.relations import Relations

        relations = Relations.load(path)
    return b._finish(source, out, work, backbone, options, store, sae, relations, command, keep_work, report, stop)


def _sae(store, work: Path, options, device, dist: DistContext, sync: _Sync, report, stop):
    """All ranks train together; rank 0 saves. Every rank then loads what rank 0 saved."""
    from . import build as b
    from .sae import SAEConfig, TrainConfig, group_sizes_from_fractions, load_sae, save_sae, train_sae
    from .sae.config import REFERENCE_GROUP_FRACTIONS

    path = work / "sae.safetensors"
    if not path.exists():
        report(b.StageProgress("sae", 0, 1))
        m = options.n_concepts or store.d * options.expansion
        fractions = options.level_fractions or REFERENCE_GROUP_FRACTIONS
        config = SAEConfig(d_in=store.d, n_concepts=m, k=options.k,
                           group_sizes=group_sizes_from_fractions(m, fractions))
        result = train_sae(store, config, TrainConfig(**options.train), device=device, checkpoint_dir=work / "sae.ckpt",
                           on_progress=lambda p: report(b.StageProgress("sae", p.step, p.total_steps,
                                                                        f"FVU {p.fvu:.3f}, L0 {p.l0:.1f}")),
                           should_stop=stop, dist=dist,
                           on_plan=lambda plan: report(b.StageProgress("sae", 0, plan.total_steps,
                                                                       plan.describe().replace("\n", "; "),
                                                                       note=plan.describe())))
        if result.stopped_early:  # train_sae stops all ranks together
            raise b._stopped("SAE training")
        if dist.is_main:
            save_sae(result.sae, path)
            shutil.rmtree(work / "sae.ckpt", ignore_errors=True)
    sync.all("sae")
    return load_sae(path)  # exactly what the bundle will hold, on every rank
