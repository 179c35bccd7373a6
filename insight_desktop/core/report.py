"""Exported results: the label mask and every number behind the explanations.

Written by the desktop app's File → Export and by ``insight analyze``. Every write is atomic
(:mod:`.fileio`). An Analysis holds concept ids; the names written beside them come from the
caller's ``name_of`` (the one name source, :class:`.concepts.names.NameBook`), so an export shows
the names as they are now. Numbers are written with Python's shortest round-trip float
repr, so reading a CSV back gives exactly the values of the Analysis.

Text cells of every CSV the app or CLI writes go through :func:`csv_cell`: a concept or class
name starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run as a
formula by a spreadsheet (CSV injection), so such text gets a leading ``'`` (OWASP's advice);
numbers, including negative ones, are written as they are.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .fileio import atomic_write_bytes
from .tasks.render import class_colours, label_png

#: columns of a contributions table. ``task`` is "segment", "zero-shot", "probe" or "activation";
#: ``label`` the segment label or class index; bias rows have no concept and the name "(bias)"
#: (as in ``insight analyze``'s CSV); ``unit`` says what ``value`` is (:data:`UNITS`).
COLUMNS = ("task", "label", "class", "pixels", "concept", "name", "value", "unit")
#: what ``value`` holds, by task: a segment's contributions add up to its logit summed over its
#: pixels, a class's to its logit; activation rows hold a concept's image-level activation.
UNITS = {"segment": "logit_sum", "zero-shot": "logit", "probe": "logit", "activation": "activation"}
BIAS_NAME = "(bias)"
FORMAT = "insight-contributions"
#: a CSV export's provenance sidecar: ``why.csv`` → ``why.provenance.json`` (a CSV has no header
#: for it, and a ``#`` comment line would break plain CSV readers)
PROVENANCE_SUFFIX = ".provenance.json"


def provenance(analysis, *, image: str | Path | None, model: str | Path | None, backbone: str | None) -> dict:
    """Where an export came from: the image, the concept model (folder or file name and full path),
    the backbone id, the sliding-window mode and the app version."""
    from .. import __version__

    return {"image": str(image) if image else None, "model": Path(model).name if model else None,
            "model_path": str(model) if model else None, "backbone": backbone or None,
            "window_mode": analysis.window_mode, "app_version": __version__}


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
        rows.append(dict(zip(COLUMNS, (task, label, cls, pixels, concept, name, float(value), UNITS[task]))))

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


def save_contributions(path: str | Path, analysis, name_of: Callable[[int], str],
                       source: Mapping[str, Any] | None = None) -> Path | None:
    """:func:`contributions_rows` as CSV (``.csv``) or JSON (``.json``: ``{"format", "provenance",
    "columns", "rows"}``). ``source`` is the :func:`provenance` (without one, only the window mode and
    app version are known); a CSV gets it in a sidecar (:data:`PROVENANCE_SUFFIX`), whose path is returned."""
    path = Path(path)
    rows = contributions_rows(analysis, name_of)
    origin = dict(source) if source is not None else provenance(analysis, image=None, model=None, backbone=None)
    suffix = path.suffix.lower()
    sidecar = None
    if suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([_cell(r[k]) for k in COLUMNS] for r in rows)
        data = buf.getvalue()
        sidecar = path.with_name(path.stem + PROVENANCE_SUFFIX)
    elif suffix == ".json":
        data = json.dumps({"format": FORMAT, "provenance": origin, "columns": list(COLUMNS), "rows": rows},
                          indent=1, allow_nan=False) + "\n"
    else:
        raise ValueError(f"cannot export contributions as '{suffix or path.name}': use .csv or .json")
    atomic_write_bytes(path, data.encode("utf-8"))
    if sidecar is not None:
        meta = {"format": FORMAT, "table": path.name, "provenance": origin, "units": UNITS}
        atomic_write_bytes(sidecar, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return sidecar


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else csv_cell(v)


#: what a spreadsheet reads as the start of a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)")


def csv_cell(value: Any) -> str:
    """``value`` as the text of a CSV cell that no spreadsheet runs as a formula: text starting
    with one of :data:`FORMULA_STARTS` gets a leading ``'``; numbers (``-0.5`` too) stay numbers."""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS) and (isinstance(value, str) and not _NUMBER.fullmatch(text)):
        return "'" + text
    return text


def csv_text(header: Sequence[Any], rows: Any) -> str:
    """A whole CSV (``\\n`` line ends) with every cell through :func:`csv_cell`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(h) for h in header])
    writer.writerows([_cell(v) for v in row] for row in rows)
    return buf.getvalue()
