"""WrappingRow: buttons side by side while they fit, on more rows when the panel is narrow, never
overlapping and never wider than the panel."""

from __future__ import annotations

from itertools import combinations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton, QVBoxLayout, QWidget

from insight_desktop.gui.widgets.wrapping_row import WrappingRow
from tests.gui.conftest import show_widget


def test_a_row_wraps_when_narrow_and_unwraps_when_wide(qtbot):
    buttons = [QPushButton(text) for text in ("Add", "Remove", "Undo", "Load…", "Save…")]
    row = WrappingRow(*buttons)
    panel = QWidget()
    layout = QVBoxLayout(panel)
    layout.addWidget(row)
    layout.addStretch(1)
    show_widget(qtbot, panel, 900, 200)
    qtbot.wait(10)
    assert row.rows() == 1
    one_row = row.height()

    widest = max(b.sizeHint().width() for b in buttons)
    assert row.minimumSizeHint().width() == widest  # the panel can be as narrow as one button
    panel.resize(widest + 30, 400)
    qtbot.waitUntil(lambda: row.rows() > 2)
    qtbot.waitUntil(lambda: row.height() >= row.rows() * buttons[0].sizeHint().height())
    assert row.height() > one_row  # the panel gave it the room of its rows
    for a, b in combinations(buttons, 2):
        assert not a.geometry().intersects(b.geometry()), (a.text(), b.text())
    assert all(row.rect().contains(b.geometry()) for b in buttons)

    panel.resize(900, 200)
    qtbot.waitUntil(lambda: row.rows() == 1)
    qtbot.waitUntil(lambda: row.height() == one_row)


def test_a_wrapped_label_takes_the_height_of_its_lines_and_never_covers_the_widget_below(qtbot):
    from PySide6.QtWidgets import QLabel, QScrollArea, QTabWidget

    from insight_desktop.gui.widgets.wrapping_row import WrappedLabel

    label = WrappedLabel("Concept path agrees with the opaque prediction on 88.5 % of pixels")
    below = QLabel("below")
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.addWidget(label)
    layout.addWidget(below)
    layout.addStretch(1)
    tabs = QTabWidget()  # as in the Explanations dock: a scroll area around a tab widget
    tabs.addTab(page, "Segmentation")
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(tabs)
    show_widget(qtbot, scroll, 160, 300)
    line = label.fontMetrics().height()
    qtbot.waitUntil(lambda: label.height() >= 2 * line)  # wrapped onto two lines or more, and given room
    assert label.geometry().bottom() < below.geometry().top()
    assert label.textFormat() == Qt.TextFormat.PlainText
    scroll.resize(900, 300)
    qtbot.waitUntil(lambda: label.height() < 2 * line)  # one line again
