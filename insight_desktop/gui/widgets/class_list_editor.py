"""An editable list of class names, and the files it reads and writes (one class per line, UTF-8)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.fileio import atomic_write_bytes
from ...core.tasks.prompts import ClassListError, read_class_file
from ..actions import TYPING_TARGET
from ..document import CLASS_PRESETS
from .wrapping_row import WrappingRow


class ClassListEditor(QWidget):
    """An editable list of class names: Add / Remove, double-click (or F2) to rename, Delete removes,
    drag to reorder, presets, Load… / Save… (plain text, one class per line, UTF-8).

    Every user edit can be undone (Undo button or Ctrl+Z inside the editor), a preset or a loaded
    file included: both replace the whole list."""

    HISTORY = 50  # undo steps kept

    edited = Signal(tuple)   # the names after a user edit
    problem = Signal(str)    # a file could not be read or written ('' clears it)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.setToolTip("Double-click a class to rename it; Delete removes; drag to reorder")
        self.list.installEventFilter(self)
        self.list.setProperty(TYPING_TARGET, True)  # letters typed here are class names, not R/S shortcuts
        self.add_button, self.remove_button = QPushButton("Add"), QPushButton("Remove")
        self.load_button, self.save_button = QPushButton("Load…"), QPushButton("Save…")
        self.presets = QComboBox()
        self.presets.addItems(list(CLASS_PRESETS))
        self.presets.setPlaceholderText("Presets…")
        self.presets.setCurrentIndex(-1)
        self.presets.setToolTip("Replace the list with a preset (Ctrl+Z brings the old list back)")
        self.undo_button = QToolButton()
        self.undo_button.setText("Undo")
        self.undo_button.setToolTip("Undo the last change to the list (Ctrl+Z)")
        self.undo_button.setEnabled(False)
        # A flow layout: on a narrow panel (a laptop at 150 %) the buttons wrap onto a second row
        # instead of widening the panel past the screen, which scrolled it sideways.
        self.buttons = WrappingRow(self.add_button, self.remove_button, self.undo_button, self.presets,
                                   self.load_button, self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addWidget(self.buttons)
        self._folder = ""
        self._syncing = False
        self._shown: tuple[str, ...] = ()           # the names as last emitted or set
        self._history: list[tuple[str, ...]] = []   # earlier lists, newest last
        undo = QShortcut(QKeySequence.StandardKey.Undo, self, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        undo.activated.connect(self.undo)
        self.undo_button.clicked.connect(self.undo)
        self.add_button.clicked.connect(self.add_class)
        self.remove_button.clicked.connect(self.remove_selected)
        self.load_button.clicked.connect(self._load_clicked)
        self.save_button.clicked.connect(self._save_clicked)
        self.presets.activated.connect(self._preset_chosen)
        self.list.itemChanged.connect(self._emit)
        self.list.model().rowsMoved.connect(self._emit)
        self.list.itemDelegate().closeEditor.connect(self._editor_closed)

    def names(self) -> tuple[str, ...]:
        return tuple(self.list.item(i).text().strip() for i in range(self.list.count()))

    def set_names(self, names) -> None:
        """Show ``names`` (no signal: this is the document speaking, not the user, so the undo history,
        which belongs to the old list, is dropped)."""
        if tuple(names) != self._shown:
            self._history.clear()
            self.undo_button.setEnabled(False)
        self._shown = tuple(names)
        self._show(names)

    def undo(self) -> None:
        """Bring back the list before the last user edit."""
        if not self._history:
            return
        self._shown = self._history.pop()
        self.undo_button.setEnabled(bool(self._history))
        self._show(self._shown)
        self.edited.emit(self._shown)

    def _show(self, names) -> None:
        self._syncing = True
        self.list.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
        self._syncing = False

    def add_class(self) -> None:
        """Append an empty row and open its editor; a row left empty is dropped when the editor closes."""
        item = QListWidgetItem("")
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
        self._syncing = True
        self.list.addItem(item)
        self._syncing = False
        self.list.setCurrentItem(item)
        self.list.editItem(item)

    def remove_selected(self) -> None:
        rows = sorted((self.list.row(i) for i in self.list.selectedItems()), reverse=True)
        for row in rows:
            self.list.takeItem(row)
        if rows:
            self._emit()

    def load(self, path: str | Path) -> bool:
        try:
            names = read_class_file(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ClassListError) as exc:
            self.problem.emit(f"Cannot load '{Path(path).name}': {getattr(exc, 'strerror', None) or exc}")
            return False
        self._show(names)
        self.problem.emit("")
        self._emit()
        return True

    def save(self, path: str | Path) -> bool:
        try:
            atomic_write_bytes(path, "".join(f"{n}\n" for n in self.names() if n).encode("utf-8"))
        except OSError as exc:
            self.problem.emit(f"Cannot save '{Path(path).name}': {exc.strerror or exc}")
            return False
        self.problem.emit("")
        return True

    # ------------------------------------------------------------------ slots
    def _emit(self, *_) -> None:
        if self._syncing:
            return
        names = self.names()
        if names != self._shown:
            self._history = [*self._history, self._shown][-self.HISTORY:]
            self.undo_button.setEnabled(True)
            self._shown = names
        self.edited.emit(names)

    def _editor_closed(self, *_) -> None:
        blank = [i for i in range(self.list.count()) if not self.list.item(i).text().strip()]
        for row in reversed(blank):
            self.list.takeItem(row)
        if blank:
            self._emit()

    def _preset_chosen(self, index: int) -> None:
        name = self.presets.itemText(index)
        self.presets.setCurrentIndex(-1)  # the combo is an action, not a state: show "Presets…" again
        self._show(CLASS_PRESETS[name])
        self._emit()

    def _load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load class list", self._folder,
                                              "Class lists (*.txt);;All files (*)")
        if path:
            self._folder = str(Path(path).parent)
            self.load(path)

    def _save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save class list", self._folder or "classes.txt",
                                              "Class lists (*.txt);;All files (*)")
        if path:
            self._folder = str(Path(path).parent)
            self.save(path)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self.list and event.type() == QEvent.Type.KeyPress
                and event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace)
                and self.list.state() != QAbstractItemView.State.EditingState):
            self.remove_selected()
            return True
        return super().eventFilter(watched, event)
