"""The window keeps computed analyses on disk: a restored session shows without computing, and
Preferences bounds and clears the cache."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PySide6.QtCore import QSettings

from insight_desktop.core.fileio import format_size
from insight_desktop.core.paths import resource_path
from insight_desktop.gui.settings import AppSettings
from tests.core.test_analysis_cache import assert_same
from tests.gui.conftest import wait_for_analysis

CHELSEA = resource_path("samples", "chelsea.png")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every window of these tests keeps its analyses here (set before the window is made)."""
    from insight_desktop.core import analysis_cache

    monkeypatch.setattr(analysis_cache, "default_folder", lambda: tmp_path / "my-analyses")
    return tmp_path / "my-analyses"


def make_window(qtbot, tmp_path, name: str, limit: int | None = None):
    from insight_desktop.gui.main_window import MainWindow

    settings = AppSettings(QSettings(str(tmp_path / f"{name}.ini"), QSettings.Format.IniFormat))
    if limit is not None:
        settings.set_analysis_cache_limit(limit)
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.status.set_device_choice("cpu")
    w.show()
    return w


def open_chelsea(qtbot, window, tiny_bundle):
    window.start([CHELSEA], tiny_bundle)
    return wait_for_analysis(qtbot, window)


def test_a_restored_session_shows_its_analysis_from_disk_without_computing(qtbot, window, tiny_bundle, tmp_path,
                                                                          cache_dir, monkeypatch):
    from insight_desktop.core.engine import Analyzer
    from insight_desktop.gui import window_files

    computed = open_chelsea(qtbot, window, tiny_bundle)
    assert "disk cache" not in computed.timings
    assert window.requests.disk_cache.wait_for_writes(60)
    assert [e.path.parent for e in window.requests.disk_cache.entries()] == [cache_dir]
    path = tmp_path / "mine.insight-session"
    monkeypatch.setattr(window_files.QFileDialog, "getSaveFileName", lambda *args, **kw: (str(path), ""))
    window.actions.save_session.trigger()
    assert json.loads(path.read_text())

    def no_computing(*args, **kwargs):
        raise AssertionError("the analysis was computed, not read from the disk cache")

    monkeypatch.setattr(Analyzer, "analyze", no_computing)
    other = make_window(qtbot, tmp_path, "other")  # as after a restart: a new window, an empty memory cache
    other.start(session=path)
    shown = wait_for_analysis(qtbot, other)
    assert list(shown.timings) == ["disk cache"]  # the status bar says how long the read took
    assert_same(computed, dataclasses.replace(shown, timings=computed.timings))
    assert other.document.image_path == CHELSEA and "Traceback" not in other.hover.text()


def test_preferences_show_the_size_clear_the_cache_and_bound_it(qtbot, window, tiny_bundle, cache_dir):
    from insight_desktop.gui.preferences_dialog import GB, PreferencesDialog

    open_chelsea(qtbot, window, tiny_bundle)
    cache = window.requests.disk_cache
    assert cache.wait_for_writes(60)
    size = cache.size_bytes()
    assert size > 0
    window.actions.preferences.trigger()
    dialog = window.findChild(PreferencesDialog)
    assert dialog is not None and dialog.isVisible()
    assert format_size(size) in dialog.clear_button.text() and "1 analysis" in dialog.usage.text()
    assert dialog.limit.value() == pytest.approx(1.0)  # the default: 1 GB
    dialog.clear_button.click()
    assert cache.entries() == [] and not dialog.clear_button.isEnabled() and "0 B" in dialog.usage.text()

    dialog.limit.setValue(0.0)  # "Off"
    assert dialog.limit.text() == "Off"
    dialog.accept()
    assert window.settings.analysis_cache_limit() == 0 and window.worker._worker.analysis_cache is None
    window.document.set_classes(("cat", "sky"))
    window.request_analysis()
    assert "disk cache" not in wait_for_analysis(qtbot, window).timings
    assert cache.wait_for_writes(60) and cache.entries() == []  # off: nothing written

    window.actions.preferences.trigger()
    dialog = [d for d in window.findChildren(PreferencesDialog) if d.isVisible()][0]
    dialog.limit.setValue(2.5)
    dialog.accept()
    assert window.settings.analysis_cache_limit() == 2.5 * GB == window.requests.disk_cache.limit_bytes
    assert window.worker._worker.analysis_cache is cache


def test_a_window_whose_settings_turn_the_cache_off_writes_nothing(qtbot, tmp_path, tiny_bundle, cache_dir):
    w = make_window(qtbot, tmp_path, "off", limit=0)
    open_chelsea(qtbot, w, tiny_bundle)
    assert w.requests.disk_cache.wait_for_writes(60)
    assert not cache_dir.exists() or not any(cache_dir.iterdir())
    w.close()


def test_the_cache_limit_setting_reads_back_and_survives_hand_edits(tmp_path):
    from insight_desktop.core.analysis_cache import DEFAULT_LIMIT_BYTES

    qs = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings = AppSettings(qs)
    assert settings.analysis_cache_limit() == DEFAULT_LIMIT_BYTES
    settings.set_analysis_cache_limit(123_000_000)
    settings.sync()
    assert AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)).analysis_cache_limit() \
        == 123_000_000
    qs.setValue("analysis/disk_cache_bytes", "lots")
    assert settings.analysis_cache_limit() == DEFAULT_LIMIT_BYTES
    settings.set_analysis_cache_limit(-5)
    assert settings.analysis_cache_limit() == 0
