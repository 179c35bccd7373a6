"""What a viewer needs to know about a loaded concept model, as one immutable value.

The worker thread loads the bundle (torch, the SAE, the backbone) and hands the GUI a
:class:`ConceptCatalog`: names and candidate names, the hierarchy (the frozen numpy
:class:`~.relations.Relations`), the top-patch thumbnails as JPEG bytes, and provenance. No
torch objects, nothing mutable — it can cross threads (ARCHITECTURE rule 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from .naming import ConceptNames
from .relations_model import Relations


@dataclass(frozen=True, eq=False)
class ConceptCatalog:
    """Names, hierarchy and pictures of every concept of one concept model."""

    path: str
    backbone_id: str
    device: str
    names: ConceptNames
    relations: Relations
    thumbnails: Mapping[int, bytes]
    probe_classes: tuple[str, ...] | None
    provenance: Mapping[str, Any]
    summary: str
    notices: tuple[str, ...] = ()

    @property
    def n_concepts(self) -> int:
        return self.relations.n_concepts

    def name(self, concept: int) -> str:
        return self.names.display_name(int(concept))

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

    def ancestors(self, concept: int) -> list[int]:
        """Display-tree ancestors of ``concept``, nearest first."""
        out, seen = [], {int(concept)}
        p = self.display_parent(concept)
        while p >= 0 and p not in seen:  # the display tree is acyclic; the guard keeps a bad file finite
            out.append(p)
            seen.add(p)
            p = self.display_parent(p)
        return out

    def find(self, text: str) -> np.ndarray:
        """Concepts whose display name contains ``text`` (case-insensitive), ascending."""
        needle = text.strip().lower()
        if not needle:
            return np.arange(self.n_concepts)
        return np.array([i for i, n in enumerate(self.names.display_names) if needle in n.lower()], dtype=np.int64)


def catalog_of(model: Any, *, device: str = "cpu", notices: tuple[str, ...] = ()) -> ConceptCatalog:
    """The catalog of a loaded :class:`~.bundle.ConceptModel` (reads every thumbnail once)."""
    thumbs = {}
    for i in range(model.n_concepts):
        jpeg = model.thumbnail(i)
        if jpeg is not None:
            thumbs[i] = jpeg
    probe = model.probe
    return ConceptCatalog(
        path=str(model.path), backbone_id=str(model.manifest.backbone.get("id", "?")), device=str(device),
        names=model.names, relations=model.relations, thumbnails=MappingProxyType(thumbs),
        probe_classes=tuple(probe[1]) if probe is not None else None,
        provenance=MappingProxyType(dict(model.manifest.provenance)), summary=model.summary(),
        notices=tuple(notices))
