"""Names are text, never markup: a concept (or class, or file) named like HTML is shown literally
everywhere it appears, and no tooltip or label loads the picture it points at."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QInputDialog, QLabel, QMessageBox

from insight_desktop.gui.dialogs import show_error
from insight_desktop.gui.widgets.classification_panel import ClassificationPanel
from insight_desktop.gui.widgets.concept_inspector import ConceptInspector
from insight_desktop.gui.widgets.contribution_chart import ContributionChart
from insight_desktop.gui.widgets.job_status import JobStatus
from insight_desktop.gui.widgets.plain_text import escaped_tooltip
from insight_desktop.gui.widgets.qt_concept_tree_model import QtConceptTreeModel
from insight_desktop.gui.widgets.segmentation_panel import SegmentationPanel
from tests.gui.conftest import show_widget

EVIL = '<b>x</b><img src="/tmp/y.png">'


def shown_as(rich_or_plain: str) -> str:
    """The characters a tooltip/label shows for ``rich_or_plain`` (Qt's own guess decides, as on screen)."""
    if not Qt.mightBeRichText(rich_or_plain):
        return rich_or_plain
    doc = QTextDocument()
    doc.setHtml(rich_or_plain)
    return doc.toPlainText()


@pytest.fixture
def evil_concept(document):
    """The selected concept renamed to EVIL (the catalog is shared by the session: renamed back after)."""
    j = document.concept
    document.rename_concept(j, EVIL)
    yield j
    document.rename_concept(j, None)


def test_escaped_tooltip_shows_markup_literally_and_leaves_plain_text_alone():
    assert shown_as(escaped_tooltip(f"{EVIL}\nline two")) == f"{EVIL}\nline two"
    assert escaped_tooltip("cats (#4, level 1)") == "cats (#4, level 1)"
    assert "<img" not in escaped_tooltip(EVIL)


def test_the_inspector_shows_a_html_name_as_text(qtbot, document, evil_concept, monkeypatch):
    inspector = show_widget(qtbot, ConceptInspector(document), 360, 700)
    assert inspector.name.text() == EVIL
    assert inspector.name.textFormat() == Qt.TextFormat.PlainText
    assert inspector.facts.textFormat() == Qt.TextFormat.PlainText
    # The rename prompt quotes the model's name: a model name of markup is shown as text too.
    names = document.catalog.names
    monkeypatch.setattr(names, "model_name", lambda j: EVIL)
    inspector.ask_rename()
    dialog = inspector.findChild(QInputDialog)
    prompt = next(label for label in dialog.findChildren(QLabel) if EVIL in label.text())
    assert prompt.textFormat() == Qt.TextFormat.PlainText


def test_the_tree_tooltip_escapes_the_name(document, evil_concept):
    model = QtConceptTreeModel(document)
    tip = model.data(model.index_of(evil_concept), Qt.ItemDataRole.ToolTipRole)
    assert shown_as(tip).startswith(EVIL) and "<img" not in tip
    assert model.data(model.index_of(evil_concept), Qt.ItemDataRole.DisplayRole) == EVIL  # views draw plain text


def test_the_chart_tooltip_escapes_the_name():
    tip = ContributionChart.tooltip_text(EVIL, 0.5, 3, True)
    assert shown_as(tip) == f"{EVIL} (concept 3): +0.5\nclick to show this concept"
    assert "<img" not in tip


def test_class_names_in_the_classification_summary_are_escaped(qtbot, document):
    a = document.analysis
    c = a.classification
    evil_classes = tuple(EVIL if i == c.predicted else n for i, n in enumerate(c.class_names))
    document.set_analysis(dataclasses.replace(a, classification=dataclasses.replace(c, class_names=evil_classes)))
    panel = show_widget(qtbot, ClassificationPanel(document), 420, 700)
    assert EVIL in shown_as(panel.summary.text()) and "<img" not in panel.summary.text()
    assert panel.summary.textFormat() == Qt.TextFormat.RichText  # the bold is ours; the name is escaped


def test_messages_quoting_names_are_plain_text(qtbot, document):
    box = show_error(None, "Could not open", f"'{EVIL}.png' cannot be read")
    qtbot.addWidget(box)
    assert box.textFormat() == Qt.TextFormat.PlainText
    assert isinstance(box, QMessageBox)
    box.close()
    status = JobStatus()
    qtbot.addWidget(status)
    status.set_busy(f"Loading model {EVIL}…", -1.0)
    assert status.text.textFormat() == Qt.TextFormat.PlainText and status.text.text() == f"Loading model {EVIL}…"
    panel = SegmentationPanel(document)
    qtbot.addWidget(panel)
    assert panel.notice.textFormat() == Qt.TextFormat.PlainText
