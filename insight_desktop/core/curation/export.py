"""A curation for other tools: the verdicts as CSV or JSON, and a curated copy of the bundle.

The CSV's text cells are escaped against formula injection (:func:`..report.csv_text`). The
curated bundle is the model bundle, member for member, with a new ``names.json`` — the
annotator's names as its ``edited`` names (what every reader of a bundle shows), and per concept
the ``status`` and ``note`` of the review (fields the bundle reader ignores and keeps no
record of: they are there for people and other tools) — and a ``curation`` entry in the
manifest's provenance saying whose curation of which model it carries. The binary parts and
their hashes are unchanged, so the copy has the same model identity and the same analyses.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes
from .curation import Curation
from .records import UNREVIEWED, CurationError, now_utc

#: columns of a verdicts export
COLUMNS = ("concept", "status", "name", "model_name", "note", "by", "at")
EXPORT_FORMAT = "insight-curation-verdicts"


def verdict_rows(curation: Curation, model_names: Any = None, *, all_concepts: bool = True) -> list[dict[str, Any]]:
    """One row per concept (``all_concepts``) or per reviewed concept, of :data:`COLUMNS`;
    ``model_names`` (a :class:`..concepts.naming.ConceptNames`, or anything with
    ``display_name(i)``) fills ``model_name`` and the shown ``name`` of concepts not renamed."""
    ids = range(curation.n_concepts) if all_concepts else sorted(curation.records)
    rows = []
    for j in ids:
        r = curation.records.get(j, UNREVIEWED)
        model_name = model_names.display_name(j) if model_names is not None else None
        rows.append({"concept": j, "status": r.status, "name": r.name if r.name is not None else model_name,
                     "model_name": model_name, "note": r.note, "by": r.by or None, "at": r.at or None})
    return rows


def export_verdicts(curation: Curation, path: str | os.PathLike, model_names: Any = None, *,
                    all_concepts: bool = True) -> Path:
    """Write :func:`verdict_rows` as ``.csv`` or ``.json`` (by the suffix), atomically."""
    from ..report import csv_text

    path = Path(path)
    rows = verdict_rows(curation, model_names, all_concepts=all_concepts)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        data = csv_text(COLUMNS, ([r[k] for k in COLUMNS] for r in rows))
    elif suffix == ".json":
        data = json.dumps({"format": EXPORT_FORMAT, "model": {"identity": curation.model_identity,
                                                              "label": curation.model_label,
                                                              "n_concepts": curation.n_concepts},
                           "user": curation.user, "exported": now_utc(), "progress": dict(curation.progress().counts),
                           "columns": list(COLUMNS), "rows": rows}, indent=1, ensure_ascii=False) + "\n"
    else:
        raise CurationError(f"cannot export verdicts as '{suffix or path.name}': use .csv or .json")
    try:
        atomic_write_bytes(path, data.encode("utf-8"))
    except OSError as exc:
        raise CurationError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return path


# -- the curated bundle ----------------------------------------------------------------------------
def curated_names_json(names: Any, curation: Curation) -> bytes:
    """``names.json`` (of :class:`..concepts.naming.ConceptNames` ``names``) with the curation's
    names as edits and each concept's status and note."""
    edited = list(names.edited)
    for j, name in curation.names().items():
        edited[j] = name
    d = type(names)(names.names, names.candidates, names.method, tuple(edited), names.vocabularies).to_dict()
    for entry in d["concepts"]:
        review = curation.records.get(int(entry["index"]), UNREVIEWED)
        entry["status"] = review.status
        if review.note:
            entry["note"] = review.note
    d["curation"] = _provenance(curation)
    return (json.dumps(d, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _provenance(curation: Curation) -> dict[str, Any]:
    from ... import __version__

    return {"user": curation.user, "date": now_utc(), "model_identity": curation.model_identity,
            "progress": dict(curation.progress().counts), "app_version": __version__}


def write_curated_bundle(model_path: str | os.PathLike, curation: Curation, out: str | os.PathLike, *,
                         overwrite: bool = False) -> Path:
    """A copy of the bundle at ``model_path`` carrying ``curation`` (see the module's docstring),
    written to ``out`` (a ``.zip`` file or a folder) atomically."""
    from ..analysis_cache import model_identity
    from ..concepts import bundle_schema as schema
    from ..concepts.bundle import NAMES_FILE, RELATIONS_FILE, SAE_FILE, THUMBNAILS_DIR, ConceptModel, write_members
    from ..concepts.bundle_parts import MANIFEST, Parts

    source, out = Path(model_path), Path(out)
    if out.exists() and not overwrite:
        raise CurationError(f"'{out}' exists; choose another name or allow overwriting")
    if out.resolve() == source.resolve():
        raise CurationError("the curated bundle must be written next to the model, not over it")
    model = ConceptModel.load(source, eager=False)
    try:
        if model_identity(model.manifest) != curation.model_identity or model.n_concepts != curation.n_concepts:
            raise CurationError(f"the curation is not of the concept model '{source}'")
        names_bytes = curated_names_json(model.names, curation)
        manifest = model.manifest.to_dict()
    finally:
        model.close()
    manifest["provenance"] = {**manifest["provenance"], "curation": _provenance(curation)}
    replaced = {NAMES_FILE: names_bytes,
                MANIFEST: (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")}
    parts = Parts(source)
    try:
        listed = parts.names if parts.is_zip else [  # a folder: the parts a bundle knows
            SAE_FILE, RELATIONS_FILE, *manifest["files"], *parts.members(THUMBNAILS_DIR)]
        members = [n for n in dict.fromkeys(listed) if n not in replaced and parts.exists(n)]
        copied = ((n, parts.read(n, schema.MAX_PART_BYTES)) for n in members)  # one member in memory at a time
        write_members(out, itertools.chain(copied, replaced.items()), out.suffix.lower() == ".zip")
    finally:
        parts.close()
    return out

