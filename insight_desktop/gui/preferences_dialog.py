"""Preferences: what the app keeps on disk between runs — the cache of computed analyses
(:mod:`insight_desktop.core.analysis_cache`): how large it may grow, how large it is, and a button
that empties it."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis_cache import AnalysisCache
from ..core.fileio import format_size
from .settings import AppSettings

GB = 1_000_000_000  # decimal, like format_size and file managers


class PreferencesDialog(QDialog):
    """The analysis cache's limit (saved on OK) and its Clear button (acts at once)."""

    limitChanged = Signal(object)  # bytes (an int: may pass 2³¹), 0 = off; after OK

    def __init__(self, settings: AppSettings, cache: AnalysisCache, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.settings, self.cache = settings, cache
        self.limit = QDoubleSpinBox()
        self.limit.setRange(0.0, 1000.0)
        self.limit.setDecimals(1)
        self.limit.setSingleStep(0.5)
        self.limit.setSuffix(" GB")
        self.limit.setSpecialValueText("Off")  # shown at 0
        self.limit.setValue(settings.analysis_cache_limit() / GB)
        self.limit.setToolTip("Analyses already computed are kept on disk, so that images seen before (also in "
                              "earlier sessions) show at once. The least recently used are deleted first when "
                              "the cache is full. An 8000×6000 photo with classes takes about 0.3 GB, a small "
                              "image about 1 MB.")
        self.usage = QLabel()
        self.usage.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.usage.setWordWrap(True)
        self.clear_button = QPushButton()
        self.clear_button.clicked.connect(self.clear_cache)
        form = QFormLayout()
        form.addRow("Keep computed analyses, up to:", self.limit)
        form.addRow("", self.usage)
        form.addRow("", self.clear_button)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.refresh()

    def limit_bytes(self) -> int:
        return int(round(self.limit.value() * GB))

    @Slot()
    def refresh(self) -> None:
        entries = self.cache.entries()
        size = sum(e.size for e in entries)
        self.usage.setText(f"In use: {format_size(size)} ({len(entries)} analys{'is' if len(entries) == 1 else 'es'})"
                           f" in {self.cache.folder}")
        self.clear_button.setText(f"Clear Analysis Cache ({format_size(size)})")
        self.clear_button.setEnabled(bool(entries))

    @Slot()
    def clear_cache(self) -> None:
        self.cache.clear()
        self.refresh()

    def accept(self) -> None:
        limit = self.limit_bytes()
        if limit != self.settings.analysis_cache_limit():
            self.settings.set_analysis_cache_limit(limit)
            self.limitChanged.emit(limit)
        super().accept()


def show_preferences(window) -> PreferencesDialog:
    """Open the dialog over the main window; a new limit goes to its analysis requests at once."""
    dialog = PreferencesDialog(window.settings, window.requests.disk_cache, window)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.limitChanged.connect(window.requests.set_disk_cache_limit)
    dialog.open()
    return dialog
