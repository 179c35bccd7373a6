"""The concept tree: model structure (Qt's model tester), search, "only active", selection both ways.

The tiny catalog names its 64 concepts c0…c63; its display tree has 1 → {0, 13, 27, 41},
28 → 11, 25 → 12, 16 → 35, 39 → 44 (asserted below, so a changed fixture fails loudly).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QModelIndex, Qt

from insight_desktop.core.engine import ConceptActivation
from insight_desktop.gui.widgets.concept_tree import ConceptFilterProxy, ConceptTreePanel
from insight_desktop.gui.widgets.qt_concept_tree_model import CONCEPT_ROLE, SORT_ROLE, Column, QtConceptTreeModel
from tests.gui.conftest import show_widget


@pytest.fixture
def panel(qtbot, document):
    return show_widget(qtbot, ConceptTreePanel(document), 420, 600)


def visible_concepts(panel) -> set[int]:
    """Concepts with a row in the view's model (expanded or not), walking the proxy tree."""
    out, stack = set(), [QModelIndex()]
    proxy = panel.proxy
    while stack:
        parent = stack.pop()
        for r in range(proxy.rowCount(parent)):
            idx = proxy.index(r, 0, parent)
            out.add(int(idx.data(CONCEPT_ROLE)))
            stack.append(idx)
    return out


def row_rect_center(panel, concept: int):
    index = panel.index_of(concept)
    assert index.isValid()
    panel.view.scrollTo(index)
    return panel.view.visualRect(index).center()


def type_search(qtbot, panel, text: str) -> None:
    panel.search.setFocus()
    qtbot.keyClicks(panel.search, text)
    assert panel.proxy.search != text.strip() or not text.strip()  # debounced: nothing yet
    qtbot.waitUntil(lambda: panel.proxy.search == text.strip(), timeout=30_000)


def test_model_structure(qtmodeltester, document):
    model = QtConceptTreeModel(document)
    qtmodeltester.check(model)
    catalog = document.catalog
    assert catalog.children(1) == [0, 13, 27, 41] and catalog.display_parent(44) == 39
    assert model.rowCount() == catalog.relations.roots.size
    roots = [model.index(r, 0).data(CONCEPT_ROLE) for r in range(model.rowCount())]
    assert roots == catalog.relations.roots.tolist()
    zero = model.index_of(0)
    assert zero.parent().data(CONCEPT_ROLE) == catalog.display_parent(0) == 1
    kids = model.index_of(1)
    assert [model.index(r, 0, kids).data(CONCEPT_ROLE) for r in range(model.rowCount(kids))] == catalog.children(1)
    assert zero.data() == "c0" and model.index_of(0, Column.LEVEL).data() == str(catalog.level(0))
    assert model.index_of(0, Column.FREQUENCY).data(SORT_ROLE) == pytest.approx(catalog.frequency(0))


def test_activation_column_and_analysis_update_keeps_expansion(panel, document):
    model, active = panel.model, {c.concept: c.activation for c in document.analysis.concepts}
    assert 0 not in active and 13 in active
    assert model.index_of(13, Column.ACTIVATION).data(SORT_ROLE) == pytest.approx(active[13])
    assert model.index_of(13, Column.ACTIVATION).data() != "" and model.index_of(0, Column.ACTIVATION).data() == ""
    panel.view.setExpanded(panel.index_of(1), True)
    resets, changed = [], []
    model.modelReset.connect(lambda: resets.append(1))
    model.dataChanged.connect(lambda a, b, roles: changed.append((a.column(), b.column())))
    # concept 0 now fires, 13 no longer does
    concepts = tuple(c for c in document.analysis.concepts if c.concept != 13) + (
        ConceptActivation(0, 5.0, 1, (1,), 3),)
    document.set_analysis(dataclasses.replace(document.analysis, concepts=concepts))
    assert not resets and changed and all(c == (Column.ACTIVATION, Column.ACTIVATION) for c in changed)
    assert model.index_of(0, Column.ACTIVATION).data(SORT_ROLE) == 5.0
    assert model.index_of(13, Column.ACTIVATION).data() == ""
    assert panel.view.isExpanded(panel.index_of(1))


def test_proxy_passes_model_tester(qtmodeltester, document):
    model = QtConceptTreeModel(document)
    proxy = ConceptFilterProxy(model)
    proxy.set_search("c4")
    qtmodeltester.check(proxy)
    proxy.set_only_active(True)
    proxy.sort(Column.ACTIVATION, Qt.SortOrder.DescendingOrder)
    qtmodeltester.check(proxy)


def test_search_keeps_ancestors_and_hides_siblings(qtbot, panel):
    assert len(visible_concepts(panel)) == 64
    type_search(qtbot, panel, "C41")  # case-insensitive; only c41 contains "c41"; it sits under c1
    assert visible_concepts(panel) == {1, 41}
    index = panel.index_of(41)
    assert index.parent().data(CONCEPT_ROLE) == 1
    assert panel.view.isExpanded(index.parent())  # the match is revealed, not just kept
    assert panel.view.visualRect(index).isValid()

    panel.search.clear()
    qtbot.keyClicks(panel.search, "c4")
    qtbot.waitUntil(lambda: panel.proxy.search == "c4", timeout=30_000)
    # c4, c40…c49, plus the ancestors of c41 (c1) and c44 (c39); c1's other children are hidden
    expected = {4, *range(40, 50), 1, 39}
    assert visible_concepts(panel) == expected
    assert panel.index_of(0).isValid() is False and panel.index_of(13).isValid() is False


def test_only_active_here(qtbot, panel, document):
    active = {c.concept for c in document.analysis.concepts}
    assert 1 not in active and 8 not in active and {13, 27, 41} <= active
    qtbot.mouseClick(panel.only_active, Qt.MouseButton.LeftButton)
    assert panel.only_active.isChecked()
    shown = visible_concepts(panel)
    ancestors = {document.catalog.display_parent(c) for c in active} - {-1}
    assert shown == active | ancestors
    assert 1 in shown and 0 not in shown and 8 not in shown  # 1: inactive ancestor of active 13
    assert 39 not in shown and 44 not in shown
    # a new analysis in which 0 (under the shown 1) and 44 (under the hidden 39) fire shows them
    # and 39, without touching the checkbox
    concepts = document.analysis.concepts + (ConceptActivation(0, 0.01, 1, (1,), 1),
                                             ConceptActivation(44, 0.02, 2, (39,), 1))
    document.set_analysis(dataclasses.replace(document.analysis, concepts=concepts))
    assert {0, 39, 44} <= visible_concepts(panel)
    assert panel.view.isExpanded(panel.index_of(39))
    qtbot.mouseClick(panel.only_active, Qt.MouseButton.LeftButton)
    assert len(visible_concepts(panel)) == 64


def test_filtering_away_the_selected_row_keeps_the_document_selection(qtbot, panel, document):
    document.select_concept(0)  # inactive here, under the active 13's parent 1
    assert [i.data(CONCEPT_ROLE) for i in panel.view.selectionModel().selectedRows()] == [0]
    emitted = []
    document.conceptSelected.connect(emitted.append)
    qtbot.mouseClick(panel.only_active, Qt.MouseButton.LeftButton)
    assert document.concept == 0 and not emitted  # Qt would otherwise select a neighbour (13)
    assert not panel.view.selectionModel().selectedRows()
    qtbot.mouseClick(panel.only_active, Qt.MouseButton.LeftButton)
    assert [i.data(CONCEPT_ROLE) for i in panel.view.selectionModel().selectedRows()] == [0]
    # the same when a new analysis makes the selected concept inactive under "only active here"
    qtbot.mouseClick(panel.only_active, Qt.MouseButton.LeftButton)
    document.select_concept(13)
    concepts = tuple(c for c in document.analysis.concepts if c.concept != 13)
    document.set_analysis(dataclasses.replace(document.analysis, concepts=concepts))
    assert document.concept == 13 and not panel.view.selectionModel().selectedRows()


def test_sort_by_activation(qtbot, panel, document):
    panel.sort.setCurrentText("Activation")
    proxy = panel.proxy
    roots = [proxy.index(r, 0).data(CONCEPT_ROLE) for r in range(proxy.rowCount())]
    acts = [document.concept_activation(c) for c in roots]
    assert acts == sorted(acts, reverse=True) and roots[0] == document.analysis.concepts[0].concept
    panel.sort.setCurrentText("Hierarchy")
    assert [proxy.index(r, 0).data(CONCEPT_ROLE) for r in range(proxy.rowCount())] == \
        document.catalog.relations.roots.tolist()


def test_click_row_selects_concept(qtbot, panel, document):
    assert document.concept != 5
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=row_rect_center(panel, 5))
    assert document.concept == 5
    # a child inside an expanded branch
    panel.view.setExpanded(panel.index_of(1), True)
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=row_rect_center(panel, 27))
    assert document.concept == 27


def test_selection_elsewhere_selects_and_reveals_row(qtbot, panel, document):
    assert not panel.view.isExpanded(panel.index_of(39))
    emitted = []
    document.conceptSelected.connect(emitted.append)
    document.select_concept(44)  # a child of the collapsed 39
    assert emitted == [44]  # no echo from the view
    selected = panel.view.selectionModel().selectedRows()
    assert [i.data(CONCEPT_ROLE) for i in selected] == [44]
    assert panel.view.isExpanded(panel.index_of(39))
    assert panel.view.viewport().rect().intersects(panel.view.visualRect(panel.index_of(44)))
    document.select_concept(-1)
    assert not panel.view.selectionModel().selectedRows()


def test_model_change_resets_and_focus_search(qtbot, panel, document):
    catalog = document.catalog
    resets = []
    panel.model.modelReset.connect(lambda: resets.append(1))
    document.set_catalog(None)
    assert resets == [1] and panel.proxy.rowCount() == 0
    document.set_catalog(catalog)
    assert panel.proxy.rowCount() == catalog.relations.roots.size
    panel.focus_search()
    qtbot.waitUntil(panel.search.hasFocus, timeout=30_000)
    assert np.array_equal(panel.model.name_mask("c63"), np.arange(64) == 63)


def test_on_a_narrow_panel_the_name_column_keeps_its_share_of_the_width(qtbot, document):
    from insight_desktop.gui.widgets.concept_tree import COLUMN_WIDTHS, NARROW_INDENT, WIDE_INDENT

    narrow = show_widget(qtbot, ConceptTreePanel(document), 230, 400)  # the left dock on a laptop at 150 %
    header = narrow.view.header()
    qtbot.waitUntil(lambda: header.sectionSize(Column.NAME) >= 0.5 * narrow.view.viewport().width())
    assert header.length() <= narrow.view.viewport().width() + 1  # no sideways scrolling
    assert narrow.view.indentation() == NARROW_INDENT
    narrow.resize(700, 400)
    qtbot.waitUntil(lambda: [header.sectionSize(c) for c, _ in COLUMN_WIDTHS] == [w for _, w in COLUMN_WIDTHS])
    assert narrow.view.indentation() == WIDE_INDENT
