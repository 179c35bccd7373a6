"""The model store's index ``store.json``: what is installed, where, with which hash.

One JSON object ``{"format": "insight-model-store", "version": 1, "items": [...]}``, written
atomically. An item's ``path`` is relative to the store root when the file lives there, absolute
otherwise (an OpenCLIP checkpoint stays in the Hugging Face cache, where open_clip looks for it),
so a store folder can be moved or synced as a whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..fileio import atomic_write_json, read_json

INDEX_FILE = "store.json"
INDEX_FORMAT = "insight-model-store"
INDEX_VERSION = 1


class StoreError(RuntimeError):
    """A model-store operation failed; the message says why and what to do."""


@dataclass(frozen=True)
class InstalledModel:
    """One installed item: a weights file, a concept-model bundle, or the bundled demo model."""

    id: str
    kind: str  # "openclip" | "dinoiser" | "bundle"
    title: str
    path: Path  # absolute
    size_bytes: int
    sha256: str | None  # None for bundles: their manifest carries the hashes of their parts
    licence: str
    source: str  # where it came from, in words ("https://…", "imported from /home/…", "bundled")
    installed_at: str  # ISO 8601, UTC
    removable: bool = True  # False for the demo model shipped with the app
    broken: bool = False  # the index lists it but its files are gone
    model: str | None = None  # openclip: the open_clip model name the checkpoint is for
    pretrained: str | None = None  # openclip: the pretrained tag it holds (None: a custom checkpoint)

    @property
    def reference(self) -> str:
        """How a backbone spec refers to this item: ``store:<id>``."""
        return f"store:{self.id}"

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("removable")
        d.pop("broken")
        path = Path(self.path)
        if root is not None and path.is_relative_to(root):
            d["path"] = path.relative_to(root).as_posix()
        else:
            d["path"] = str(path)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], root: Path) -> "InstalledModel":
        try:
            path = Path(str(d["path"]))
            return cls(id=str(d["id"]), kind=str(d["kind"]), title=str(d.get("title") or d["id"]),
                       path=path if path.is_absolute() else root / path, size_bytes=int(d.get("size_bytes") or 0),
                       sha256=d.get("sha256"), licence=str(d.get("licence") or "unknown"),
                       source=str(d.get("source") or ""), installed_at=str(d.get("installed_at") or ""),
                       model=d.get("model"), pretrained=d.get("pretrained"))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"an entry of the model index in {root} is invalid ({exc!r}): {dict(d)}") from None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_index(root: Path) -> list[InstalledModel]:
    path = root / INDEX_FILE
    if not path.exists():
        return []
    try:
        raw = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"the model index {path} is unreadable ({exc}); move it away and import the models "
                         "again") from None
    if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT:
        raise StoreError(f"{path} is not a model index (format {INDEX_FORMAT!r} expected)")
    if int(raw.get("version", 0)) > INDEX_VERSION:
        raise StoreError(f"the model index {path} was written by a newer version of the app (version "
                         f"{raw.get('version')}); update the app")
    return [InstalledModel.from_dict(d, root) for d in raw.get("items", [])]


def write_index(root: Path, items: list[InstalledModel]) -> None:
    atomic_write_json(root / INDEX_FILE, {"format": INDEX_FORMAT, "version": INDEX_VERSION,
                                          "items": [i.to_dict(root) for i in items]})


def tree_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def git_blob_id(path: str | os.PathLike) -> str:
    """git's object id of a file's bytes (``git hash-object``): SHA-1 of ``"blob <size>\0"`` + the bytes."""
    h = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB blocks (no torch import: listing the store stays light)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
