"""Small dialogs: the keyboard shortcuts, About (versions, model, licences) and error boxes."""

from __future__ import annotations

import json
import platform
import traceback
from pathlib import Path
from typing import Any, Iterable

from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..core.paths import resources_dir

APP_NAME = "Insight Desktop"
#: licence notes shown in About, relative to resources/, in this order; any other LICENSE*,
#: NOTICE* or SOURCES* file found under resources/ (e.g. for a bundled model) is added after them
LICENCE_FILES = ("samples/LICENSES.md", "vocab/SOURCES.md")
_LICENCE_PATTERNS = ("LICENSE*", "LICENCE*", "NOTICE*", "SOURCES*")


def plain_action_text(action: QAction) -> str:
    """The action's text as shown, without mnemonic '&' (a literal '&&' stays one '&')."""
    return action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").strip()


class ShortcutsDialog(QDialog):
    """Every given action that has a shortcut, in the given order, with a search field."""

    def __init__(self, actions: Iterable[QAction], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search actions and keys")
        self.search.setClearButtonEnabled(True)
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)

        seen: set[int] = set()
        for action in actions:
            keys = [k for k in action.shortcuts() if not k.isEmpty()]
            if not keys or id(action) in seen:
                continue
            seen.add(id(action))
            row = self.table.rowCount()
            self.table.insertRow(row)
            self.table.setItem(row, 0, QTableWidgetItem(plain_action_text(action)))
            shortcut = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys)
            self.table.setItem(row, 1, QTableWidgetItem(shortcut))

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.search.textChanged.connect(self._filter)
        self.resize(480, 520)

    def visible_rows(self) -> list[tuple[str, str]]:
        """(action, shortcut) of each row the search leaves visible."""
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text())
                for r in range(self.table.rowCount()) if not self.table.isRowHidden(r)]

    def _filter(self, text: str) -> None:
        needle = text.strip().casefold()
        for r in range(self.table.rowCount()):
            hay = f"{self.table.item(r, 0).text()} {self.table.item(r, 1).text()}".casefold()
            self.table.setRowHidden(r, bool(needle) and needle not in hay)


class AboutDialog(QDialog):
    """Name, version, library versions, the loaded model's summary and provenance, and licences."""

    def __init__(self, catalog: Any | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        title = QLabel(f"<h2>{APP_NAME} {__version__}</h2>"
                       "<p>See what a vision-language model sees: spatially grounded, named, "
                       "hierarchical concepts.</p>", self)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text_view = QTextBrowser(self)  # read-only; links open in the browser
        self.text_view.setOpenExternalLinks(True)
        self.text_view.setMarkdown(about_markdown(catalog))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.text_view)
        layout.addWidget(buttons)
        self.resize(720, 640)


def about_markdown(catalog: Any | None) -> str:
    """The About text as Markdown (the licence files are Markdown already)."""
    import pyqtgraph  # already imported by the image views; only its version is read here
    import PySide6

    parts = ["## Versions",
             f"- {APP_NAME} {__version__}", f"- Python {platform.python_version()}",
             f"- Qt {qVersion()}", f"- PySide6 {PySide6.__version__}", f"- pyqtgraph {pyqtgraph.__version__}",
             "## Model"]
    if catalog is None:
        parts.append("No concept model is loaded.")
    else:
        parts += [f"Backbone: `{catalog.backbone_id}` on `{catalog.device}`",
                  "```\n" + str(catalog.summary).strip() + "\n```", "### Provenance",
                  "```\n" + json.dumps(dict(catalog.provenance), indent=2, sort_keys=True, default=str) + "\n```"]
        parts += [f"- {n}" for n in getattr(catalog, "notices", ())]
    parts.append("## Licences")
    for path in licence_files():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            text = f"(cannot read {path.name}: {exc.strerror or exc})"
        # Shift the file's headings down two levels so they sit under "Licences".
        parts.append("\n".join("##" + line if line.startswith("#") else line for line in text.splitlines()))
    return "\n\n".join(parts) + "\n"


def licence_files() -> list[Path]:
    """The licence notes bundled in resources/: the known ones first, then any others found."""
    root = resources_dir()
    found = [root / rel for rel in LICENCE_FILES if (root / rel).is_file()]
    for pattern in _LICENCE_PATTERNS:
        for path in sorted(root.rglob(pattern)):
            if path.is_file() and path not in found:
                found.append(path)
    return found


def ask_yes_no(parent: QWidget | None, title: str, question: str) -> bool:
    """A modal Yes/No question shown as plain text (it quotes model, file and concept names)."""
    box = QMessageBox(QMessageBox.Icon.Question, title, question,
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    return box.exec() == QMessageBox.StandardButton.Yes


def show_error(parent: QWidget | None, title: str, message: str,
               details: str | BaseException | None = None) -> QMessageBox:
    """Show an error without blocking: a window-modal box opened with ``open()`` and returned.

    ``details`` (a traceback text, or an exception whose traceback is formatted) goes under
    "Show Details…", where a user can copy it into a bug report.  The box deletes itself when
    closed.
    """
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setTextFormat(Qt.TextFormat.PlainText)  # messages quote file, model and concept names: never markup
    if isinstance(details, BaseException):
        details = "".join(traceback.format_exception(type(details), details, details.__traceback__))
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
