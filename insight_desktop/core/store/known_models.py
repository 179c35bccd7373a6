"""The models the store knows how to get: ``resources/models/catalogue.json``, data, not code.

Users see this list as "the catalogue" (``insight models list --available``, the model manager);
in code it is *known models*, so that it is never confused with the concept catalog
(:mod:`insight_desktop.core.concepts.concept_catalog`: names and thumbnails of a concept model).

Public API::

    KnownModel(id, kind, title, source, size_bytes, licence, sha256, homepage, notes, unpinned, git_blob)
        .from_dict(d) / .to_dict(); .hf -> (repo, [files…]) | None; .revision -> str | None;
        .url -> str | None; .import_only -> bool; .open_clip -> (model, pretrained) | None;
        .pinned -> bool
    load_known_models(path=None) -> tuple[KnownModel, ...]
    known_model(entry_id, path=None) -> KnownModel    (KnownModelsError if unknown)
    KnownModelsError(ValueError)

``path=None`` reads ``INSIGHT_CATALOGUE`` when set (tests, mirrors, site-wide catalogues), else
the bundled file. ``source`` says how to get the file: ``{"hf": {"repo", "file",
"fallback_files"?, "revision"?}}`` (Hugging Face Hub; ``revision`` a 40-hex commit id, absent for
the default branch; ``open_clip: {model, pretrained}`` says which tag it serves), ``{"url": …}``
(``https://`` only, see :mod:`.urls`) or ``{"import": true}`` (no download; the user imports).

Pinning: an entry that can be downloaded should give the file's ``sha256`` and an address that
names a commit, not a branch. A GitHub or Hugging Face address that follows a branch is refused
unless the sha256 is given. A file served from a git repository at a pinned commit may instead give
``git_blob``: git's object id of the file there (``git ls-tree`` shows it; SHA-1 of ``"blob <size>\0"``
plus the bytes), which a download is checked against just as strictly: a second file with the same id
would need a SHA-1 second preimage. Where neither can be known in advance, ``sha256`` is null and
``unpinned`` says why (shown in ``insight models list`` and the Models dialog): the store then
trusts the first download, records its hash and verifies it afterwards. ``size_bytes`` may be
approximate (say so in ``notes``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from .urls import insecure_reason, is_commit, moving_ref

#: what a catalogue entry (or an installed store item) can be
KINDS = ("openclip", "dinoiser", "sae-release", "bundle")
_FIELDS = ("id", "kind", "title", "source", "size_bytes", "licence", "sha256", "homepage", "notes", "unpinned",
           "git_blob")


class KnownModelsError(ValueError):
    """The catalogue file is invalid, or names no such entry."""


@dataclass(frozen=True)
class KnownModel:
    id: str
    kind: str
    title: str
    source: Mapping[str, Any]
    size_bytes: int | None = None
    licence: str = "unknown"
    sha256: str | None = None
    homepage: str | None = None
    notes: str = ""
    unpinned: str | None = None  # why there is no sha256 (trust on first use); None for pinned entries
    git_blob: str | None = None  # git's object id of the file at the commit the URL names (another pin)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["source"] = json.loads(json.dumps(dict(self.source)))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "catalogue") -> "KnownModel":
        if not isinstance(d, Mapping):
            raise KnownModelsError(f"{where}: an entry must be a JSON object, not {type(d).__name__}")
        name = d.get("id")
        if not isinstance(name, str) or not name or any(c in name for c in "/\\: "):
            raise KnownModelsError(f"{where}: entry id {name!r} must be a non-empty string "
                                   "without '/', '\\', ':' or spaces")
        here = f"{where}: entry {name!r}"
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise KnownModelsError(f"{here}: unknown field(s) {', '.join(unknown)}")
        if d.get("kind") not in KINDS:
            raise KnownModelsError(f"{here}: kind {d.get('kind')!r} is not one of {', '.join(KINDS)}")
        source = d.get("source")
        if not isinstance(source, Mapping) or not ({"hf", "url", "import"} & set(source)):
            raise KnownModelsError(f"{here}: source must be an object with 'hf', 'url' or 'import'")
        hf = source.get("hf")
        if "hf" in source and not (isinstance(hf, Mapping) and hf.get("repo") and hf.get("file")):
            raise KnownModelsError(f"{here}: source.hf needs 'repo' and 'file'")
        if isinstance(hf, Mapping) and hf.get("revision") is not None and not is_commit(hf.get("revision")):
            raise KnownModelsError(f"{here}: source.hf.revision must be a 40-hex commit id (a branch or tag can "
                                   "move), or absent")
        url = source.get("url")
        if "url" in source:
            reason = insecure_reason(url)
            if reason is not None:
                raise KnownModelsError(f"{here}: source.url {url!r} is refused: {reason}")
        size = d.get("size_bytes")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise KnownModelsError(f"{here}: size_bytes must be a non-negative integer or null")
        sha = d.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                                or any(c not in "0123456789abcdefABCDEF" for c in sha)):
            raise KnownModelsError(f"{here}: sha256 must be 64 hex digits or null")
        blob = d.get("git_blob")
        commit_url = "url" in source and isinstance(url, str) and moving_ref(url) is None
        if blob is not None and not (isinstance(blob, str) and is_commit(blob.lower()) and commit_url):
            raise KnownModelsError(f"{here}: git_blob must be 40 hex digits, for a source.url that names a commit")
        branch = moving_ref(url) if isinstance(url, str) else None
        if branch is not None and sha is None:
            raise KnownModelsError(f"{here}: source.url follows {branch!r}, which can change: name a commit in "
                                   "the address, or give the file's sha256")
        unpinned = d.get("unpinned")
        if unpinned is not None and (not isinstance(unpinned, str) or not unpinned.strip()):
            raise KnownModelsError(f"{here}: unpinned must be a sentence saying why there is no sha256, or null")
        if unpinned is not None and (sha is not None or blob is not None):
            raise KnownModelsError(f"{here}: an entry with a sha256 or git_blob is pinned; drop 'unpinned'")
        return cls(id=name, kind=d["kind"], title=str(d.get("title") or name), source=json.loads(json.dumps(source)),
                   size_bytes=size, licence=str(d.get("licence") or "unknown"), sha256=sha.lower() if sha else None,
                   homepage=d.get("homepage"), notes=str(d.get("notes") or ""), unpinned=unpinned,
                   git_blob=blob.lower() if blob else None)

    # -- how to get it -------------------------------------------------------------------------
    @property
    def hf(self) -> tuple[str, list[str]] | None:
        """(repository, files to try in order) on the Hugging Face Hub, or None."""
        hf = self.source.get("hf")
        if not hf:
            return None
        return str(hf["repo"]), [str(hf["file"]), *(str(f) for f in hf.get("fallback_files", ()))]

    @property
    def revision(self) -> str | None:
        """The Hub commit the file is taken from; None: the repository's default branch (it can move)."""
        hf = self.source.get("hf")
        return str(hf["revision"]) if hf and hf.get("revision") else None

    @property
    def pinned(self) -> bool:
        """True when the bytes are known in advance (a sha256 or git blob id), so no download can substitute others."""
        return self.sha256 is not None or self.git_blob is not None

    @property
    def url(self) -> str | None:
        return self.source.get("url")

    @property
    def import_only(self) -> bool:
        return not (self.hf or self.url)

    @property
    def open_clip(self) -> tuple[str, str] | None:
        """(open_clip model name, pretrained tag) that this file provides, or None."""
        oc = self.source.get("open_clip")
        return (str(oc["model"]), str(oc["pretrained"])) if isinstance(oc, Mapping) else None


def known_models_file(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        return Path(path)
    override = os.environ.get("INSIGHT_CATALOGUE")
    if override:
        return Path(override)
    from ..paths import resource_path

    return resource_path("models", "catalogue.json")


def load_known_models(path: str | os.PathLike | None = None) -> tuple[KnownModel, ...]:
    """All entries of the catalogue file (see the module doc for which file)."""
    where = known_models_file(path)
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KnownModelsError(f"model catalogue {where} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KnownModelsError(f"model catalogue {where} is not readable JSON: {exc}") from None
    if not isinstance(raw, list):
        raise KnownModelsError(f"model catalogue {where} must hold a JSON list of entries")
    entries = tuple(KnownModel.from_dict(d, str(where)) for d in raw)
    ids = [e.id for e in entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise KnownModelsError(f"model catalogue {where} lists {', '.join(dupes)} more than once")
    return entries


def known_model(entry_id: str, path: str | os.PathLike | None = None) -> KnownModel:
    """The catalogue entry ``entry_id``; KnownModelsError naming the known ids if there is none."""
    entries = load_known_models(path)
    for e in entries:
        if e.id == entry_id:
            return e
    raise KnownModelsError(f"no model {entry_id!r} in the catalogue; known: {', '.join(e.id for e in entries)}")
