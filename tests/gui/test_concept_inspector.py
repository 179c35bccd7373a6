"""The concept inspector: what it shows for the selected concept, and its parent/child links."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import QBuffer, QIODevice, Qt
from PySide6.QtGui import QColor, QImage

from insight_desktop.core.concepts.names import NameBook
from insight_desktop.core.concepts.naming import ConceptNames, NameCandidate
from insight_desktop.gui.widgets.concept_inspector import EMPTY_TEXT, MAX_STRIP_HEIGHT, NO_THUMBNAILS, ConceptInspector
from insight_desktop.gui.widgets.qt_concept_tree_model import CONCEPT_ROLE
from tests.gui.conftest import show_widget


@pytest.fixture
def inspector(qtbot, document):
    return show_widget(qtbot, ConceptInspector(document), 360, 700)


def link_texts(lst) -> list[str]:
    return [lst.item(r).text() for r in range(lst.count())]


def click_link(qtbot, lst, concept: int) -> None:
    item = next(lst.item(r) for r in range(lst.count()) if lst.item(r).data(CONCEPT_ROLE) == concept)
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=lst.visualItemRect(item).center())


def jpeg(width: int, height: int) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(200, 40, 40))
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    assert image.save(buf, "JPG")
    return bytes(buf.data())


def test_empty_state(inspector, document):
    document.select_concept(-1)
    assert inspector.stack.currentWidget() is inspector.empty and inspector.empty.text() == EMPTY_TEXT
    document.select_concept(3)
    assert inspector.stack.currentIndex() == 1 and inspector.name.text() == "c3"


def test_shows_facts_parents_and_children(qtbot, inspector, document):
    catalog = document.catalog
    document.select_concept(0)
    assert inspector.name.text() == "c0"
    facts = inspector.facts.text()
    assert "#0" in facts and f"level {catalog.level(0)}" in facts and "not active in this image" in facts
    assert [inspector.parents.item(r).data(CONCEPT_ROLE) for r in range(inspector.parents.count())] == \
        [p for p, _ in catalog.parents(0)]
    assert link_texts(inspector.parents)[0].startswith("c1") and "(1.00)" in link_texts(inspector.parents)[0]
    assert inspector.children.isHidden() and not inspector.no_children.isHidden()  # c0 is a leaf
    assert inspector.thumbnails.text() == NO_THUMBNAILS and not inspector.thumbnails.has_picture()
    assert inspector.candidates.isHidden() and not inspector.no_candidates.isHidden()

    click_link(qtbot, inspector.parents, 1)
    assert document.concept == 1 and inspector.name.text() == "c1"
    assert link_texts(inspector.children) == ["c0", "c13", "c27", "c41"]
    assert inspector.parents.isHidden() and not inspector.no_parents.isHidden()  # c1 is a root
    click_link(qtbot, inspector.children, 27)
    assert document.concept == 27 and inspector.name.text() == "c27"


def test_activation_here(inspector, document):
    top = document.analysis.concepts[0]
    document.select_concept(top.concept)
    assert f"activation here {top.activation:.3g}" in inspector.facts.text()
    document.set_analysis(None)
    assert "no image analysed" in inspector.facts.text()


def test_candidates_and_thumbnails(qtbot, document):
    catalog = document.catalog
    candidates = [()] * catalog.n_concepts
    candidates[5] = (NameCandidate("tabby cat", "object", "everyday", 0.31),
                     NameCandidate("fur", "texture", "everyday", 0.27))
    names = ConceptNames(names=catalog.names.all(), candidates=tuple(candidates), method="vanilla")
    document.set_catalog(dataclasses.replace(catalog, names=NameBook(names), thumbnails={5: jpeg(512, 64)}))
    w = show_widget(qtbot, ConceptInspector(document), 360, 700)
    document.select_concept(5)
    table = w.candidates
    assert not table.isHidden() and table.rowCount() == 2
    assert [table.item(r, 0).text() for r in range(2)] == ["tabby cat", "fur"]
    assert table.item(0, 3).text() == "0.310"
    strip = w.thumbnails
    assert strip.has_picture() and strip.text() == ""
    pm = strip.pixmap()
    assert 0 < pm.height() <= MAX_STRIP_HEIGHT and pm.width() <= strip.width()
    assert pm.width() == pytest.approx(pm.height() * 8, rel=0.05)  # the strip keeps its 8:1 shape
    document.select_concept(6)  # no picture for 6
    assert not strip.has_picture() and strip.text() == NO_THUMBNAILS


def test_the_template_column_and_the_parents_are_explained(qtbot, inspector, document):
    table = inspector.candidates
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == ["Candidate", "Template", "Vocabulary", "Score"]  # "Family" read as a part of speech
    assert "not the word's part of speech" in table.horizontalHeaderItem(1).toolTip()
    document.select_concept(0)
    heading = inspector.parents_heading
    assert "D̂" not in heading.text() and "Parents" in heading.text()
    assert "share of this concept's activation" in heading.toolTip()
    assert "share of this concept's activation" in inspector.parents.toolTip()


def test_tab_leaves_the_candidate_names_table(qtbot, document):
    from PySide6.QtWidgets import QApplication, QLineEdit, QVBoxLayout, QWidget

    catalog = document.catalog
    candidates = [()] * catalog.n_concepts
    candidates[5] = tuple(NameCandidate(f"word{i}", "noun", "everyday", 0.3 - i / 100) for i in range(4))
    names = ConceptNames(names=catalog.names.all(), candidates=tuple(candidates), method="vanilla")
    document.set_catalog(dataclasses.replace(catalog, names=NameBook(names)))
    host = QWidget()
    layout = QVBoxLayout(host)
    inspector = ConceptInspector(document)
    after = QLineEdit()  # whatever comes next in the window
    layout.addWidget(inspector)
    layout.addWidget(after)
    show_widget(qtbot, host, 360, 800)
    host.activateWindow()
    qtbot.waitUntil(lambda: host.isActiveWindow(), timeout=5000)
    document.select_concept(5)
    table = inspector.candidates
    table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is table, timeout=5000)
    for _ in range(3):  # a trap would keep it in the table's cells however often Tab is pressed
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        if QApplication.focusWidget() is not table:
            break
    assert QApplication.focusWidget() is not table
