"""The whole window driven through user actions, on the tiny concept model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from insight_desktop.core.paths import resource_path
from insight_desktop.gui.settings import AppSettings
from insight_desktop.gui.window_files import DEFAULT_SAMPLE
from tests.gui.conftest import wait_for_analysis, zoom_on

CHELSEA = resource_path("samples", "chelsea.png")
COFFEE = resource_path("samples", "coffee.png")


def open_chelsea(qtbot, window, tiny_bundle):
    window.start([CHELSEA], tiny_bundle)
    return wait_for_analysis(qtbot, window)


def settle(qtbot, window) -> None:
    """Images are decoded off the GUI thread: wait until the one asked for is shown (or refused)."""
    qtbot.waitUntil(lambda: not window.loader.is_loading(), timeout=30_000)


def message_boxes(window):
    return [b for b in window.findChildren(QMessageBox) if b.isVisible()]


def test_opening_an_image_draws_a_heatmap_of_its_top_concept(qtbot, window, tiny_bundle):
    a = open_chelsea(qtbot, window, tiny_bundle)
    doc = window.document
    assert doc.image_path == CHELSEA and a.image_size == doc.image.shape[:2]
    assert doc.concept == a.concepts[0].concept
    shown = window.canvas.composite_rgb()
    assert shown.shape == doc.image.shape
    changed = np.any(shown != doc.image, axis=2)
    assert changed.mean() > 0.01  # heat pixels cover part of the photo
    heat = a.display_map(doc.concept)
    assert changed[heat > 0.5].mean() > 0.9  # … where the concept fires


def test_choosing_a_concept_in_the_tree_changes_the_overlay(qtbot, window, tiny_bundle):
    a = open_chelsea(qtbot, window, tiny_bundle)
    before = window.canvas.composite_rgb()
    other = a.concepts[3].concept
    tree = window.tree
    index = tree.index_of(other)
    tree.view.scrollTo(index)
    rect = tree.view.visualRect(index)
    qtbot.mouseClick(tree.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.document.concept == other
    after = window.canvas.composite_rgb()
    assert np.any(after != before)
    # showing is not computing: no new worker request for a selection
    assert not window.worker.is_busy


def test_the_status_bar_says_which_sliding_window_mode_ran(qtbot, window, tiny_bundle):
    a = open_chelsea(qtbot, window, tiny_bundle)  # chelsea (451×300) → 674×448 px: windows at x = 0, 224, 240
    assert a.window_mode == "fast" and a.windows == 3
    assert window.window_mode_label.isVisible() and window.window_mode_label.text() == "windows: fast"
    tip = "Sliding windows: fast (features averaged over 3 overlapping windows, encoded once)"
    assert window.window_mode_label.toolTip() == tip


def test_keyboard_steps_through_concepts_and_images(qtbot, window, tiny_bundle):
    window.start([CHELSEA, COFFEE], tiny_bundle)
    a = wait_for_analysis(qtbot, window)
    first = window.document.concept
    qtbot.keyClick(window, Qt.Key.Key_Period)
    assert window.document.concept == a.concepts[1].concept != first
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    assert window.document.image_path == COFFEE and window.document.analysis is None
    wait_for_analysis(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_PageUp)  # back: served from the cache, no worker round trip
    settle(qtbot, window)
    assert window.document.image_path == CHELSEA and window.document.analysis is a
    assert not window.worker.is_busy


def test_stepping_on_and_straight_back_shows_the_first_images_own_analysis(qtbot, window, tiny_bundle):
    """The stale-result bug: the way back is a cache hit, which must stop the second image's
    analysis; a result is kept under the image it was computed for, never the one shown now."""
    window.start([CHELSEA, COFFEE], tiny_bundle)
    a = wait_for_analysis(qtbot, window)
    chelsea_size = window.document.image.shape[:2]
    qtbot.keyClick(window, Qt.Key.Key_PageDown)  # coffee goes to the worker…
    settle(qtbot, window)
    assert window.document.image_path == COFFEE and window.worker.is_busy
    qtbot.keyClick(window, Qt.Key.Key_PageUp)    # …and straight back, before its result can arrive
    settle(qtbot, window)
    qtbot.waitUntil(lambda: not window.worker.is_busy, timeout=60_000)
    doc = window.document
    assert doc.image_path == CHELSEA and doc.analysis is a and a.image_size == chelsea_size
    assert not window.status.bar.isVisible() and window.segmentation.segment_button.text() == "Segment"

    qtbot.keyClick(window, Qt.Key.Key_PageDown)  # coffee was stopped (or had just finished): computed or cached
    settle(qtbot, window)
    assert doc.image_path == COFFEE and (doc.analysis is None or doc.analysis.image_size == doc.image.shape[:2])
    coffee = wait_for_analysis(qtbot, window)
    assert coffee.image_size == doc.image.shape[:2] != chelsea_size
    qtbot.keyClick(window, Qt.Key.Key_PageUp)    # and chelsea's cache entry is still chelsea's
    settle(qtbot, window)
    assert doc.image_path == CHELSEA and doc.analysis is a and not window.worker.is_busy
    qtbot.keyClick(window, Qt.Key.Key_PageDown)  # and coffee's is coffee's
    settle(qtbot, window)
    assert doc.analysis is coffee and not window.worker.is_busy


def test_a_corrupt_image_shows_an_error_and_the_app_keeps_working(qtbot, window, tiny_bundle, tmp_path):
    a = open_chelsea(qtbot, window, tiny_bundle)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    window.open_images([bad])
    settle(qtbot, window)
    boxes = message_boxes(window)
    assert boxes and "broken.jpg" in boxes[0].text() + boxes[0].informativeText()
    boxes[0].close()
    assert window.document.analysis is a  # the previous image is still shown
    window.open_images([COFFEE])
    settle(qtbot, window)
    assert wait_for_analysis(qtbot, window).image_size == window.document.image.shape[:2]


def test_a_bad_model_file_shows_an_error_and_keeps_the_loaded_model(qtbot, window, tiny_bundle, tmp_path):
    open_chelsea(qtbot, window, tiny_bundle)
    catalog = window.document.catalog
    bad = tmp_path / "truncated.zip"
    bad.write_bytes(tiny_bundle.read_bytes()[:5000])
    window.load_model(bad)
    qtbot.waitUntil(lambda: bool(message_boxes(window)), timeout=30_000)
    assert "truncated.zip" in message_boxes(window)[0].text()
    assert window.document.catalog is catalog


def test_escape_cancels_a_running_analysis(qtbot, window, tiny_bundle):
    open_chelsea(qtbot, window, tiny_bundle)
    window.document.set_classes(("cat", "table"))
    results = []
    window.worker.analysisReady.connect(lambda generation, analysis: results.append(analysis))
    window.request_analysis()
    assert window.worker.is_busy and window.status.cancel.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.worker.is_busy, timeout=30_000)
    assert results == [] and not window.status.bar.isVisible()


def test_segment_button_segments_with_the_edited_classes_and_a_click_explains(qtbot, window, tiny_bundle):
    open_chelsea(qtbot, window, tiny_bundle)
    window.document.set_classes(("cat", "sky", "grass"))
    qtbot.mouseClick(window.segmentation.segment_button, Qt.MouseButton.LeftButton)
    a = wait_for_analysis(qtbot, window)
    seg = a.segmentation
    assert seg.class_names == ("cat", "sky", "grass")
    window.document.set_overlay(show_segmentation=True)
    assert window.actions.show_segmentation.isChecked()
    ys, xs = np.nonzero(seg.labels == seg.labels[seg.labels.shape[0] // 2, seg.labels.shape[1] // 2])
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    pos = zoom_on(window.canvas, y, x)
    qtbot.mouseClick(window.canvas.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert window.document.segment == seg.labels[y, x]
    bars = window.segmentation.chart.bars()
    segment = seg.segment(int(seg.labels[y, x]))
    top = segment.contributions[0]  # the chart shows contributions to the segment's mean logit
    assert bars and bars[0][0] == top.concept and bars[0][1] == pytest.approx(top.value / segment.pixels)


def test_session_round_trip(qtbot, window, tiny_bundle, tmp_path, monkeypatch):
    from insight_desktop.gui import window_files

    a = open_chelsea(qtbot, window, tiny_bundle)
    window.document.set_overlay(colormap="viridis", heatmap_opacity=0.3, show_residual=True)
    chosen = a.concepts[2].concept
    window.document.select_concept(chosen)
    path = tmp_path / "mine.insight-session"
    monkeypatch.setattr(window_files.QFileDialog, "getSaveFileName", lambda *args, **kw: (str(path), ""))
    window.actions.save_session.trigger()
    saved = json.loads(path.read_text())
    assert saved["concept"] == chosen and saved["overlay"]["colormap"] == "viridis"

    from insight_desktop.gui.main_window import MainWindow

    other = MainWindow(AppSettings(QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat)))
    qtbot.addWidget(other)
    other.start(session=path)
    qtbot.waitUntil(lambda: other.document.analysis is not None and other.document.concept == chosen, timeout=60_000)
    assert other.document.overlay.colormap == "viridis" and other.document.overlay.heatmap_opacity == 0.3
    assert other.document.image_path == CHELSEA and other.model_path == tiny_bundle
    other.close()


def test_a_session_brings_back_the_zoom_and_pan(qtbot, window, tiny_bundle, tmp_path, monkeypatch):
    from insight_desktop.gui import window_files
    from insight_desktop.gui.main_window import MainWindow

    open_chelsea(qtbot, window, tiny_bundle)
    zoom_on(window.canvas, 100, 150)
    window.canvas.zoom_out()
    shown = window.canvas.viewbox.viewRect()
    path = tmp_path / "zoomed.insight-session"
    monkeypatch.setattr(window_files.QFileDialog, "getSaveFileName", lambda *args, **kw: (str(path), ""))
    window.actions.save_session.trigger()
    assert json.loads(path.read_text())["view"] is not None

    other = MainWindow(AppSettings(QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat)))
    qtbot.addWidget(other)
    other.resize(window.size())
    other.show()
    qtbot.waitExposed(other)
    other.start(session=path)
    qtbot.waitUntil(lambda: other.document.analysis is not None and not other.worker.is_busy, timeout=60_000)
    QApplication.processEvents()
    again = other.canvas.viewbox.viewRect()
    assert other.canvas.viewbox.size() == window.canvas.viewbox.size()
    for a, b in ((again.x(), shown.x()), (again.y(), shown.y()),
                 (again.width(), shown.width()), (again.height(), shown.height())):
        assert abs(a - b) < 1.0, (again, shown)
    other.close()


def test_export_view_and_contributions(qtbot, window, tiny_bundle, tmp_path, monkeypatch):
    from PIL import Image

    from insight_desktop.gui import window_files

    open_chelsea(qtbot, window, tiny_bundle)
    target = tmp_path / "view.png"
    monkeypatch.setattr(window_files.QFileDialog, "getSaveFileName", lambda *args, **kw: (str(target), ""))
    window.actions.export_view.trigger()
    with Image.open(target) as im:
        assert im.size[1] >= window.document.image.shape[0] and im.size[0] > window.document.image.shape[1]
    target = tmp_path / "contributions.json"
    window.actions.export_contributions.trigger()
    origin = json.loads(target.read_text(encoding="utf-8"))["provenance"]
    doc = window.document
    assert origin["image"] == str(doc.image_path) and origin["backbone"] == doc.catalog.backbone_id
    assert origin["model_path"] == str(doc.catalog.path)


def test_shortcuts_dialog_lists_the_window_actions(qtbot, window):
    qtbot.keyClick(window, Qt.Key.Key_F1)
    from insight_desktop.gui.dialogs import ShortcutsDialog

    dialog = window.findChild(ShortcutsDialog)
    assert dialog is not None and dialog.isVisible()
    assert dialog.table.rowCount() >= 20


def test_the_window_appears_before_torch_is_imported():
    code = ("import os, sys; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
            "import insight_desktop.gui.app as app\n"
            "assert 'torch' not in sys.modules, 'importing the app imported torch'\n"
            "qapp = app.create_application()\n"
            "from insight_desktop.gui.main_window import MainWindow\n"
            "w = MainWindow(); w.show(); qapp.processEvents()\n"
            "print(w.isVisible(), 'torch' in sys.modules, 'open_clip' in sys.modules)\n"
            "w.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "XDG_CONFIG_HOME": "/tmp/insight-test-config"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["True", "False", "False"]


def test_python_m_opens_the_app_and_passes_subcommands_to_the_cli(monkeypatch):
    import insight_desktop.__main__ as entry
    import insight_desktop.cli as cli
    import insight_desktop.gui.app as app

    calls = []
    monkeypatch.setattr(app, "main", lambda argv: calls.append(("app", argv)) or 0)
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(("cli", argv)) or 0)
    assert entry.main([]) == 0 and entry.main(["photo.jpg"]) == 0 and entry.main(["info", "x"]) == 0
    assert calls == [("app", []), ("app", ["photo.jpg"]), ("cli", ["info", "x"])]


def test_without_a_display_the_app_says_so_instead_of_crashing(monkeypatch, capsys):
    import insight_desktop.gui.app as app

    monkeypatch.setattr(app.sys, "platform", "linux")
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert app.main([]) == 2
    assert "no display" in capsys.readouterr().err


def test_a_model_built_from_images_opens_in_the_window(qtbot, window, tiny_bundle):
    from insight_desktop.gui.build_dialog import BuildModelDialog

    window.actions.build_model.trigger()
    dialog = window.findChild(BuildModelDialog)
    assert dialog is not None and dialog.isVisible()
    with qtbot.waitSignal(window.worker.modelReady, timeout=60_000):
        dialog.modelBuilt.emit(str(tiny_bundle))  # what a finished build announces
    assert window.model_path == tiny_bundle and window.document.catalog.n_concepts == 64
    dialog.close()


def test_offline_the_app_works_with_installed_models_and_never_touches_the_network(qtbot, window, tiny_bundle,
                                                                                  monkeypatch):
    import socket

    attempts = []

    def no_network(self, address):
        attempts.append(address)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    a = open_chelsea(qtbot, window, tiny_bundle)
    window.actions.manage_models.trigger()  # lists the store and the catalogue
    assert a.concepts and attempts == []


def test_dropping_a_folder_opens_its_images_and_dropping_a_model_loads_it(qtbot, window, tiny_bundle, tmp_path):
    import shutil

    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.png"):
        shutil.copy(CHELSEA, folder / name)

    def drop(*paths):
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
        event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)
        window.dropEvent(event)

    with qtbot.waitSignal(window.worker.modelReady, timeout=60_000):
        drop(tiny_bundle)
    drop(folder)
    settle(qtbot, window)
    assert [p.name for p in window.images] == ["a.png", "b.png"] and window.document.image_path.name == "a.png"
    assert window.docks["images"].isVisible() and window.filmstrip.count() == 2
    assert wait_for_analysis(qtbot, window).image_size == window.document.image.shape[:2]


def test_what_was_open_comes_back_on_the_next_start(qtbot, tmp_path, tiny_bundle):
    from insight_desktop.gui.main_window import MainWindow

    ini = str(tmp_path / "settings.ini")
    first = MainWindow(AppSettings(QSettings(ini, QSettings.Format.IniFormat)))
    qtbot.addWidget(first)
    first.start([CHELSEA, COFFEE], tiny_bundle)
    wait_for_analysis(qtbot, first)
    first.next_image()
    settle(qtbot, first)
    a = wait_for_analysis(qtbot, first)
    chosen = a.concepts[1].concept
    first.document.select_concept(chosen)
    first.document.set_overlay(colormap="magma")
    first.close()

    again = MainWindow(AppSettings(QSettings(ini, QSettings.Format.IniFormat)))
    qtbot.addWidget(again)
    again.start()  # no arguments: the last session
    qtbot.waitUntil(lambda: again.document.analysis is not None and again.document.concept == chosen, timeout=60_000)
    assert again.images == [CHELSEA, COFFEE] and again.document.image_path == COFFEE
    assert again.model_path == tiny_bundle and again.document.overlay.colormap == "magma"
    again.close()


def test_a_last_session_whose_images_are_gone_falls_back_to_the_samples(qtbot, tmp_path, tiny_bundle):
    import shutil

    from insight_desktop.gui.main_window import MainWindow

    ini = str(tmp_path / "settings.ini")
    photo = tmp_path / "gone.png"
    shutil.copy(CHELSEA, photo)
    first = MainWindow(AppSettings(QSettings(ini, QSettings.Format.IniFormat)))
    qtbot.addWidget(first)
    first.start([photo], tiny_bundle)
    wait_for_analysis(qtbot, first)
    first.close()
    photo.unlink()
    again = MainWindow(AppSettings(QSettings(ini, QSettings.Format.IniFormat)))
    qtbot.addWidget(again)
    again.start()
    settle(qtbot, again)
    assert again.document.image_path == resource_path("samples", DEFAULT_SAMPLE)
    assert not [b for b in again.findChildren(QMessageBox) if b.isVisible()]
    again.close()
