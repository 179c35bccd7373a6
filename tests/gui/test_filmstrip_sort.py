"""The filmstrip sorted and filtered by the selected concept's activation in the folder index;
name order, with a message, when there is no index."""

from __future__ import annotations

import math

import pytest
from PySide6.QtWidgets import QApplication

from insight_desktop.gui.folder_index.filmstrip_sort import BY_ACTIVATION, BY_NAME, activations_for, arrange

from .planted_index import plant_index, write_images

NAMES = [f"img{i}.png" for i in range(1, 7)]
#: concept 5 peaks in img3 > img1 > img5; concept 7 in img3 > img4
PLANTED = {"img1.png": {5: 0.5}, "img2.png": {}, "img3.png": {5: 0.9, 7: 1.0}, "img4.png": {7: 0.3},
           "img5.png": {5: 0.2}, "img6.png": {}}


def test_arrange_sorts_by_activation_with_ties_and_unindexed_images_in_name_order():
    acts = [0.5, 0.0, 0.9, math.nan, 0.2, 0.0]
    assert arrange(acts, BY_ACTIVATION, False).order == (2, 0, 4, 1, 5, 3)
    assert "1 not indexed yet (last)" in arrange(acts, BY_ACTIVATION, False).message
    assert arrange(acts, BY_NAME, True, "'c5'").order == (0, 2, 4)
    assert arrange(acts, BY_ACTIVATION, True, "'c5'").order == (2, 0, 4)
    assert arrange(acts, BY_ACTIVATION, True, "'c5'").message.startswith("'c5' fires in 3 of 6 images")
    none = arrange([0.0, math.nan], BY_NAME, True, "'c5'")
    assert none.order == (0, 1) and "fires in none of these images" in none.message


def test_activations_are_looked_up_by_path_relative_to_the_indexed_folder(tmp_path):
    root = tmp_path / "root"
    paths = [root / "a" / "x.png", root / "y.png", tmp_path / "elsewhere.png"]
    acts = activations_for(paths, root, {"a/x.png": 0.7, "y.png": 0.0})
    assert acts[:2] == [0.7, 0.0] and math.isnan(acts[2])


@pytest.fixture
def browsing(qtbot, window, tmp_path, tiny_bundle):
    """The window with the tiny model, browsing a folder of six images (img1 shown)."""
    folder = tmp_path / "photos"
    write_images(folder, NAMES)
    window.load_model(tiny_bundle)
    qtbot.waitUntil(lambda: window.document.catalog is not None, timeout=60_000)
    window.open_folder(folder)
    qtbot.waitUntil(lambda: window.document.image_path is not None and not window.loader.is_loading(),
                    timeout=30_000)
    return window, folder


def names(window) -> list[str]:
    return [p.name for p in window.images]


def strip_names(window) -> list[str]:
    return [p.name for p in window.filmstrip.images()]


def test_the_strip_sorts_and_filters_by_the_selected_concept(qtbot, browsing):
    window, folder = browsing
    doc, controls = window.document, window.folder_stats.controls
    plant_index(folder, doc.catalog.model_identity, doc.catalog.n_concepts, PLANTED)
    doc.select_concept(5)
    controls.sort.setCurrentIndex(controls.sort.findData(BY_ACTIVATION))
    expected = ["img3.png", "img1.png", "img5.png", "img2.png", "img4.png", "img6.png"]
    qtbot.waitUntil(lambda: names(window) == expected, timeout=10_000)
    # the strip, the position and PgDown follow the sorted list; the image shown stays shown
    assert strip_names(window) == expected
    assert doc.image_path.name == "img1.png" and window.index == 1 and window.position.text() == "2 / 6"
    assert window.filmstrip.current_index() == 1

    controls.only_firing.setChecked(True)
    qtbot.waitUntil(lambda: names(window) == ["img3.png", "img1.png", "img5.png"], timeout=10_000)
    assert "fires in 3 of 6 images" in controls.message.text()

    doc.select_concept(7)   # img1 does not show it: the first image where it fires is opened
    qtbot.waitUntil(lambda: names(window) == ["img3.png", "img4.png"], timeout=10_000)
    qtbot.waitUntil(lambda: doc.image_path.name == "img3.png", timeout=30_000)
    assert doc.concept == 7 and strip_names(window) == ["img3.png", "img4.png"]

    controls.only_firing.setChecked(False)
    controls.sort.setCurrentIndex(controls.sort.findData(BY_NAME))
    qtbot.waitUntil(lambda: names(window) == NAMES, timeout=10_000)
    assert doc.image_path.name == "img3.png" and window.index == 2 and controls.message.text() == ""


def test_a_later_concept_wins_over_an_earlier_query(qtbot, browsing):
    window, folder = browsing
    doc, controls = window.document, window.folder_stats.controls
    plant_index(folder, doc.catalog.model_identity, doc.catalog.n_concepts, PLANTED)
    controls.sort.setCurrentIndex(controls.sort.findData(BY_ACTIVATION))
    doc.select_concept(5)
    doc.select_concept(7)   # before concept 5's answer came back: it is dropped
    expected = ["img3.png", "img4.png", "img1.png", "img2.png", "img5.png", "img6.png"]
    qtbot.waitUntil(lambda: names(window) == expected, timeout=10_000)
    window.folder_stats.sorter.pool.wait()
    QApplication.processEvents()   # whatever was still on its way has arrived: the order stays concept 7's
    assert names(window) == expected


def test_without_an_index_the_strip_keeps_name_order_and_says_why(qtbot, browsing):
    window, _folder = browsing
    controls = window.folder_stats.controls
    window.document.select_concept(5)
    controls.sort.setCurrentIndex(controls.sort.findData(BY_ACTIVATION))
    controls.only_firing.setChecked(True)
    qtbot.waitUntil(lambda: "Index this folder first" in controls.message.text(), timeout=10_000)
    assert names(window) == NAMES and strip_names(window) == NAMES
    assert "Ctrl+I" in controls.message.text()


def test_a_sub_folder_is_sorted_by_the_index_of_the_folder_above_it(qtbot, window, tmp_path, tiny_bundle):
    root = tmp_path / "slides"
    write_images(root, [f"sub/{n}" for n in NAMES] + ["other/x.png"])
    window.load_model(tiny_bundle)
    qtbot.waitUntil(lambda: window.document.catalog is not None, timeout=60_000)
    catalog = window.document.catalog
    plant_index(root, catalog.model_identity, catalog.n_concepts,
                {f"sub/{n}": fires for n, fires in PLANTED.items()} | {"other/x.png": {5: 5.0}})
    window.open_folder(root / "sub")
    qtbot.waitUntil(lambda: window.document.image_path is not None and not window.loader.is_loading(),
                    timeout=30_000)
    window.document.select_concept(5)
    controls = window.folder_stats.controls
    controls.only_firing.setChecked(True)
    qtbot.waitUntil(lambda: names(window) == ["img1.png", "img3.png", "img5.png"], timeout=10_000)
    assert controls.message.text() == "'c5' fires in 3 of 6 images"
