"""Where a curation file lives, and reading one back (writing: :meth:`.curation.Curation.save`).

The format is JSON, one concept per line (:mod:`.fileformat`, docs/curation.md), replaced
atomically on every save. Why JSON rather than SQLite (docs/curation.md says more): a curation
is small (8192 concepts, all reviewed with notes, ≈ 1.6 MB), so rewriting it whole after every
change costs ≈ 16 ms, mostly the fsync; the temporary file is fsynced and renamed over the old
one, so a process killed at any point leaves the old file or the new one, never a mix. One line
per concept diffs, merges and greps like text; SQLite needs its own tools, merges only as a
binary, and spreads its state over ``-wal``/``-journal`` files that a user copying "the file"
would leave behind.

Reading checks everything (the file may come from another annotator): size, nesting, types,
ranges, lengths; a problem raises :class:`.records.CurationFormatError` naming the field.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

from ..concepts.bundle_schema import MAX_CONCEPTS, MAX_NAME_CHARS, Fields, load_json
from ..paths import user_data_dir
from .curation import Curation
from .fileformat import FORMAT, SUFFIX, VERSION
from .records import (
    MAX_NOTE_CHARS,
    MAX_USER_CHARS,
    STATUSES,
    ConceptReview,
    CurationError,
    CurationFormatError,
    CurationModelError,
    checked_name,
)

#: far above any real curation (8192 concepts with long notes ≈ 2 MB), far below what hurts
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_TIME_CHARS = 64
MAX_LABEL_CHARS = 1000
#: a temporary file this old belongs to a save that never finished (a crash): deleted on loading
STALE_TEMP_S = 3600.0
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


# -- where ---------------------------------------------------------------------------------------
def curations_dir() -> Path:
    return user_data_dir() / "curations"


def default_path(model_identity: str, user: str) -> Path:
    """``<user data>/curations/<model identity>/<user>.insight-curation.json``: keyed by the
    model's content (:func:`..analysis_cache.model_identity`), not its path, so a read-only or
    bundled model can be curated, and a moved or renamed copy finds its curation."""
    if not model_identity or not all(c in "0123456789abcdef" for c in model_identity):
        raise CurationError(f"not a model identity: {model_identity[:80]!r}")
    safe = _SAFE.sub("_", user)[:64] or "user"
    if safe != user:  # two users whose names differ only in odd characters keep two files
        safe += "-" + hashlib.sha256(user.encode()).hexdigest()[:8]
    return curations_dir() / model_identity / f"{safe}{SUFFIX}"


# -- reading -------------------------------------------------------------------------------------
def load_curation(path: str | os.PathLike, *, model_identity: str | None = None,
                  n_concepts: int | None = None, user: str | None = None) -> Curation:
    """The curation in ``path``. With ``model_identity``/``n_concepts`` it must belong to that
    model (else :class:`.records.CurationModelError`); ``user`` is who changes it from now on
    (default: the user the file names)."""
    path = Path(path)
    _remove_stale_temps(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CurationError(f"cannot read the curation file '{path}': {exc.strerror or exc}") from None
    curation = curation_from_bytes(data, str(path), user=user)
    curation.path = path
    if model_identity is not None and curation.model_identity != model_identity:
        raise CurationModelError(f"'{path}' is the curation of another concept model "
                                 f"({curation.model_label or curation.model_identity[:12]})")
    if n_concepts is not None and curation.n_concepts != n_concepts:
        raise CurationModelError(f"'{path}' curates {curation.n_concepts} concepts, the model has {n_concepts}")
    return curation


def curation_from_bytes(data: bytes, where: str, *, user: str | None = None) -> Curation:
    where = f"curation file '{where}'"
    if not data.strip():
        raise CurationFormatError(f"{where} is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CurationFormatError(f"{where} is not UTF-8 text: not a curation file") from None
    top = Fields(load_json(text, where, max_bytes=MAX_FILE_BYTES, error=CurationFormatError), where,
                 error=CurationFormatError)
    if top.obj.get("format") != FORMAT:
        raise CurationFormatError(f"{where} is not an Insight Desktop curation file")
    version = top.integer("version", 1, 1 << 31)
    if version > VERSION:
        raise CurationFormatError(f"{where} was written by a newer Insight Desktop (curation format {version}; "
                                  f"this version reads up to {VERSION}). Update Insight Desktop to open it.")
    model = top.sub("model")
    identity = model.text("identity", max_chars=128)
    if not identity or not all(c in "0123456789abcdef" for c in identity):
        raise CurationFormatError(f"{where}: 'model.identity' must be a hexadecimal model identity")
    n = model.integer("n_concepts", 1, MAX_CONCEPTS)
    records: dict[int, ConceptReview] = {}
    for i, raw in enumerate(top.items("concepts", MAX_CONCEPTS)):
        f = Fields(raw, where, f"concepts[{i}].", error=CurationFormatError)
        j = f.integer("id", 0, n - 1)
        if j in records:
            raise CurationFormatError(f"{where}: concept {j} is listed twice")
        status = f.text("status", max_chars=32)
        if status not in STATUSES:
            raise CurationFormatError(f"{where}: 'concepts[{i}].status' must be one of {', '.join(STATUSES)}, "
                                      f"not {status[:40]!r}")
        name = f.opt_text("name", max_chars=MAX_NAME_CHARS)
        if name is not None and checked_name(name) != name:
            raise CurationFormatError(f"{where}: 'concepts[{i}].name' must be one line of text, not blank")
        note = f.opt_text("note", max_chars=MAX_NOTE_CHARS) or ""
        review = ConceptReview(status=status, name=name, note=note, by=f.opt_text("by", MAX_USER_CHARS) or "",
                               at=f.opt_text("at", MAX_TIME_CHARS) or "")
        if review.normalized() != review:
            raise CurationFormatError(f"{where}: concept {j} is '{status}' but "
                                      f"{'has' if name is not None else 'lacks'} a name")
        if "\0" in note or "\0" in review.by:
            raise CurationFormatError(f"{where}: concept {j} holds NUL characters")
        records[j] = review
    return Curation(identity, n, user=user or top.opt_text("user", MAX_USER_CHARS),
                    model_label=model.opt_text("label", MAX_LABEL_CHARS) or "", records=records)


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files of saves killed long ago (``.<name>.*.tmp`` beside ``path``)."""
    with contextlib.suppress(OSError):
        cutoff = time.time() - STALE_TEMP_S
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()


def curation_for(model: Any, *, user: str | None = None, path: str | os.PathLike | None = None) -> Curation:
    """The curation of the concept model ``model`` (a :class:`..concepts.bundle.ConceptModel`, or
    its :class:`..concepts.concept_catalog.ConceptCatalog`: anything with ``model_identity``,
    ``n_concepts`` and ``path``):
    read from ``path`` (default: the user's own file, :func:`default_path`) when it exists, else
    a new, empty one that will be saved there."""
    from .records import current_user

    identity, n = str(model.model_identity), int(model.n_concepts)
    user = user or current_user()
    target = Path(path) if path is not None else default_path(identity, user)
    if target.exists():
        return load_curation(target, model_identity=identity, n_concepts=n, user=user)
    return Curation(identity, n, user=user, model_label=Path(str(model.path)).name, path=target)
