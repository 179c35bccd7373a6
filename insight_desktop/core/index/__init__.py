"""A folder's images indexed by a concept model: sparse codes per image in one SQLite file.

Build it with :func:`build_index` (incremental, resumable), query it with :class:`FolderIndex`
(top images and patches of a concept, A-and-not-B, frequency, contrasts between sub-folders).
The file's layout is documented in :mod:`.schema`; where it lives, in :func:`index_path`.
Qt-free; a build runs an :class:`~..engine.Analyzer`, queries need only the file.
"""

from __future__ import annotations

from .builder import IndexProgress, IndexStopped, IndexSummary, build_index
from .queries import (
    ConceptContrast,
    Contrast,
    FolderIndex,
    FolderShare,
    Frequency,
    ImageHit,
    IndexInfo,
    PatchHit,
)
from .store import ImageEntry, IndexMismatchError, IndexStore, index_path, indexes_of

__all__ = [
    "ConceptContrast", "Contrast", "FolderIndex", "FolderShare", "Frequency", "ImageEntry", "ImageHit", "IndexInfo",
    "IndexMismatchError", "IndexProgress", "IndexStopped", "IndexStore", "IndexSummary", "PatchHit", "build_index",
    "index_path", "indexes_of",
]
