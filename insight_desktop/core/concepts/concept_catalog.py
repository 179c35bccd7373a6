"""What a viewer needs to know about a loaded concept model, as one immutable value.

The worker thread loads the bundle (torch, the SAE, the backbone) and hands the GUI a
:class:`ConceptCatalog`: the names (the model's :class:`~.names.NameBook`, the one place names
are looked up), the hierarchy (the frozen numpy :class:`~.relations.Relations`), the top-patch
thumbnails, and provenance. No torch objects; the one mutable part, the name book's user edits,
is only touched on the GUI thread, after the hand-over (ARCHITECTURE rule 2). Thumbnails are read when asked
for, through a file handle of their own, rather than all at loading (a model of 8192 concepts
has tens of MB of them, and a viewer shows one at a time).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import numpy as np

from .bundle import THUMBNAILS_DIR, BundleError, thumbnail_name
from .bundle_parts import Parts
from .bundle_schema import MAX_THUMBNAIL_BYTES
from .names import NameBook
from .relations import Relations


class BundleThumbnails(Mapping):
    """``concept → JPEG bytes`` of a bundle's thumbnail strips, read on demand. Thread-safe: it
    opens the bundle once, with a handle of its own; an unreadable strip counts as missing."""

    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._lock = threading.Lock()
        self._parts: Parts | None = None

    def _open(self) -> Parts:
        if self._parts is None:
            self._parts = Parts(self._path)
        return self._parts

    def __getitem__(self, concept: int) -> bytes:
        name = thumbnail_name(int(concept))
        with self._lock:
            try:
                parts = self._open()
                if parts.exists(name):
                    return parts.read(name, MAX_THUMBNAIL_BYTES)
            except BundleError:
                pass  # moved or damaged since loading: show no picture rather than fail
        raise KeyError(concept)

    def _concepts(self) -> list[int]:
        with self._lock:
            try:
                names = self._open().members(THUMBNAILS_DIR)
            except (BundleError, OSError):
                return []
        # Only names thumbnail_name() writes ('thumbnails/00042.jpg'); others are not strips.
        stems = (n[len(THUMBNAILS_DIR) + 1:-4] for n in names if n.endswith(".jpg"))
        return sorted({int(s) for s in stems if s.isascii() and s.isdigit() and len(s) <= 9})

    def __iter__(self) -> Iterator[int]:
        return iter(self._concepts())

    def __len__(self) -> int:
        return len(self._concepts())

    def close(self) -> None:
        """Let go of the bundle file (reading again reopens it)."""
        with self._lock:
            if self._parts is not None:
                self._parts.close()
                self._parts = None


@dataclass(frozen=True, eq=False)
class ConceptCatalog:
    """Names, hierarchy and pictures of every concept of one concept model."""

    path: str
    backbone_id: str
    device: str
    names: NameBook                   # the model's names plus the user's edits
    relations: Relations
    thumbnails: Mapping[int, bytes]   # concept → JPEG strip of its top patches (read on demand)
    provenance: Mapping[str, Any]
    summary: str
    notices: tuple[str, ...] = ()
    model_identity: str = ""          # BundleManifest.identity: the key of the model's analyses and curations

    @property
    def n_concepts(self) -> int:
        return self.relations.n_concepts

    def name(self, concept: int) -> str:
        return self.names.name(concept)

    def level(self, concept: int) -> int:
        return int(self.relations.level[concept])

    def frequency(self, concept: int) -> float:
        return float(self.relations.frequency[concept])

    def parents(self, concept: int) -> list[tuple[int, float]]:
        """Every parent of ``concept`` with its score D̂, best first."""
        return self.relations.parent_scores(int(concept))

    def children(self, concept: int) -> list[int]:
        """Children in the display tree (each concept has at most one display parent)."""
        return self.relations.children_of(int(concept))

    def display_parent(self, concept: int) -> int:
        return int(self.relations.display_parent[concept])

    def find(self, text: str) -> np.ndarray:
        """Concepts whose shown name contains ``text`` (case-insensitive), ascending."""
        return self.names.find(text)


def catalog_of(model: Any, *, device: str = "cpu", notices: tuple[str, ...] = ()) -> ConceptCatalog:
    """The catalog of a loaded :class:`~.bundle.ConceptModel` (its notices, e.g. about shortened
    names, follow ``notices``)."""
    names = NameBook(model.names)  # first: reading the names may add notices
    return ConceptCatalog(
        path=str(model.path), backbone_id=str(model.manifest.backbone.get("id") or "?"), device=str(device),
        names=names, relations=model.relations, thumbnails=BundleThumbnails(model.path),
        provenance=MappingProxyType(dict(model.manifest.provenance)), summary=model.summary(),
        notices=tuple(dict.fromkeys((*notices, *getattr(model, "notices", ())))),
        model_identity=model.manifest.identity)
