"""The region panel: exactly the concepts firing in the clicked patch(es), strongest first."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from insight_desktop.gui.document import Region
from insight_desktop.gui.widgets.region_panel import EMPTY_TEXT, RegionPanel
from tests.gui.conftest import show_widget


@pytest.fixture
def panel(qtbot, document):
    return show_widget(qtbot, RegionPanel(document), 420, 500)


def patch_region(analysis, r: int, c: int) -> Region:
    """A 1-pixel region in the middle of patch (r, c)."""
    top, left, bottom, right = analysis.patch_box(r, c)
    y, x = int((top + bottom) / 2), int((left + right) / 2)
    return Region(y, x, y + 1, x + 1)


def expected(analysis, patches: np.ndarray) -> list[tuple[int, float]]:
    """(concept, max code) over ``patches``, from the CSR arrays directly, strongest first."""
    best: dict[int, float] = {}
    codes = analysis.codes
    for p in patches:
        for k in range(codes.indptr[p], codes.indptr[p + 1]):
            j, v = int(codes.indices[k]), float(codes.values[k])
            best[j] = max(best.get(j, 0.0), v)
    return sorted(best.items(), key=lambda jv: (-jv[1], jv[0]))


def test_empty_state(panel, document):
    assert document.region is None
    assert panel.stack.currentWidget() is panel.empty and panel.empty.text() == EMPTY_TEXT


def test_one_patch(panel, document):
    a = document.analysis
    h, w = a.grid
    counts = np.diff(a.codes.indptr)
    p = int(np.argmax(counts))  # the busiest patch: several concepts to order
    r, c = divmod(p, w)
    assert counts[p] >= 3
    document.select_region(patch_region(a, r, c))
    assert document.region_patches(document.region) == (slice(r, r + 1), slice(c, c + 1))
    want = expected(a, np.array([p]))
    assert panel.concepts() == [j for j, _ in want]
    assert [panel.table.item(i, 1).text() for i in range(len(want))] == [f"{v:.3g}" for _, v in want]
    assert panel.title.text() == f"Patch ({r}, {c})"
    j = want[0][0]
    assert panel.table.item(0, 0).text() == document.catalog.name(j)
    assert panel.table.item(0, 2).text() == str(document.catalog.level(j))
    parents = document.catalog.parents(j)[:2]
    assert panel.table.item(0, 3).text() == ", ".join(document.catalog.name(q) for q, _ in parents)


def test_rectangle(panel, document):
    a = document.analysis
    h, w = a.grid
    top, left = patch_region(a, 4, 6), patch_region(a, 7, 9)
    document.select_region(Region(top.top, top.left, left.bottom, left.right))
    rows, cols = document.region_patches(document.region)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (4, 8, 6, 10)
    patches = (np.arange(4, 8)[:, None] * w + np.arange(6, 10)[None, :]).ravel()
    want = expected(a, patches)
    assert len(want) > 3 and panel.concepts() == [j for j, _ in want]
    assert panel.title.text() == "Region 4–7 × 6–9 (16 patches)"


def test_click_row_selects_and_follows(qtbot, panel, document):
    a = document.analysis
    p = int(np.argmax(np.diff(a.codes.indptr)))
    document.select_region(patch_region(a, *divmod(p, a.grid[1])))
    listed = panel.concepts()
    target = next(j for j in listed[1:] if j != document.concept)
    row = listed.index(target)
    rect = panel.table.visualRect(panel.table.model().index(row, 0))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert document.concept == target
    other = next(j for j in listed if j != target)
    emitted = []
    document.conceptSelected.connect(emitted.append)
    document.select_concept(other)
    assert emitted == [other]
    assert [i.row() for i in panel.table.selectionModel().selectedRows()] == [listed.index(other)]
    document.select_concept(next(j for j in range(64) if j not in listed))
    assert not panel.table.selectionModel().selectedRows()


def test_new_image_clears(panel, document, sample_rgb):
    document.select_region(patch_region(document.analysis, 2, 2))
    assert panel.stack.currentIndex() == 1
    document.set_image(None, sample_rgb)
    assert panel.stack.currentWidget() is panel.empty and panel.table.rowCount() == 0
