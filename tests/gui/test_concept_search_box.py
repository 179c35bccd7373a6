"""The concept tree's search box: candidate names and ids at once, text hits from the worker.

The tiny catalog (names c0…c63; 1 → {0, 13, 27, 41}, 39 → 44) gets planted candidate names:
concept 41 has "space shuttle". A fake worker answers text queries when the test says so,
from planted concept embeddings where concept 27 lies along the text vector of "rocket launch".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QObject, Qt, Signal

from insight_desktop.core.concepts.names import NameBook
from insight_desktop.core.concepts.naming import ConceptNames, NameCandidate
from insight_desktop.core.concepts.search import ConceptSearcher, QueryEncoder, TextMatches, match_text
from insight_desktop.gui.widgets.concept_tree import ConceptTreePanel
from insight_desktop.gui.widgets.qt_concept_tree_model import CONCEPT_ROLE
from tests.core.test_concept_search import D, FakeEncoder, direction, unit
from tests.gui.conftest import show_widget
from tests.gui.test_concept_tree import visible_concepts

M = 64


class FakeWorker(QObject):
    """WorkerClient's search face: records queries; :meth:`reply` answers the oldest one."""

    textMatchesReady = Signal(object)

    def __init__(self):
        super().__init__()
        self.asked: list[str] = []
        rng = np.random.default_rng(3)
        self.embeddings = unit(rng.standard_normal((M, D))).astype(np.float32)
        self.embeddings[27] = unit(direction("rocket launch") + 0.1 * unit(rng.standard_normal(D)))
        self.encoder = QueryEncoder(FakeEncoder(), cache_dir=False)

    def search_text(self, query: str) -> int:
        self.asked.append(query)
        return len(self.asked)

    def reply(self) -> TextMatches:
        matches = match_text(self.asked.pop(0), self.embeddings, self.encoder, threshold=0.5)
        self.textMatchesReady.emit(matches)
        return matches


@pytest.fixture
def planted(document):
    catalog = document.catalog
    names = tuple(f"c{i}" for i in range(M))
    cands = [(NameCandidate(n, "noun", "v", 0.5),) for n in names]
    cands[41] = (NameCandidate("c41", "noun", "v", 0.5), NameCandidate("space shuttle", "noun", "v", 0.4))
    document.set_catalog(dataclasses.replace(catalog, names=NameBook(ConceptNames(names, tuple(cands), "hierarchy"))))
    return document


@pytest.fixture
def panel(qtbot, planted):
    return show_widget(qtbot, ConceptTreePanel(planted), 420, 600)


def search(qtbot, panel, text: str) -> None:
    panel.search.clear()
    panel.search.setFocus()
    qtbot.keyClicks(panel.search, text)
    qtbot.waitUntil(lambda: panel.proxy.search == text.strip(), timeout=30_000)


def test_a_candidate_name_filters_the_tree_to_its_concept(qtbot, panel, planted):
    search(qtbot, panel, "Space Shuttle")
    assert visible_concepts(panel) == {1, 41}  # the hit and its ancestor
    assert panel.view.isExpanded(panel.index_of(1))
    assert panel.search_status.text() == "1 concept · best #41 c41 — candidate name: space shuttle"
    tip = panel.index_of(41).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Found by candidate name: space shuttle\nc41")
    assert "Found by" not in (panel.index_of(1).data(Qt.ItemDataRole.ToolTipRole) or "")  # only context
    qtbot.keyClick(panel.search, Qt.Key.Key_Return)
    assert planted.concept == 41
    panel.search.clear()
    qtbot.waitUntil(lambda: panel.proxy.search == "", timeout=30_000)
    assert len(visible_concepts(panel)) == M and panel.search_status.isHidden()


def test_an_id_finds_its_concept(qtbot, panel, planted):
    search(qtbot, panel, "#44")
    assert visible_concepts(panel) == {39, 44}
    assert panel.search_status.text() == "1 concept · best #44 c44 — id"
    qtbot.keyClick(panel.search, Qt.Key.Key_Return)
    assert planted.concept == 44
    selected = panel.view.selectionModel().selectedRows()
    assert [i.data(CONCEPT_ROLE) for i in selected] == [44]
    search(qtbot, panel, "7")  # the id, then names containing "7" (c7, c17, …, c57, c70… do not exist)
    assert panel.searcher.result.concepts[0] == 7 and {7, 17, 27, 37, 47, 57} <= visible_concepts(panel)
    search(qtbot, panel, "730")
    assert visible_concepts(panel) == set()
    assert panel.search_status.text() == "There is no concept #730: this model's concepts are #0–#63"


def test_an_empty_result_shows_why(qtbot, panel):
    search(qtbot, panel, "xyzzy")
    assert visible_concepts(panel) == set()
    assert panel.search_status.isVisible()
    assert panel.search_status.text() == "No concept name contains 'xyzzy' and the text tower is not loaded"


def test_text_hits_arrive_from_the_worker_and_extend_the_filter(qtbot, panel, planted):
    worker = FakeWorker()
    panel.searcher.connect_worker(worker)
    search(qtbot, panel, "rocket launch")
    assert visible_concepts(panel) == set()  # no name has it; the text part is on its way
    assert panel.search_status.text() == ("No concept name contains 'rocket launch'; comparing it with the "
                                          "concepts as text…")
    qtbot.waitUntil(lambda: worker.asked == ["rocket launch"], timeout=30_000)  # after the pause, once
    matches = worker.reply()
    assert [h.concept for h in matches.hits] == [27]
    assert visible_concepts(panel) == {1, 27}
    why = matches.hits[0].why
    assert why.startswith("text similarity 0.9") and panel.search_status.text() == f"1 concept · best #27 c27 — {why}"
    qtbot.keyClick(panel.search, Qt.Key.Key_Return)
    assert planted.concept == 27

    # names show at once; the text answer to a query typed over since is dropped
    search(qtbot, panel, "c4")
    qtbot.waitUntil(lambda: worker.asked == ["c4"], timeout=30_000)
    assert visible_concepts(panel) == {4, *range(40, 50), 1, 39}
    assert panel.search_status.text().endswith("· comparing as text…")
    search(qtbot, panel, "xyzzy")
    qtbot.waitUntil(lambda: worker.asked == ["c4", "xyzzy"], timeout=30_000)
    worker.reply()  # the answer about "c4"
    assert visible_concepts(panel) == set() and panel.searcher.waiting
    empty = worker.reply()
    assert panel.search_status.text() == (f"No concept name contains 'xyzzy' and no concept is similar enough "
                                          f"to it (best {empty.best:.2f} < 0.50)")


def test_the_worker_compares_text_with_the_models_concepts(qtbot, tiny_bundle, tiny_analyzer):
    from insight_desktop.gui.worker import WorkerClient

    client = WorkerClient()
    try:
        with qtbot.waitSignal(client.textMatchesReady, timeout=30_000) as got:
            client.search_text("cat")
        assert got.args[0].reason == "no concept model is loaded"
        with qtbot.waitSignal(client.modelReady, timeout=60_000):
            client.load_model(tiny_bundle, "cpu")
        with qtbot.waitSignal(client.textMatchesReady, timeout=60_000) as got:
            client.search_text("a cat")
        matches = got.args[0]
        expected = ConceptSearcher(tiny_analyzer.model, tiny_analyzer.backbone, cache_dir=False).text("a cat")
        assert matches.reason == "" and matches.query == "a cat"
        assert matches.best == pytest.approx(expected.best, abs=1e-5) and matches.threshold == expected.threshold
        assert [h.concept for h in matches.hits] == [h.concept for h in expected.hits]
    finally:
        client.shutdown(5_000)


def test_the_windows_search_box_compares_text_on_its_worker(qtbot, window, tiny_bundle):
    with qtbot.waitSignal(window.worker.modelReady, timeout=60_000):
        window.load_model(tiny_bundle)
    qtbot.waitUntil(lambda: window.document.catalog is not None, timeout=30_000)
    tree = window.tree
    tree.search.setFocus()
    qtbot.keyClicks(tree.search, "a cat")
    qtbot.waitUntil(lambda: tree.searcher.result.query == "a cat" and tree.searcher.result.text_searched,
                    timeout=60_000)
    result = tree.searcher.result
    assert tree.proxy.search == "a cat" and "comparing" not in tree.search_status.text()
    assert all(h.kind.name == "TEXT" for h in result.hits) and (result.hits or "similar enough" in result.reason)
