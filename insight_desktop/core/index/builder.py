"""Building a folder index: every image of a folder analysed once, incrementally and resumably.

A file is (re-)analysed when the index has no row for its relative path or its size or mtime
differ; files gone from the folder are dropped. Each image is committed on its own
(:mod:`.store`), so a build stopped by the user, killed or crashed continues, when run again,
with the images it had not written. An unreadable image is recorded with its error and not
tried again until the file changes; an image whose *analysis* failed (e.g. out of memory) is
recorded too, but tried again on the next run. Neither stops the build.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import StoppedByUser
from . import schema
from .store import ImageEntry, IndexStore, StoredState, index_path


class IndexStopped(StoppedByUser):
    """``should_stop()`` turned true: the images done so far are kept; building again resumes."""


@dataclass(frozen=True)
class IndexProgress:
    """``done`` of ``total`` images to analyse in this run; ``path`` (relative) the one just finished."""

    done: int
    total: int
    path: str = ""
    failed: int = 0


@dataclass(frozen=True)
class IndexSummary:
    """What a build did: counts of images by what happened to them, and the index file."""

    path: Path
    images: int        # image files in the folder
    analysed: int      # new or changed images analysed in this run
    unchanged: int     # already in the index, skipped
    removed: int       # dropped: gone from the folder
    failed: int        # recorded as errors in this run (unreadable, or analysis failed)
    errors: int        # images the index holds as errors now (this run's and earlier ones)

    def describe(self) -> str:
        parts = [f"{self.images:,} images: {self.analysed:,} analysed, {self.unchanged:,} unchanged"]
        if self.removed:
            parts.append(f"{self.removed:,} removed")
        if self.errors:
            parts.append(f"{self.errors:,} could not be indexed")
        return ", ".join(parts)


def build_index(folder: str | os.PathLike, analyzer: Any, *, index: str | os.PathLike | None = None,
                recursive: bool = True, on_progress: Callable[[IndexProgress], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> IndexSummary:
    """Index the images under ``folder`` with ``analyzer`` (an :class:`~..engine.Analyzer`; only
    ``analyze(rgb, classify=False, should_stop=…)`` and ``model.model_identity`` /
    ``model.n_concepts`` are used). ``index``: the file (default :func:`.store.index_path`).

    Raises :class:`IndexStopped` when ``should_stop()`` turns true (checked between images and
    inside each analysis); what was committed stays. An exception raised by ``on_progress`` also
    ends the build with everything before it kept."""
    from ..images import scan_folder

    root = Path(folder).resolve()
    files = scan_folder(root, recursive=recursive).images
    model = analyzer.model
    path = Path(index) if index is not None else index_path(root, model.model_identity)
    report = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)
    with IndexStore(path, model_identity=model.model_identity, n_concepts=model.n_concepts, folder=root) as store:
        stored = store.stored()
        on_disk: dict[str, ImageEntry] = {}
        for file in files:
            try:
                entry = ImageEntry.of(file, root)
            except OSError:  # vanished since the scan: like a deleted file
                continue
            on_disk[entry.path] = entry
        gone = sorted(set(stored) - set(on_disk))
        store.remove(gone)
        todo = [e for p, e in on_disk.items() if _needs_analysis(stored.get(p), e)]
        failed = 0
        report(IndexProgress(0, len(todo)))
        for done, entry in enumerate(todo, 1):
            if stop():
                raise IndexStopped(f"indexing stopped after {done - 1:,} of {len(todo):,} images: "
                                   "index the folder again to continue")
            failed += not _index_one(store, analyzer, root, entry, stop)
            report(IndexProgress(done, len(todo), entry.path, failed))
        errors = store.con.execute("SELECT count(*) FROM images WHERE status = 'error'").fetchone()[0]
    return IndexSummary(path, len(on_disk), len(todo), len(on_disk) - len(todo), len(gone), failed, int(errors))


def _needs_analysis(state: StoredState | None, entry: ImageEntry) -> bool:
    if state is None or state.size != entry.size or state.mtime_ns != entry.mtime_ns:
        return True
    return state.status == schema.ERROR and state.error_kind == schema.ANALYSIS_FAILED


def _index_one(store: IndexStore, analyzer: Any, root: Path, entry: ImageEntry, stop: Callable[[], bool]) -> bool:
    """Analyse and store one image; False when it was recorded as an error instead."""
    from ..images import ImageLoadError, load_image

    try:
        rgb = load_image(root / entry.path)
    except ImageLoadError as exc:
        store.put_error(entry, schema.UNREADABLE, exc.reason)
        return False
    try:
        analysis = analyzer.analyze(rgb, classify=False, should_stop=stop)
    except StoppedByUser:
        raise IndexStopped("indexing stopped during an image: index the folder again to continue") from None
    except (RuntimeError, ValueError, MemoryError) as exc:  # torch raises RuntimeError (out of memory among them)
        from ..errors import user_message

        store.put_error(entry, schema.ANALYSIS_FAILED, user_message(exc, "analyse the image"))
        return False
    store.put_image(entry, analysis.codes, image_size=analysis.image_size, analysis_size=analysis.analysis_size,
                    patch_size=analysis.patch_size, fvu=analysis.faithfulness.fvu)
    return True
