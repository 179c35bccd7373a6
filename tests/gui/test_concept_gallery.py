"""The concept gallery on a planted folder index: the planted images come first, tiles show the
patch, a click opens that image with the concept's heatmap, and an empty gallery says why."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from insight_desktop.core.index import ImageEntry, IndexStore, index_path
from insight_desktop.core.tasks.codes import PatchCodes
from insight_desktop.gui.folder_index.gallery import TILE, cut_tile
from tests.gui.conftest import wait_for_analysis

J, OTHER = 5, 9
#: planted: the largest activation of concept J in each image (None: J does not fire there)
PLANTED = {"a.png": 0.2, "b.png": 0.9, "c.png": 0.5, "d.png": None}


def codes_with(value: float | None, n_concepts: int) -> PatchCodes:
    """A 2 × 2 grid: J fires with ``value`` in patch (1, 0) and half as much in (0, 0); OTHER everywhere."""
    rows = []
    for q in range(4):
        row = [(OTHER, 0.3)]
        if value is not None and q in (0, 2):
            row.insert(0, (J, value if q == 2 else value / 2))
        rows.append(row)
    indptr = np.cumsum([0] + [len(r) for r in rows])
    ids = [c for r in rows for c, _ in r]
    values = [v for r in rows for _, v in r]
    return PatchCodes((2, 2), n_concepts, indptr, ids, values)


@pytest.fixture
def planted(tmp_path, tiny_catalog):
    """A folder of four 64 × 64 images and its index by the tiny model, with J planted."""
    root = tmp_path / "folder"
    root.mkdir()
    for i, name in enumerate(PLANTED):
        rgb = np.full((64, 64, 3), 40 * i, np.uint8)
        rgb[32:, :32] = (250, 30, 30)   # patch (1, 0): where J fires
        Image.fromarray(rgb).save(root / name)
    path = index_path(root, tiny_catalog.model_identity)
    with IndexStore(path, model_identity=tiny_catalog.model_identity, n_concepts=tiny_catalog.n_concepts,
                    folder=root) as store:
        for name, value in PLANTED.items():
            store.put_image(ImageEntry.of(root / name, root), codes_with(value, tiny_catalog.n_concepts),
                            image_size=(64, 64), analysis_size=(64, 64), patch_size=32, fvu=0.1)
    return root


def browse(qtbot, window, tiny_bundle, folder):
    window.start([folder], tiny_bundle)
    wait_for_analysis(qtbot, window)
    window.actions.concept_gallery.trigger()
    assert window.folder_index.dock.isVisible()
    return window.folder_index


def tiles_ready(ui) -> bool:
    m = ui.model
    return not m.busy and bool(m.tiles) and len(m.pictures) == len(m.tiles)


def test_gallery_shows_the_planted_images_first_and_a_click_opens_one(qtbot, window, tiny_bundle, planted):
    ui = browse(qtbot, window, tiny_bundle, planted)
    window.document.select_concept(J)
    qtbot.waitUntil(lambda: tiles_ready(ui), timeout=30_000)
    assert ui.gallery.names() == ["b.png", "c.png", "a.png"]
    assert [round(t.value, 3) for t in ui.model.tiles] == [0.9, 0.5, 0.2]
    assert [(t.row, t.col) for t in ui.model.tiles] == [(1, 0)] * 3
    first = ui.gallery.list.item(0)
    assert first.text() == "b.png\n0.9" and first.icon().actualSize(ui.gallery.list.iconSize()).width() == TILE
    panels = [a.menu() for a in window.actions.menus["View"].actions() if a.menu() is not None][0]
    assert ui.dock.toggleViewAction() in panels.actions()
    assert "(#5)" in ui.gallery.heading.text() and "of 4 indexed" in ui.gallery.heading.text()

    list_view = ui.gallery.list
    item = list_view.item(1)
    qtbot.mouseClick(list_view.viewport(), Qt.MouseButton.LeftButton, pos=list_view.visualItemRect(item).center())
    qtbot.waitUntil(lambda: window.document.image_path is not None and window.document.image_path.name == "c.png",
                    timeout=30_000)
    wait_for_analysis(qtbot, window)
    assert window.document.concept == J and window.document.overlay.show_heatmap
    assert window.images == sorted(planted.glob("*.png")) and window.index == 2   # within its folder's list


def test_tile_is_the_patch_with_context_and_its_box(planted):
    tile = cut_tile(planted / "b.png", (32.0, 0.0, 64.0, 32.0), size=TILE)
    assert tile.shape == (TILE, TILE, 3)
    # the whole 64-px image is the context (4 patches of 32 px exceed it): the red patch fills the
    # lower-left quarter, inside the drawn outline
    inner = tile[TILE // 2 + 10:TILE - 10, 10:TILE // 2 - 10]
    assert (inner[..., 0] > 200).all() and (inner[..., 1] < 80).all()
    assert (tile[TILE // 4, 3 * TILE // 4] == 40).all()   # b.png's grey elsewhere


def test_empty_gallery_says_why(qtbot, window, tiny_bundle, planted, tmp_path):
    ui = browse(qtbot, window, tiny_bundle, planted)
    window.document.select_concept(OTHER + 1)   # never fires in the planted index
    qtbot.waitUntil(lambda: not ui.model.busy and ui.model.info is not None, timeout=30_000)
    assert ui.gallery.list.count() == 0
    assert "fires in none of the 4 images indexed" in ui.gallery.message.text()

    bare = tmp_path / "bare"
    bare.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bare / "x.png")
    window.open_folder(bare)
    qtbot.waitUntil(lambda: window.document.image_path is not None and window.document.image_path.parent == bare,
                    timeout=30_000)
    qtbot.waitUntil(lambda: "Index this folder first" in ui.gallery.message.text(), timeout=10_000)
    button = ui.gallery.index_button
    assert button.isVisible() and button.defaultAction() is window.actions.index_folder
    assert ui.gallery.list.count() == 0


def test_review_panel_shows_the_folders_best_patches(qtbot, window, tiny_bundle, planted):
    ui = browse(qtbot, window, tiny_bundle, planted)
    window.actions.review_mode.setChecked(True)
    window.document.select_concept(J)
    qtbot.waitUntil(lambda: not ui.review_model.busy and len(ui.review_model.pictures) == 3, timeout=30_000)
    assert ui.review_gallery.isVisible() and ui.review_gallery.names() == ["b.png", "c.png", "a.png"]
