"""Moving through a folder: unreadable files are marked and skipped, never a modal stop; the
title and the "n / N" position follow the image shown."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox


@pytest.fixture
def photos(tmp_path):
    """a_broken.jpg sorts first; b.png, c_broken.jpg (mid-folder), d.png."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not this one either")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "b.png")
    Image.new("RGB", (48, 64), (30, 30, 200)).save(folder / "d.png")
    return folder


def no_modal_box(window) -> bool:
    return QApplication.activeModalWidget() is None and not [
        b for b in window.findChildren(QMessageBox) if b.isVisible()]


def shown(window) -> str:
    return window.document.image_path.name


def settle(qtbot, window) -> None:
    """Images are decoded off the GUI thread: wait until the one asked for is shown (or refused)."""
    qtbot.waitUntil(lambda: not window.loader.is_loading(), timeout=30_000)


def test_a_folder_opens_on_its_first_readable_image_and_names_the_unreadable_one(qtbot, window, photos):
    window.open_folder(photos)
    settle(qtbot, window)
    assert shown(window) == "b.png" and window.document.image is not None
    assert no_modal_box(window)
    assert "a_broken.jpg" in window.statusBar().currentMessage()
    assert window.filmstrip.thumbnail_state(0) == "broken"  # marked at once, not when its thumbnail fails
    assert "a_broken.jpg" in window.filmstrip.list.item(0).toolTip()
    assert window.filmstrip.current_index() == 1
    assert window.position.isVisible() and window.position.text() == "2 / 4"


def test_page_down_and_up_step_over_unreadable_files_both_ways(qtbot, window, photos):
    window.open_folder(photos)
    settle(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    assert shown(window) == "d.png" and window.position.text() == "4 / 4"
    assert no_modal_box(window)
    assert "c_broken.jpg" in window.statusBar().currentMessage()
    assert window.filmstrip.thumbnail_state(2) == "broken" and window.filmstrip.current_index() == 3

    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    settle(qtbot, window)
    assert shown(window) == "b.png" and window.position.text() == "2 / 4"
    qtbot.keyClick(window, Qt.Key.Key_PageUp)  # only an unreadable file before b: stay, and say why
    settle(qtbot, window)
    assert shown(window) == "b.png" and window.filmstrip.current_index() == 1
    assert "a_broken.jpg" in window.statusBar().currentMessage()
    assert no_modal_box(window)


def test_a_click_on_an_unreadable_thumbnail_keeps_the_image_and_says_why(qtbot, window, photos):
    window.open_folder(photos)
    settle(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    window.statusBar().clearMessage()
    strip = window.filmstrip.list
    rect = strip.visualRect(strip.model().index(0, 0))
    qtbot.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    settle(qtbot, window)
    assert shown(window) == "d.png" and window.filmstrip.current_index() == 3
    assert "a_broken.jpg" in window.statusBar().currentMessage() and no_modal_box(window)


def test_a_folder_of_only_unreadable_files_says_so_once(qtbot, window, photos):
    for name in ("b.png", "d.png"):
        (photos / name).unlink()
    window.open_folder(photos)
    settle(qtbot, window)
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1 and "2 images" in boxes[0].text()
    assert window.document.image is None


def test_the_title_names_the_image_and_model_and_the_app_once(qtbot, window, photos, tiny_bundle):
    window.load_model(tiny_bundle)
    qtbot.waitUntil(lambda: window.document.catalog is not None, timeout=60_000)
    assert window.windowTitle() == f"{tiny_bundle.name} — Insight Desktop"  # no image yet
    window.open_folder(photos)
    settle(qtbot, window)
    assert window.windowTitle() == f"b.png — {tiny_bundle.name} — Insight Desktop"
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    assert window.windowTitle() == f"d.png — {tiny_bundle.name} — Insight Desktop"
    # ends with the app name: Qt appends the application display name to a title that does not
    assert window.windowTitle().count("Insight Desktop") == 1


def test_opening_one_image_of_the_folder_being_browsed_keeps_the_folder(qtbot, window, photos):
    window.open_folder(photos)
    settle(qtbot, window)
    window.open_images([photos / "d.png"])  # File → Open Image… on a file of this folder
    settle(qtbot, window)
    assert shown(window) == "d.png" and window.folder == photos
    assert [p.name for p in window.images] == ["a_broken.jpg", "b.png", "c_broken.jpg", "d.png"]
    assert window.filmstrip.current_index() == 3 and window.position.text() == "4 / 4"

    Image.new("RGB", (40, 40), (0, 150, 0)).save(photos / "e.png")  # new since the folder was read
    window.open_images([photos / "e.png"])
    settle(qtbot, window)
    assert shown(window) == "e.png" and window.folder == photos and window.position.text() == "5 / 5"

    elsewhere = photos.parent / "elsewhere.png"
    Image.new("RGB", (40, 40), (0, 0, 0)).save(elsewhere)
    window.open_images([elsewhere])  # an image from another folder is opened alone
    settle(qtbot, window)
    assert window.images == [elsewhere] and window.folder is None


def test_open_recent_lists_a_browsed_folder_and_reopens_it(qtbot, window, photos, tmp_path):
    window.open_folder(photos)
    settle(qtbot, window)
    single = tmp_path / "single.png"
    Image.new("RGB", (40, 40), (0, 0, 0)).save(single)
    window.open_images([single])
    settle(qtbot, window)
    window.recent_menu.aboutToShow.emit()
    entries = {a.text(): a for a in window.recent_menu.actions() if a.data()}
    assert list(entries) == ["single.png", "photos/"]  # one entry for the folder, not one per image
    entries["photos/"].trigger()
    settle(qtbot, window)
    assert window.folder == photos and shown(window) == "b.png" and len(window.images) == 4


def test_images_are_decoded_off_the_gui_thread_and_shown_when_ready(qtbot, window, photos, monkeypatch):
    import threading

    from insight_desktop.gui import window_images

    gui, threads, gate = threading.get_ident(), [], threading.Event()
    real = window_images.load_image

    def held(path, *args, **kwargs):
        threads.append(threading.get_ident())
        gate.wait(10)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(window_images, "load_image", held)
    window.open_images([photos / "b.png"])
    assert window.document.image is None and window.loader.is_loading()  # not shown before it is decoded
    gate.set()
    settle(qtbot, window)
    assert shown(window) == "b.png" and window.document.preview is not None
    assert threads and gui not in threads


def test_a_newer_request_drops_the_older_ones_result(qtbot, window, photos, monkeypatch):
    import threading

    from insight_desktop.gui import window_images

    gate, real = threading.Event(), window_images.load_image

    def slow_for_b(path, *args, **kwargs):
        if path.name == "b.png":
            gate.wait(10)  # b is still being decoded when d is asked for
        return real(path, *args, **kwargs)

    monkeypatch.setattr(window_images, "load_image", slow_for_b)
    seen = []
    window.document.imageChanged.connect(lambda: seen.append(window.document.image_path.name))
    window.open_images([photos / "b.png"])
    window.open_images([photos / "d.png"])
    gate.set()
    settle(qtbot, window)
    window.loader.wait()
    QApplication.processEvents()
    assert shown(window) == "d.png" and seen == ["d.png"]  # b's late result was never shown


def test_page_down_while_an_image_is_on_its_way_counts_from_it(qtbot, window, tmp_path, monkeypatch):
    import threading

    from insight_desktop.gui import window_images

    folder = tmp_path / "four"
    folder.mkdir()
    for i, name in enumerate(("p1.png", "p2.png", "p3.png", "p4.png")):
        Image.new("RGB", (40, 30), (60 * i, 0, 0)).save(folder / name)
    window.open_folder(folder)
    settle(qtbot, window)
    gate, real = threading.Event(), window_images.load_image

    def held(path, *args, **kwargs):
        gate.wait(10)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(window_images, "load_image", held)
    window.next_image()  # p2 is on its way…
    window.next_image()  # …so this one is p3, not p2 again
    gate.set()
    settle(qtbot, window)
    assert shown(window) == "p3.png" and window.position.text() == "3 / 4"


def test_a_folder_whose_images_are_all_in_sub_folders_opens_them(qtbot, window, tmp_path):
    """A dataset root (healthy/, diseased/) opens its sub-folders' images instead of refusing."""
    root = tmp_path / "dataset"
    for sub, colour in (("healthy", (0, 200, 0)), ("diseased", (200, 0, 0))):
        (root / sub).mkdir(parents=True)
        Image.new("RGB", (40, 30), colour).save(root / sub / "x.png")
    window.open_folder(root)
    settle(qtbot, window)
    assert no_modal_box(window)
    assert [p.relative_to(root).as_posix() for p in window.images] == ["diseased/x.png", "healthy/x.png"]
    assert window.document.image_path == root / "diseased" / "x.png"
