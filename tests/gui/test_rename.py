"""One source for names: a concept renamed in the window is renamed at once in every view and
export that shows it, and nothing is analysed again (the analysis holds concept ids only)."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog

from insight_desktop.core.concepts.names import NameBook
from insight_desktop.core.paths import resource_path
from insight_desktop.gui.widgets.contribution_chart import ContributionChart
from tests.gui.conftest import wait_for_analysis, zoom_on

CHELSEA = resource_path("samples", "chelsea.png")
NEW_NAME = "tabby fur"


def charted_concept_and_pixel(a, chart_top: int) -> tuple[int, int, int]:
    """A concept among the bars of a segment's chart, and a pixel of that segment whose patch it
    fires on: clicking there lists it in the region panel and charts it in the segmentation panel."""
    seg = a.segmentation
    for s in sorted(seg.segments, key=lambda s: -s.pixels):
        if s.label == seg.background_label:
            continue
        top = sorted(s.contributions, key=lambda c: (-abs(c.value), c.concept))[:chart_top]
        for c in top:
            for r, col in zip(*np.nonzero(a.concept_map(c.concept) > 0)):
                t, left, b, right = a.patch_box(int(r), int(col))
                y, x = int((t + b) / 2), int((left + right) / 2)
                if y < seg.labels.shape[0] and x < seg.labels.shape[1] and seg.labels[y, x] == s.label:
                    return c.concept, y, x
    raise AssertionError("no charted concept fires inside its own segment")


def chart_names(chart: ContributionChart) -> list[str]:
    return chart.labels()[:len(chart.bars())]


def test_a_renamed_concept_is_renamed_everywhere_without_analysing_again(qtbot, window, tiny_bundle, tmp_path,
                                                                         monkeypatch):
    from insight_desktop.gui import window_files

    window.start([CHELSEA], tiny_bundle)
    a = wait_for_analysis(qtbot, window)
    doc = window.document
    assert a.segmentation is not None  # the window segments with its default classes
    j, y, x = charted_concept_and_pixel(a, window.segmentation.chart.top)
    old = f"c{j}"
    # a click on the image: the region panel lists the patch, the chart explains the segment
    qtbot.mouseClick(window.canvas.view.viewport(), Qt.MouseButton.LeftButton, pos=zoom_on(window.canvas, y, x))
    chart = window.segmentation.chart
    bar = [c for c, _ in chart.bars()].index(j)
    qtbot.mouseClick(chart, Qt.MouseButton.LeftButton, pos=chart.bar_center(bar))  # selects j: the inspector shows it
    assert doc.concept == j and window.inspector.name.text() == old
    assert chart_names(chart)[bar] == old and j in window.region.concepts()
    asked = []
    monkeypatch.setattr(window.worker, "analyze", lambda *args, **kw: asked.append(args))

    qtbot.keyClick(window, Qt.Key.Key_F2)      # Rename…: the inspector asks for the new name
    dialog = window.inspector.findChild(QInputDialog)
    assert dialog is not None and dialog.textValue() == old
    dialog.setTextValue(NEW_NAME)
    dialog.accept()

    # the tree (model and the filtered view), the inspector, the chart bar, the region panel
    assert window.tree.model.index_of(j).data() == NEW_NAME and window.tree.index_of(j).data() == NEW_NAME
    assert window.inspector.name.text() == NEW_NAME
    assert chart_names(chart)[bar] == NEW_NAME
    assert all(name == doc.concept_name(c) for (c, _), name in zip(chart.bars(), chart_names(chart)))
    classification = window.classification.chart
    assert all(name == doc.concept_name(c) for (c, _), name in zip(classification.bars(), chart_names(classification)))
    row = window.region.concepts().index(j)
    assert window.region.table.item(row, 0).text() == NEW_NAME
    # the exports (CSV and JSON) write the name as it is now
    for suffix in ("csv", "json"):
        target = tmp_path / f"contributions.{suffix}"
        monkeypatch.setattr(window_files.QFileDialog, "getSaveFileName", lambda *args, t=target, **kw: (str(t), ""))
        window.actions.export_contributions.trigger()
        text = target.read_text(encoding="utf-8")
        rows = list(csv.DictReader(text.splitlines())) if suffix == "csv" else json.loads(text)["rows"]
        mine = [r for r in rows if str(r["concept"]) == str(j)]
        assert mine and all(r["name"] == NEW_NAME for r in mine)
        assert not any(r["name"] == old for r in rows)
    # nothing was computed again: the same analysis, no request to the worker
    assert doc.analysis is a and asked == [] and not window.worker.is_busy

    # the status bar's readout under a resting cursor follows a rename too
    qtbot.mouseMove(window.canvas.view.viewport(), zoom_on(window.canvas, y, x))
    qtbot.waitUntil(lambda: f"{NEW_NAME} " in window.hover.text(), timeout=5_000)
    doc.rename_concept(j, "")                  # an empty name gives the model's name back, everywhere
    assert f"{old} " in window.hover.text() and NEW_NAME not in window.hover.text()
    assert window.tree.model.index_of(j).data() == old and window.inspector.name.text() == old
    assert chart_names(chart)[bar] == old and window.region.table.item(row, 0).text() == old
    assert doc.analysis is a and asked == []


def test_the_rename_shortcut_is_listed_with_the_others(qtbot, window):
    from insight_desktop.gui.dialogs import ShortcutsDialog

    qtbot.keyClick(window, Qt.Key.Key_F1)
    table = window.findChild(ShortcutsDialog).table
    rows = [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount())]
    assert ("Rename Concept…", "F2") in rows


def test_the_tree_filter_follows_a_rename(qtbot, document):
    from insight_desktop.gui.widgets.concept_tree import ConceptTreePanel

    # a catalog of its own: the session's catalog is shared with other tests
    catalog = document.catalog
    document.set_catalog(dataclasses.replace(catalog, names=NameBook(catalog.names.model_names)))
    panel = ConceptTreePanel(document)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.keyClicks(panel.search, "zebra")
    qtbot.waitUntil(lambda: panel.proxy.search == "zebra", timeout=5_000)
    assert not panel.index_of(7).isValid()
    document.rename_concept(7, "Zebra crossing")
    assert panel.index_of(7).isValid() and panel.index_of(7).data() == "Zebra crossing"
    document.rename_concept(7, None)
    assert not panel.index_of(7).isValid()
