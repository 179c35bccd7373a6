"""The bytes of a curation file (docs/curation.md): a header line, then one line per record.

Writing only; :mod:`.store` reads and validates. One record per line, keys sorted, concepts by
id: a curation diffs, merges and greps like text.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from .records import ConceptReview

FORMAT = "insight-curation"
VERSION = 1
SUFFIX = ".insight-curation.json"


def record_json(concept: int, review: ConceptReview) -> str:
    """One record's line (without the separating comma)."""
    d: dict[str, Any] = {"id": concept, "status": review.status, "by": review.by, "at": review.at}
    if review.name is not None:
        d["name"] = review.name
    if review.note:
        d["note"] = review.note
    return json.dumps(d, ensure_ascii=False, sort_keys=True)


def document_bytes(head: Mapping[str, Any], lines: Iterable[str]) -> bytes:
    """The whole file: ``head``'s fields (format, version, …) and ``"concepts"``, one line each."""
    text = json.dumps({"format": FORMAT, "version": VERSION, **head}, ensure_ascii=False, sort_keys=True)[:-1]
    body = ",\n".join(lines)
    return f'{text},\n"concepts": [\n{body}\n]}}\n'.encode("utf-8")
