"""What the application remembers between runs, kept in QSettings (ARCHITECTURE rule 7).

QSettings returns what the backend stored: the registry and plist keep types, but an ini file
gives strings back ("true", "3"), a one-element list as a plain string and an empty list as
None.  Every getter here converts and falls back to its default, so callers get the right type
whatever the platform and whatever a user typed into the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from ..core.analysis_cache import DEFAULT_LIMIT_BYTES
from ..core.devices import DEVICE_CHOICES
from .document import DEFAULT_CLASSES, OverlaySettings

ORGANIZATION = "Insight Desktop"
APPLICATION = "insight-desktop"
MAX_RECENT_FILES = 10

_RECENT = "recent/files"
_MODEL = "model/last_path"
_DEVICE = "model/device"
_FOLDER = "paths/last_folder"
_GEOMETRY = "window/geometry"
_STATE = "window/state"
_OVERLAY = "view/overlay"
_CLASSES = "analysis/classes"
_BACKGROUND = "analysis/background"
_FIRST_RUN = "app/first_run_done"
_ANALYSIS_CACHE = "analysis/disk_cache_bytes"


class AppSettings:
    """Typed access to the application's QSettings; pass a QSettings (e.g. a temporary ini) in tests."""

    def __init__(self, settings: QSettings | None = None):
        self.qsettings = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)

    def sync(self) -> None:
        self.qsettings.sync()

    # ------------------------------------------------------------------ recent files
    def recent_files(self) -> list[Path]:
        """Recent images, folders and sessions, most recent first; paths that no longer exist are
        dropped (and forgotten, so the menu does not offer them again)."""
        stored = _str_list(self.qsettings.value(_RECENT))
        kept = [Path(p) for p in stored if Path(p).exists()]
        if len(kept) != len(stored):
            self._set_list(_RECENT, [str(p) for p in kept])
        return kept

    def add_recent_file(self, path: str | os.PathLike) -> None:
        """Put ``path`` first (moving it if it was already listed); keep at most MAX_RECENT_FILES."""
        new = os.path.abspath(path)
        rest = [p for p in _str_list(self.qsettings.value(_RECENT)) if os.path.abspath(p) != new]
        self._set_list(_RECENT, [new, *rest][:MAX_RECENT_FILES])

    def remove_recent_file(self, path: str | os.PathLike) -> None:
        gone = os.path.abspath(path)
        self._set_list(_RECENT, [p for p in _str_list(self.qsettings.value(_RECENT)) if os.path.abspath(p) != gone])

    def clear_recent_files(self) -> None:
        self.qsettings.remove(_RECENT)

    # ------------------------------------------------------------------ model and paths
    def last_model_path(self) -> Path | None:
        return self._path(_MODEL)

    def set_last_model_path(self, path: str | os.PathLike | None) -> None:
        self._set_path(_MODEL, path)

    def device(self) -> str:
        """auto, cpu, cuda or cuda:N; anything else stored reads as auto."""
        value = self._str(_DEVICE, "auto").strip().lower()
        ok = value in DEVICE_CHOICES or (value.startswith("cuda:") and value[5:].isdigit())
        return value if ok else "auto"

    def set_device(self, device: str) -> None:
        self.qsettings.setValue(_DEVICE, str(device))

    def last_folder(self) -> Path | None:
        return self._path(_FOLDER)

    def set_last_folder(self, folder: str | os.PathLike | None) -> None:
        self._set_path(_FOLDER, folder)

    # ------------------------------------------------------------------ window
    def window_geometry(self) -> bytes:
        """What QWidget.saveGeometry() returned (b"" when none): feed it to restoreGeometry."""
        return self._bytes(_GEOMETRY)

    def set_window_geometry(self, data: bytes | QByteArray) -> None:
        self.qsettings.setValue(_GEOMETRY, QByteArray(bytes(data)))

    def window_state(self) -> bytes:
        """What QMainWindow.saveState() returned (b"" when none): docks and toolbars."""
        return self._bytes(_STATE)

    def set_window_state(self, data: bytes | QByteArray) -> None:
        self.qsettings.setValue(_STATE, QByteArray(bytes(data)))

    # ------------------------------------------------------------------ view and analysis
    def overlay(self) -> OverlaySettings:
        """The overlay settings last used (defaults when none or unreadable)."""
        text = self._str(_OVERLAY, "")
        try:
            return OverlaySettings.from_dict(json.loads(text)) if text else OverlaySettings()
        except (ValueError, TypeError, AttributeError):  # hand-edited or from an incompatible version
            return OverlaySettings()

    def set_overlay(self, overlay: OverlaySettings) -> None:
        # JSON, not a QVariantMap: an ini file would turn the numbers and booleans into strings.
        self.qsettings.setValue(_OVERLAY, json.dumps(overlay.to_dict(), sort_keys=True))

    def classes(self) -> tuple[str, ...]:
        if not self.qsettings.contains(_CLASSES):
            return DEFAULT_CLASSES
        return tuple(c for c in (s.strip() for s in _str_list(self.qsettings.value(_CLASSES))) if c)

    def set_classes(self, classes: tuple[str, ...] | list[str]) -> None:
        self._set_list(_CLASSES, [str(c) for c in classes])

    def first_run_done(self) -> bool:
        return _to_bool(self.qsettings.value(_FIRST_RUN), False)

    def set_first_run_done(self, done: bool = True) -> None:
        self.qsettings.setValue(_FIRST_RUN, bool(done))

    def background(self) -> bool:
        return _to_bool(self.qsettings.value(_BACKGROUND), False)

    def set_background(self, background: bool) -> None:
        self.qsettings.setValue(_BACKGROUND, bool(background))

    def analysis_cache_limit(self) -> int:
        """Bytes the disk cache of computed analyses may hold (0: the disk cache is off)."""
        value = self.qsettings.value(_ANALYSIS_CACHE)
        try:
            return max(0, int(float(value))) if value is not None else DEFAULT_LIMIT_BYTES
        except (TypeError, ValueError):  # hand-edited
            return DEFAULT_LIMIT_BYTES

    def set_analysis_cache_limit(self, limit_bytes: int) -> None:
        self.qsettings.setValue(_ANALYSIS_CACHE, max(0, int(limit_bytes)))

    # ------------------------------------------------------------------ typed helpers
    def _str(self, key: str, default: str) -> str:
        value = self.qsettings.value(key)
        return value if isinstance(value, str) else default

    def _path(self, key: str) -> Path | None:
        text = self._str(key, "")
        return Path(text) if text else None

    def _set_path(self, key: str, path: str | os.PathLike | None) -> None:
        if path is None:
            self.qsettings.remove(key)
        else:
            self.qsettings.setValue(key, os.path.abspath(path))

    def _bytes(self, key: str) -> bytes:
        value = self.qsettings.value(key)
        if isinstance(value, QByteArray):
            return bytes(value.data())
        return bytes(value) if isinstance(value, (bytes, bytearray)) else b""

    def _set_list(self, key: str, values: list[str]) -> None:
        # Stored as JSON text: an ini file cannot tell a one-element list from a string or an
        # empty list from "no value", and names with commas would be split on reading.
        self.qsettings.setValue(key, json.dumps(values))


def _str_list(value: Any) -> list[str]:
    """A list of strings from whatever was stored: JSON text (ours), a native list, or nothing."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value] if value else []  # a single hand-written entry
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def _to_bool(value: Any, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    if isinstance(value, int):
        return bool(value)
    return default
