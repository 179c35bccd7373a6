"""One-command model building: images → features → SAE → relations → names → thumbnails → bundle.

Every stage writes its result into a work folder next to the bundle (``BUNDLE.work/``) and is
skipped when its result is already there; the long stages (features, SAE, relations) also resume
from inside. So an interrupted build, run again with the same arguments, continues where it
stopped and gives the same result. The bundle itself is written atomically at the end; the work
folder is then removed unless asked to keep it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import StoppedByUser
from .fileio import atomic_write_bytes, read_json

STAGES = ("features", "sae", "relations", "names", "thumbnails", "bundle")


@dataclass(frozen=True)
class BuildOptions:
    """Everything that decides the result of a build (the work folder remembers it)."""

    mode: str = "crop"
    size: int | None = None
    dtype: str = "float16"
    feature_batch: int = 16
    n_concepts: int | None = None      # default: expansion · d
    expansion: int = 16
    k: int = 12
    level_fractions: tuple[float, ...] | None = None
    train: dict[str, Any] = field(default_factory=dict)   # TrainConfig overrides
    tau: float = 0.75
    relations_batch_tokens: int = 8192
    vocabularies: tuple[str, ...] = ()  # user vocabulary files
    default_vocabularies: bool = True
    naming: str = "hierarchy"           # or "vanilla"
    thumbnails_per_concept: int = 8
    thumbnail_px: int = 64

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["level_fractions"] = list(self.level_fractions) if self.level_fractions else None
        d["vocabularies"] = [str(Path(v).resolve()) for v in self.vocabularies]
        return d


class BuildStopped(StoppedByUser):
    """The user stopped the build; running it again resumes."""


@dataclass(frozen=True)
class StageProgress:
    stage: str
    done: float
    total: float
    detail: str = ""
    #: a message to keep, reported once (e.g. the training values chosen for this run); a
    #: terminal prints it on its own line rather than in the progress bar
    note: str = ""


def build_model(source: str | Path, out: str | Path, backbone, options: BuildOptions = BuildOptions(), *,
                device: str = "auto", command: str = "", keep_work: bool = False,
                on_progress: Callable[[StageProgress], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> Path:
    """Build a concept-model bundle from the images under ``source``; returns the bundle path.
    (On several processes: :func:`~.distributed_build.build_model_distributed`.)"""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"'{out}' exists already: choose another --out")
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    _check_same_build(work, source, backbone, options)
    report = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)

    store = _features(source, work, backbone, options, report, stop)
    sae = _sae(store, work, options, device, report, stop)
    relations = _relations(store, sae, work, options, device, report, stop)
    return _finish(source, out, work, backbone, options, store, sae, relations, command, keep_work, report, stop)


def _finish(source, out: Path, work: Path, backbone, options: BuildOptions, store, sae, relations, command: str,
            keep_work: bool, report, stop) -> Path:
    """Names, thumbnails and the bundle (one process: the distributed build's rank 0)."""
    names = _names(sae, relations, work, backbone, options, report, stop)
    thumbs = _thumbnails(store, backbone, relations, work, options, report, stop)

    from .concepts.bundle import write_bundle
    from .concepts.thumbnails import read_thumbnails

    report(StageProgress("bundle", 0, 1))
    provenance = {"source": str(Path(source).resolve()), "images": store.n_images, "tokens": store.n_tokens,
                  "unreadable_images": len(store.manifest.get("failed", [])), "command": command,
                  "options": options.to_dict(), "missing_thumbnail_images": len(thumbs.missing_images)}
    backbone_info = {"id": backbone.id, "spec": backbone.spec.to_dict(), "feature_dim": int(backbone.feature_dim)}
    write_bundle(out, backbone=backbone_info, sae=sae, relations=relations, names=names, provenance=provenance,
                 thumbnails=read_thumbnails(work / "thumbnails"),
                 thumbnail_info={"per_concept": options.thumbnails_per_concept, "crop_px": options.thumbnail_px})
    report(StageProgress("bundle", 1, 1))
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _check_same_build(work: Path, source, backbone, options: BuildOptions) -> None:
    """Refuse to resume a work folder made with other inputs (its partial results would mix)."""
    import json

    key = {"source": str(Path(source).resolve()), "backbone": backbone.id, "options": options.to_dict()}
    path = work / "build.json"
    if path.exists():
        previous = read_json(path)
        if previous != json.loads(json.dumps(key)):
            raise ValueError(f"'{work}' holds an unfinished build with other settings or inputs; "
                             f"delete it or use the same arguments to resume")
    else:
        atomic_write_bytes(path, json.dumps(key, indent=2, sort_keys=True).encode())


def _stopped(stage: str):
    return BuildStopped(f"stopped during {stage}: run the same command again to resume")


def _features(source, work, backbone, options, report, stop):
    from .features import TokenStore, extract_features

    report(StageProgress("features", 0, 1))  # the display names the stage at once
    summary = extract_features(source, work / "store", backbone, mode=options.mode, size=options.size,
                               dtype=options.dtype, batch_size=options.feature_batch, should_stop=stop,
                               on_progress=lambda p: report(StageProgress("features", p.done, p.total,
                                                                          f"{p.tokens:,} tokens")))
    if summary.stopped_early:
        raise _stopped("features")
    store = TokenStore(work / "store")
    if store.n_tokens == 0:
        raise ValueError(f"no readable images under '{source}'")
    return store


def _sae(store, work, options, device, report, stop):
    from .sae import SAEConfig, TrainConfig, group_sizes_from_fractions, load_sae, save_sae, train_sae
    from .sae.config import REFERENCE_GROUP_FRACTIONS

    path = work / "sae.safetensors"
    if path.exists():
        return load_sae(path)
    report(StageProgress("sae", 0, 1))  # the display names the stage at once
    m = options.n_concepts or store.d * options.expansion
    config = SAEConfig(d_in=store.d, n_concepts=m, k=options.k,
                       group_sizes=group_sizes_from_fractions(m, options.level_fractions or REFERENCE_GROUP_FRACTIONS))
    result = train_sae(store, config, TrainConfig(**options.train), device=device, checkpoint_dir=work / "sae.ckpt",
                       on_progress=lambda p: report(StageProgress("sae", p.step, p.total_steps,
                                                                  f"FVU {p.fvu:.3f}, L0 {p.l0:.1f}")),
                       should_stop=stop,
                       on_plan=lambda plan: report(StageProgress("sae", 0, plan.total_steps,
                                                                 plan.describe().replace("\n", "; "),
                                                                 note=plan.describe())))
    if result.stopped_early:
        raise _stopped("SAE training")
    save_sae(result.sae, path)
    shutil.rmtree(work / "sae.ckpt", ignore_errors=True)
    return load_sae(path)  # exactly what the bundle will hold


def _relations(store, sae, work, options, device, report, stop):
    from .concepts.compute import compute_relations
    from .concepts.relations import Relations

    path = work / "relations.safetensors"
    if path.exists():
        return Relations.load(path)
    report(StageProgress("relations", 0, 1))  # the display names the stage at once
    from .devices import resolve_device

    rel = compute_relations(store, sae, batch_tokens=options.relations_batch_tokens, device=resolve_device(device),
                            tau=options.tau, checkpoint_dir=work / "relations.ckpt", should_stop=stop,
                            on_progress=lambda p: report(StageProgress("relations", p.tokens_done, p.total_tokens)))
    if rel is None:
        raise _stopped("relations")
    rel.save(path)
    shutil.rmtree(work / "relations.ckpt", ignore_errors=True)
    return rel


def vocabularies_for(options_vocab: Sequence[str], use_default: bool):
    from .concepts.naming import NamingError, default_vocabularies, load_vocabulary

    vocabs = list(default_vocabularies()) if use_default else []
    vocabs += [load_vocabulary(p) for p in options_vocab]
    if not vocabs:
        raise NamingError("no vocabulary to name concepts with: add --vocab FILE or keep the default ones")
    return vocabs


def _names(sae, relations, work, backbone, options, report, stop):
    from .concepts.naming import ConceptNames, NamingCancelled, embed_vocabulary, name_model

    path = work / "names.json"
    if path.exists():
        return ConceptNames.from_json(path.read_text(encoding="utf-8"))
    report(StageProgress("names", 0, 1))  # the display names the stage at once
    vocabs = vocabularies_for(options.vocabularies, options.default_vocabularies)
    embedded = []

    def vocabulary_progress(n: int, name: str) -> Callable[[int, int], None]:
        return lambda done, total: report(StageProgress("names", n + done / max(total, 1), len(vocabs), name))

    for n, vocab in enumerate(vocabs):
        try:
            emb = embed_vocabulary(backbone, vocab, should_stop=stop, on_progress=vocabulary_progress(n, vocab.name))
        except NamingCancelled:
            raise _stopped("naming") from None
        embedded.append((emb, vocab))
    hierarchy = options.naming == "hierarchy"
    names = name_model(sae.W_dec.detach().numpy(), sae.b_dec.detach().numpy(), embedded,
                       d_hat=relations.d_hat if hierarchy else None, mu=relations.mu if hierarchy else None,
                       tau=relations.tau)
    atomic_write_bytes(path, names.to_json().encode("utf-8"))
    return names


def _thumbnails(store, backbone, relations, work, options, report, stop):
    from .concepts.thumbnails import make_thumbnails

    report(StageProgress("thumbnails", 0, 1))  # the display names the stage at once
    summary = make_thumbnails(store, backbone.preprocessing, relations, work / "thumbnails",
                              per_concept=options.thumbnails_per_concept, crop_px=options.thumbnail_px,
                              should_stop=stop, on_progress=lambda d, t: report(StageProgress("thumbnails", d, t)))
    if summary.stopped_early:
        raise _stopped("thumbnails")
    return summary
