"""AppSettings over a temporary ini file: types survive, recent files stay ordered and pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from insight_desktop.gui.document import DEFAULT_CLASSES, OverlaySettings
from insight_desktop.gui.settings import MAX_RECENT_FILES, AppSettings


@pytest.fixture
def ini(tmp_path):
    return tmp_path / "settings.ini"


def _open(ini: Path) -> AppSettings:
    return AppSettings(QSettings(str(ini), QSettings.Format.IniFormat))


def _touch(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def test_defaults_on_an_empty_file(ini):
    s = _open(ini)
    assert s.recent_files() == []
    assert s.last_model_path() is None and s.last_folder() is None
    assert s.device() == "auto"
    assert s.window_geometry() == b"" and s.window_state() == b""
    assert s.overlay() == OverlaySettings()
    assert s.classes() == DEFAULT_CLASSES and s.background() is False


def test_recent_files_order_dedup_limit_and_pruning(tmp_path, ini):
    s = _open(ini)
    files = [_touch(tmp_path / f"f{i}.png") for i in range(12)]
    for f in files[:3]:
        s.add_recent_file(f)
    assert s.recent_files() == [files[2], files[1], files[0]]  # most recent first

    s.add_recent_file(files[0])  # again: moves to the front, listed once
    assert s.recent_files() == [files[0], files[2], files[1]]

    for f in files[3:]:
        s.add_recent_file(f)
    recent = s.recent_files()
    assert len(recent) == MAX_RECENT_FILES
    assert recent[0] == files[11] and files[1] not in recent  # the oldest fell off

    files[11].unlink()
    assert s.recent_files()[0] == files[10]
    assert len(_open(ini).recent_files()) == MAX_RECENT_FILES - 1  # pruned on disk too

    s.remove_recent_file(files[10])
    assert files[10] not in s.recent_files()
    s.clear_recent_files()
    assert s.recent_files() == []


def test_single_recent_file_and_odd_names_survive_the_ini(tmp_path, ini):
    odd = _touch(tmp_path / "a, b; \"c\" é.png")
    s = _open(ini)
    s.add_recent_file(odd)
    s.sync()
    assert _open(ini).recent_files() == [odd]


def test_round_trip_through_the_ini(tmp_path, ini):
    s = _open(ini)
    overlay = OverlaySettings(show_segmentation=True, colormap="magma", heatmap_opacity=0.3, threshold=0.2,
                              hidden_labels=frozenset({1, 4}))
    s.set_last_model_path(tmp_path / "m.zip")
    s.set_device("cuda:1")
    s.set_last_folder(tmp_path)
    s.set_window_geometry(b"\x01\x00geometry\xff")
    s.set_window_state(bytes(range(256)))
    s.set_overlay(overlay)
    s.set_classes(("cat", "sky, blue"))
    s.set_background(True)
    s.sync()

    t = _open(ini)
    assert t.last_model_path() == tmp_path / "m.zip"
    assert t.device() == "cuda:1"
    assert t.last_folder() == tmp_path
    assert t.window_geometry() == b"\x01\x00geometry\xff"
    assert t.window_state() == bytes(range(256))
    assert t.overlay() == overlay and t.overlay().hidden_labels == frozenset({1, 4})
    assert t.classes() == ("cat", "sky, blue")
    assert t.background() is True

    t.set_last_model_path(None)
    t.set_classes(())
    assert t.last_model_path() is None and t.classes() == ()


def test_hand_edited_values_fall_back_to_defaults(ini):
    ini.write_text("[model]\ndevice=tpu\n[view]\noverlay={not json\n[analysis]\nbackground=yes\nclasses=cat\n"
                   "[recent]\nfiles=42\n")
    s = _open(ini)
    assert s.device() == "auto"
    assert s.overlay() == OverlaySettings()
    assert s.background() is True
    assert s.classes() == ("cat",)
    assert s.recent_files() == []
