"""Exported results: the label mask and every number behind the explanations.

Written by the desktop app's File → Export and by ``insight analyze``. Every write is atomic
(:mod:`.fileio`). An Analysis holds concept ids; the names written beside them come from the
caller's ``name_of`` (the one name source, :class:`.concepts.names.NameBook`), so an export shows
the names as they are now. Numbers are written with Python's shortest round-trip float
repr, so reading a CSV back gives exactly the values of the Analysis.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from .fileio import atomic_write_bytes
from .tasks.render import class_colours, label_png

#: columns of a contributions table. ``task`` is "segment", "zero-shot", "probe" or "activation";
#: ``label`` the segment label or class index; bias rows have no concept and the name "(bias)"
#: (as in ``insight analyze``'s CSV); activation rows hold a concept's image-level activation.
COLUMNS = ("task", "label", "class", "pixels", "concept", "name", "value")
BIAS_NAME = "(bias)"
FORMAT = "insight-contributions"


def save_label_mask(path: str | Path, segmentation, colours: Sequence[tuple[int, int, int]] | None = None) -> Path:
    """A palette PNG whose pixel values are the labels, and a JSON beside it (same name, ``.json``)
    naming each label: ``{"classes", "background_label", "colours", "pixels", "image_size"}``.
    Returns the JSON's path."""
    path = Path(path)
    seg = segmentation
    n = len(seg.class_names)
    colours = list(colours) if colours is not None else class_colours(n, background=seg.background_label is not None)
    buf = io.BytesIO()
    label_png(seg.labels, colours).save(buf, format="PNG")
    pixels = {s.label: s.pixels for s in seg.segments}
    sidecar = path.with_suffix(".json")
    meta = {"mask": path.name, "classes": list(seg.class_names), "background_label": seg.background_label,
            "colours": [list(map(int, c)) for c in colours[:n]], "pixels": [int(pixels.get(i, 0)) for i in range(n)],
            "image_size": [int(v) for v in seg.labels.shape]}
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_bytes(sidecar, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return sidecar


def contributions_rows(analysis, name_of: Callable[[int], str]) -> list[dict[str, Any]]:
    """Every contribution in ``analysis`` as rows of :data:`COLUMNS` (None where a column does not apply),
    concepts named by ``name_of(concept id)``.

    Per segment: each concept's contribution to the segment's summed logit and the bias (they add
    up to ``Segment.logit_sum``); per zero-shot and probe class: each concept's contribution to the
    class logit and the bias (they add up to the logit); then every active concept's activation.
    """
    rows: list[dict[str, Any]] = []

    def row(task, label, cls, pixels, concept, name, value) -> None:
        rows.append(dict(zip(COLUMNS, (task, label, cls, pixels, concept, name, float(value)))))

    seg = analysis.segmentation
    if seg is not None:
        for s in seg.segments:
            if s.label == seg.background_label:
                continue  # FOUND's background has no concept explanation
            for c in s.contributions:
                row("segment", s.label, s.name, s.pixels, c.concept, name_of(c.concept), c.value)
            row("segment", s.label, s.name, s.pixels, None, BIAS_NAME, s.bias)
    for result in (analysis.classification, analysis.probe):
        if result is None:
            continue
        for k, name in enumerate(result.class_names):
            why = result.explain(k)
            for c in why.contributions:
                row(result.method, k, name, None, c.concept, name_of(c.concept), c.value)
            row(result.method, k, name, None, None, BIAS_NAME, why.bias)
    for a in analysis.concepts:
        row("activation", None, None, None, a.concept, name_of(a.concept), a.activation)
    return rows


def save_contributions(path: str | Path, analysis, name_of: Callable[[int], str]) -> None:
    """:func:`contributions_rows` as CSV (``.csv``) or JSON (``.json``: ``{"format", "columns", "rows"}``)."""
    path = Path(path)
    rows = contributions_rows(analysis, name_of)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([_cell(r[k]) for k in COLUMNS] for r in rows)
        data = buf.getvalue()
    elif suffix == ".json":
        data = json.dumps({"format": FORMAT, "columns": list(COLUMNS), "rows": rows}, indent=1, allow_nan=False) + "\n"
    else:
        raise ValueError(f"cannot export contributions as '{suffix or path.name}': use .csv or .json")
    atomic_write_bytes(path, data.encode("utf-8"))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)
