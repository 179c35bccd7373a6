"""The filmstrip: thumbnails decoded off the GUI thread, broken files marked, clicks and keys."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt, QThread
from PySide6.QtWidgets import QApplication

from insight_desktop.gui.widgets import filmstrip as fs
from insight_desktop.gui.widgets.filmstrip import THUMBNAIL_SIZE, Filmstrip, images_in_folder, load_thumbnail

COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255)]


@pytest.fixture
def folder(tmp_path):
    """img1, img2, img10 (natural order), one corrupt .png, and a text file that is no image."""
    for name, colour, size in [("img1.png", COLOURS[0], (200, 100)), ("img10.jpg", COLOURS[2], (150, 300)),
                               ("img2.png", COLOURS[1], (40, 30))]:
        Image.new("RGB", size, colour).save(tmp_path / name, quality=95)
    (tmp_path / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("hello")
    return tmp_path


@pytest.fixture
def strip(qtbot):
    widget = Filmstrip()
    qtbot.addWidget(widget)
    widget.resize(600, 140)
    widget.show()
    yield widget
    widget.shutdown()


def _loaded(strip: Filmstrip) -> bool:
    return all(strip.thumbnail_state(i) != "loading" for i in range(strip.count()))


def _thumbnail(strip: Filmstrip, row: int):
    icon = strip.list.item(row).icon()
    return icon.pixmap(icon.availableSizes()[0]).toImage()


def test_images_in_folder_is_natural_and_images_only(folder):
    assert [p.name for p in images_in_folder(folder)] == ["img1.png", "img2.png", "img10.jpg", "zz_broken.png"]


def test_thumbnails_load_and_the_corrupt_file_gets_a_placeholder(qtbot, strip, folder):
    paths = images_in_folder(folder)
    strip.set_images(paths)
    qtbot.waitUntil(lambda: _loaded(strip), timeout=30_000)

    assert [strip.thumbnail_state(i) for i in range(4)] == ["ready", "ready", "ready", "broken"]
    # real pixels, scaled to fit 96 px with the aspect ratio kept (small images are not enlarged)
    sizes = [(_thumbnail(strip, i).width(), _thumbnail(strip, i).height()) for i in range(3)]
    assert sizes == [(THUMBNAIL_SIZE, 48), (40, 30), (48, THUMBNAIL_SIZE)]
    for row, colour in enumerate([COLOURS[0], COLOURS[1], COLOURS[2]]):
        c = _thumbnail(strip, row).pixelColor(10, 10)
        assert np.allclose((c.red(), c.green(), c.blue()), colour, atol=3)
    broken = strip.list.item(3)
    assert broken.icon().cacheKey() == strip.broken_icon.cacheKey()
    assert "zz_broken.png" in broken.toolTip() and "not a supported image file" in broken.toolTip()
    assert strip.list.item(0).toolTip() == str(paths[0])


def test_thumbnails_are_decoded_off_the_gui_thread(qtbot, strip, folder, monkeypatch):
    threads = []
    real = fs.load_thumbnail

    def spy(path, size=THUMBNAIL_SIZE):
        threads.append(QThread.currentThread())
        return real(path, size)

    monkeypatch.setattr(fs, "load_thumbnail", spy)
    strip.set_images(images_in_folder(folder))
    qtbot.waitUntil(lambda: _loaded(strip), timeout=30_000)
    assert len(threads) == 4 and strip.thread() not in threads


def test_only_visible_thumbnails_load_until_scrolled(qtbot, strip, tmp_path):
    paths = []
    for i in range(60):
        paths.append(tmp_path / f"{i:02d}.png")
        Image.new("RGB", (20, 20), (i * 4, 0, 0)).save(paths[-1])
    strip.set_images(paths)
    qtbot.waitUntil(lambda: strip.thumbnail_state(0) == "ready", timeout=30_000)
    strip.wait_for_thumbnails()
    QApplication.processEvents()  # deliver every result the finished jobs sent (none for row 59)
    assert strip.thumbnail_state(59) == "loading"  # far off screen: not decoded

    strip.list.horizontalScrollBar().setValue(strip.list.horizontalScrollBar().maximum())
    qtbot.waitUntil(lambda: strip.thumbnail_state(59) == "ready", timeout=30_000)
    assert strip.thumbnail_state(30) == "loading"  # the middle was scrolled past, never shown


def test_a_new_list_drops_thumbnails_of_the_old_one(qtbot, strip, folder, tmp_path):
    strip.set_images(images_in_folder(folder))
    other = tmp_path / "other.png"
    Image.new("RGB", (50, 50), (9, 9, 9)).save(other)
    strip.set_images([other])
    qtbot.waitUntil(lambda: _loaded(strip), timeout=30_000)
    strip.wait_for_thumbnails()
    QApplication.processEvents()  # the jobs are done, so this delivers all their results: the old list's are dropped
    assert strip.count() == 1 and strip.thumbnail_state(0) == "ready"
    assert _thumbnail(strip, 0).pixelColor(5, 5).red() == 9


def test_click_emits_image_activated_and_highlights(qtbot, strip, folder):
    strip.set_images(images_in_folder(folder), current=0)
    assert strip.current_index() == 0 and strip.list.item(0).isSelected()
    rect = strip.list.visualItemRect(strip.list.item(2))
    with qtbot.waitSignal(strip.imageActivated) as blocker:
        qtbot.mouseClick(strip.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [2]
    assert strip.current_index() == 2 and strip.list.item(2).isSelected()
    assert not strip.list.item(0).isSelected()
    # the current cell is drawn inside a highlight frame, the others are not
    drawn = strip.list.viewport().grab().toImage()
    highlight = strip.list.palette().highlight().color()

    def frame_colour(row):
        r = strip.list.visualItemRect(strip.list.item(row))
        return drawn.pixelColor(r.left() + 2, r.center().y())  # on the frame line

    assert frame_colour(2) == highlight and frame_colour(0) != highlight


def test_arrow_keys_activate_the_neighbour(qtbot, strip, folder):
    strip.set_images(images_in_folder(folder), current=1)
    strip.list.setFocus()
    with qtbot.waitSignal(strip.imageActivated) as blocker:
        qtbot.keyClick(strip.list, Qt.Key.Key_Right)
    assert blocker.args == [2]


def test_next_previous_stop_at_the_ends(qtbot, strip, folder):
    strip.set_images(images_in_folder(folder), current=2)
    emitted = []
    strip.imageActivated.connect(emitted.append)
    assert strip.next() == 3
    assert strip.next() == 3  # the last one: stays, no wrap, nothing emitted
    strip.set_current(0)      # programmatic: not an activation
    assert strip.current_index() == 0
    assert strip.previous() == 0
    assert strip.previous() == 0
    assert strip.next() == 1
    assert emitted == [3, 1]


def test_empty_strip(qtbot, strip):
    strip.set_images([])
    assert strip.current_index() == -1 and strip.next() == -1 and strip.previous() == -1


def test_load_thumbnail_fits_and_reads_big_jpegs_at_reduced_scale(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (10, 120, 250)).save(path, quality=95)
    decoded = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def draft(self, mode, size):
        result = real_draft(self, mode, size)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    thumb = load_thumbnail(path)
    assert decoded == [(200, 150)]  # the decoder ran at 1/8 scale, not on 1600×1200 pixels
    assert thumb.shape == (72, 96, 3) and thumb.dtype == np.uint8
    assert np.allclose(thumb[36, 48], (10, 120, 250), atol=4)
    with pytest.raises(fs.ImageLoadError, match="file not found"):
        load_thumbnail(tmp_path / "missing.jpg")
