"""The Folder Statistics view on a planted index: a concept's frequency per sub-folder, and the
concepts that tell two sub-folders apart (the planted one first; a click selects it)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from insight_desktop.gui.folder_index.folder_stats import FolderStatsPanel, default_groups, group_choices

from .conftest import show_widget
from .planted_index import plant_index, write_images

HEALTHY, DISEASED = 7, 12   # fire in 8 of 10 healthy / 9 of 10 diseased images
EVERYWHERE, WEAK = 3, 20    # in every image; in 3 healthy and 2 diseased


def planted_folders() -> dict[str, dict[int, float]]:
    fires = {}
    for i in range(10):
        fires[f"healthy/h{i}.png"] = {HEALTHY: 1.0 + i / 10 if i < 8 else 0.0, DISEASED: 0.5 if i < 2 else 0.0,
                                      EVERYWHERE: 0.4, WEAK: 0.3 if i < 3 else 0.0}
        fires[f"diseased/d{i}.png"] = {HEALTHY: 0.6 if i == 0 else 0.0, DISEASED: 2.0 if i < 9 else 0.0,
                                       EVERYWHERE: 0.4, WEAK: 0.3 if i < 2 else 0.0}
    return fires


@pytest.fixture
def planted(tmp_path, tiny_catalog):
    folder = tmp_path / "slides"
    fires = planted_folders()
    write_images(folder, list(fires))
    return plant_index(folder, tiny_catalog.model_identity, tiny_catalog.n_concepts, fires,
                       index=tmp_path / "planted.sqlite")


def test_group_choices_hold_every_sub_folder_and_the_folders_above_them():
    assert group_choices(["", "a/x", "a/y", "b"]) == ("a", "a/x", "a/y", "b")
    assert default_groups(("a", "a/x", "a/y", "b")) == ("a", "b")
    assert default_groups(("a/x",)) == ("", "")


def test_frequency_bars_and_the_most_distinctive_concepts(qtbot, document, planted):
    panel = show_widget(qtbot, FolderStatsPanel(document), 420, 900)
    document.select_concept(HEALTHY)
    panel.set_index(planted)
    qtbot.waitUntil(lambda: panel.snapshot is not None and panel.group_a.count() == 2, timeout=10_000)
    # frequency: one bar per sub-folder (sorted by name), its share of images in percent
    assert panel.freq_chart.values == pytest.approx([10.0, 80.0])
    assert [t for _, t in panel.freq_chart.getAxis("left")._tickLevels[0]] == ["diseased", "healthy"]
    assert "8 of 10 images" in panel.freq_chart.tips[1] and "1 of 10 images" in panel.freq_chart.tips[0]
    assert "fires in 9 of 20 indexed images" in panel.status.text()

    panel.group_a.setCurrentIndex(panel.group_a.findText("healthy"))
    panel.group_b.setCurrentIndex(panel.group_b.findText("diseased"))
    qtbot.waitUntil(lambda: panel.snapshot.group_a == "healthy" and panel.snapshot.group_b == "diseased",
                    timeout=10_000)
    rows = panel.contrast_rows
    # the planted concept first toward A, the other planted one first toward B; not the one everywhere
    c = panel.snapshot.contrast
    assert c.toward_a[0].concept == HEALTHY and c.toward_b[0].concept == DISEASED
    assert rows[0] == HEALTHY and rows[len(c.toward_a)] == DISEASED and EVERYWHERE not in rows
    assert panel.contrast_chart.values[0] > 0 > panel.contrast_chart.values[len(c.toward_a)]
    assert "8 of 10 images of healthy (80%)" in panel.contrast_chart.tips[0]

    document.select_concept(EVERYWHERE)
    qtbot.waitUntil(lambda: panel.snapshot.frequency.concept == EVERYWHERE, timeout=10_000)
    assert panel.freq_chart.values == pytest.approx([100.0, 100.0])
    # a click on the distinctive concept's bar selects it in the app
    qtbot.mouseClick(panel.contrast_chart.viewport(), Qt.MouseButton.LeftButton,
                     pos=panel.contrast_chart.row_center(0))
    assert document.concept == HEALTHY


def test_overlapping_groups_and_no_index_are_said_in_words(qtbot, document, planted):
    panel = show_widget(qtbot, FolderStatsPanel(document), 420, 700)
    panel.set_index(None, "Index this folder first (Ctrl+I): there is no index of 'slides' by this model yet.")
    assert panel.index_button.isVisibleTo(panel) and "Index this folder first" in panel.status.text()
    assert panel.freq_chart.values == [] and panel.contrast_chart.values == []

    document.select_concept(-1)
    panel.set_index(planted)
    qtbot.waitUntil(lambda: panel.snapshot is not None, timeout=10_000)
    assert not panel.index_button.isVisibleTo(panel)
    assert "Select a concept" in panel.status.text() and panel.freq_chart.values == []
    panel.group_b.setCurrentIndex(panel.group_b.findText(panel.group_a.currentText()))
    qtbot.waitUntil(lambda: "do not contain one another" in panel.contrast_note.text(), timeout=10_000)
    assert panel.contrast_chart.values == []


def test_the_window_action_shows_the_view_and_asks_for_an_index(qtbot, window, tmp_path, tiny_bundle):
    folder = tmp_path / "slides"
    write_images(folder, ["a.png", "b.png"])
    window.load_model(tiny_bundle)
    qtbot.waitUntil(lambda: window.document.catalog is not None, timeout=60_000)
    window.open_folder(folder)
    qtbot.waitUntil(lambda: window.document.image_path is not None, timeout=30_000)
    keys = [a.shortcut().toString() for a in window.actions.all if not a.shortcut().isEmpty()]
    assert keys.count(window.actions.folder_stats.shortcut().toString()) == 1   # Ctrl+Shift+F is its own
    window.actions.folder_stats.trigger()
    panel = window.folder_stats.panel
    assert window.folder_stats.dock.isVisible()
    assert "Index this folder first" in panel.status.text() and panel.index_button.isVisible()

    fires = {"a.png": {5: 1.0}, "b.png": {}}
    plant_index(folder, window.document.catalog.model_identity, window.document.catalog.n_concepts, fires)
    window.document.select_concept(5)
    qtbot.waitUntil(lambda: panel.snapshot is not None and panel.snapshot.frequency is not None, timeout=10_000)
    assert panel.freq_chart.values == pytest.approx([50.0]) and not panel.index_button.isVisible()
    assert "two sub-folders" in panel.contrast_note.text()
