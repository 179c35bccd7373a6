"""The model manager: what is installed (sizes, where, licences), getting the reference weights
(download or import), importing the authors' release or a bundle, and removing.

Every slow step (download, validation of an imported file, assembling a release) runs in a
:class:`~insight_desktop.gui.jobs.BackgroundJob` with progress and Cancel; the lists are re-read
from the :class:`~insight_desktop.core.store.ModelStore` afterwards.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import user_message
from ..core.fileio import format_size
from ..core.store import ModelStore, StoreError
from .dialogs import ask_yes_no
from .jobs import BackgroundJob
from .widgets.plain_text import escaped

KIND_TITLES = {"bundle": "Concept model", "openclip": "OpenCLIP weights", "dinoiser": "CLIP-DINOiser heads",
               "sae-release": "Authors' SAE release"}
IMPORT_FILTER = ("Models and weights (*.zip *.safetensors *.bin *.pt *.pth manifest.json);;All files (*)")


def _item(text: str, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    item.setToolTip(tip or text)
    return item


def _table(headers: tuple[str, ...]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    t.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
    t.verticalHeader().hide()
    t.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # long paths keep their start and their file name
    header = t.horizontalHeader()
    header.setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
    header.resizeSection(0, 340)
    return t


class ReleaseImportDialog(QDialog):
    """Asks for the three files of the authors' release."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import the authors' Insight release")
        self.sae, self.names, self.d = QLineEdit(), QLineEdit(), QLineEdit()
        form = QFormLayout(self)
        form.addRow(QLabel("The SAE state dict, the concept names and (optionally) the D matrix of the release:"))
        for label, edit, what in (("SAE weights", self.sae, "sae"), ("Concept names", self.names, "names"),
                                  ("D matrix (optional)", self.d, "d")):
            row = QHBoxLayout()
            row.addWidget(edit)
            browse = QPushButton("Browse…")
            browse.setObjectName(what)
            browse.clicked.connect(self._browse)
            row.addWidget(browse)
            form.addRow(label, row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    @Slot()
    def _browse(self) -> None:
        edit = {"sae": self.sae, "names": self.names, "d": self.d}[self.sender().objectName()]
        path, _ = QFileDialog.getOpenFileName(self, "Choose a file")
        if path:
            edit.setText(path)


class ModelManagerDialog(QDialog):
    """Installed models and known weights; emits ``modelChosen`` with a concept model to open."""

    modelChosen = Signal(str)

    def __init__(self, store: ModelStore | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(900, 560)
        self.store = store or ModelStore()
        self.job: BackgroundJob | None = None
        self._items: dict = {}      # id → InstalledModel, as of the last refresh (no disk reads per click)
        self._entries: dict = {}    # id → KnownModel
        self.installed = _table(("Name", "Kind", "Size", "Licence", "Where"))
        self.installed.itemSelectionChanged.connect(self._update_buttons)
        self.installed.itemDoubleClicked.connect(self.open_selected)
        self.available = _table(("Known weights", "Kind", "Size", "Licence", "Status", "Hash"))
        self.available.itemSelectionChanged.connect(self._update_buttons)
        self.open_button = QPushButton("Open")
        self.remove_button = QPushButton("Remove…")
        self.download_button = QPushButton("Download")
        self.import_button = QPushButton("Import File…")
        self.release_button = QPushButton("Import Authors' Release…")
        self.build_button = QPushButton("Build from a Folder…")
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.RichText)  # our own markup; names and messages inside are escaped
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        for button, slot in ((self.open_button, self.open_selected), (self.remove_button, self.remove_selected),
                             (self.download_button, self.download_selected), (self.import_button, self.ask_import),
                             (self.release_button, self.ask_import_release), (self.build_button, self.build),
                             (self.cancel_button, self.cancel)):
            button.clicked.connect(slot)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>Installed</b> — in {escaped(str(self.store.root))}"))
        layout.addWidget(self.installed, 3)
        row = QHBoxLayout()
        for w in (self.open_button, self.remove_button):
            row.addWidget(w)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(QLabel("<b>Get the reference Insight model</b> — OpenCLIP ViT-B/16 + CLIP-DINOiser + the "
                                "authors' SAE: download once, or import files carried over from another computer"))
        layout.addWidget(self.available, 2)
        row = QHBoxLayout()
        for w in (self.download_button, self.import_button, self.release_button, self.build_button):
            row.addWidget(w)
        row.addStretch(1)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.close_buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.close_buttons.rejected.connect(self.reject)  # reject() also stops a running job
        layout.addWidget(self.close_buttons)
        self._set_busy(False)
        self.refresh()

    # ------------------------------------------------------------------ lists
    def refresh(self) -> None:
        try:
            installed, catalogue = self.store.installed(), self.store.known_models()
        except StoreError as exc:
            self.status.setText(escaped(user_message(exc)))
            installed, catalogue = [], ()
        self._items = {m.id: m for m in installed}
        self._entries = {e.id: e for e in catalogue}
        self.installed.setRowCount(len(installed))
        for r, m in enumerate(installed):
            name = m.title + (" (files missing)" if m.broken else "")
            cells = (_item(name, f"{m.id}: {m.source}"), _item(KIND_TITLES.get(m.kind, m.kind)),
                     _item(format_size(m.size_bytes)), _item(m.licence), _item(str(m.path)))
            for c, cell in enumerate(cells):
                cell.setData(Qt.ItemDataRole.UserRole, m.id)
                self.installed.setItem(r, c, cell)
        have = {m.id for m in installed if not m.broken}
        self.available.setRowCount(len(catalogue))
        for r, e in enumerate(catalogue):
            state = "installed" if e.id in have else ("import only" if e.import_only else "not installed")
            how = ("the catalogue gives the file's sha256" if e.sha256 else
                   "the catalogue gives git's object id of the file at a fixed commit")
            pin = (("pinned", how) if e.pinned else ("", "import only")
                   if e.import_only else ("unpinned: hash not known in advance",
                                          e.unpinned or "no sha256 in the catalogue: the first download is trusted"))
            cells = (_item(e.title, e.notes or e.homepage or ""), _item(KIND_TITLES.get(e.kind, e.kind)),
                     _item(format_size(e.size_bytes)), _item(e.licence), _item(state), _item(*pin))
            for c, cell in enumerate(cells):
                cell.setData(Qt.ItemDataRole.UserRole, e.id)
                self.available.setItem(r, c, cell)
        self._update_buttons()

    def installed_ids(self) -> list[str]:
        return [self.installed.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(self.installed.rowCount())]

    def _selected(self, table: QTableWidget) -> str | None:
        rows = table.selectionModel().selectedRows()
        return table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole) if rows else None

    @Slot()
    def _update_buttons(self) -> None:
        busy = self.job is not None
        chosen = self._items.get(self._selected(self.installed))
        self.open_button.setEnabled(not busy and chosen is not None and chosen.kind == "bundle" and not chosen.broken)
        self.remove_button.setEnabled(not busy and chosen is not None and chosen.removable)
        entry = self._entries.get(self._selected(self.available))
        self.download_button.setEnabled(not busy and entry is not None and not entry.import_only)
        self.download_button.setToolTip(entry.notes if entry is not None and entry.import_only else "")
        for b in (self.import_button, self.release_button, self.build_button):
            b.setEnabled(not busy)

    # ------------------------------------------------------------------ actions
    @Slot()
    def open_selected(self) -> None:
        item = self._items.get(self._selected(self.installed))
        if item is not None and item.kind == "bundle" and not item.broken:
            self.modelChosen.emit(str(item.path))
            self.accept()

    @Slot()
    def remove_selected(self) -> None:
        item = self._items.get(self._selected(self.installed))
        if item is None or not item.removable:
            return
        question = f"Remove '{item.title}' ({format_size(item.size_bytes)}) from {item.path}?"
        if ask_yes_no(self, "Remove model", question):
            self._run(f"remove '{item.title}'", lambda progress, stop: self.store.remove(item.id))

    @Slot()
    def download_selected(self) -> None:
        entry_id = self._selected(self.available)
        if entry_id:
            self._run(f"download {entry_id}", _download_job(self.store, entry_id))

    @Slot()
    def ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model or weights file", "", IMPORT_FILTER)
        if path:
            self.import_path(path)

    def import_path(self, path: str | Path) -> None:
        p = Path(path)
        p = p.parent if p.name == "manifest.json" else p
        self._run(f"import '{p.name}'", lambda progress, stop: self.store.import_file(p))

    @Slot()
    def ask_import_release(self) -> None:
        dialog = ReleaseImportDialog(self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        sae, names, d = dialog.sae.text().strip(), dialog.names.text().strip(), dialog.d.text().strip() or None
        if not sae or not names:
            self.status.setText("The release needs at least its SAE weights and its concept names.")
            return
        self._run("import the authors' release", lambda progress, stop: self.store.import_release(sae, names, d))

    @Slot()
    def build(self) -> None:
        from .build_dialog import BuildModelDialog

        dialog = BuildModelDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.modelBuilt.connect(self._built)
        dialog.open()

    @Slot(str)
    def _built(self, path: str) -> None:
        self.modelChosen.emit(path)
        self.accept()

    @Slot()
    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Stopping… (a download keeps what it has and resumes next time)")

    # ------------------------------------------------------------------ jobs
    def _run(self, what: str, fn) -> None:
        self.job = BackgroundJob(fn, what, self)
        self.job.progressed.connect(self._on_progress)
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.finished.connect(self._on_finished)
        self.status.setText(what[0].upper() + what[1:] + "…")
        self._set_busy(True)
        self.job.start()

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self._update_buttons()

    @Slot(str, float, str)
    def _on_progress(self, stage: str, fraction: float, detail: str) -> None:
        if fraction < 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(1000 * fraction))
        self.status.setText(escaped(f"{stage}: {detail}" if detail else stage))

    @Slot(object)
    def _on_done(self, result) -> None:
        title = getattr(result, "title", None)
        self.status.setText(escaped(f"Done: {title} is installed." if title else "Done."))

    @Slot(str, str, str)
    def _on_failed(self, title: str, message: str, details: str) -> None:
        self.status.setText(f"<b>{escaped(title)}</b>: {escaped(message)}")

    @Slot()
    def _on_cancelled(self) -> None:
        self.status.setText("Stopped. A download resumes from where it stopped when you start it again.")

    @Slot()
    def _on_finished(self) -> None:
        self.job = None
        self._set_busy(False)
        self.refresh()

    def reject(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job.wait(10_000)
        super().reject()


def _download_job(store: ModelStore, entry_id: str):
    """``fn(progress, should_stop)`` downloading one catalogue entry, with speed and ETA as detail."""

    def run(progress, should_stop):
        def report(p) -> None:
            eta = f", about {p.eta_seconds:.0f} s left" if p.eta_seconds is not None else ""
            total = f" of {format_size(p.total)}" if p.total else ""
            progress(f"Downloading {entry_id}", p.fraction if p.fraction is not None else -1.0,
                     f"{format_size(p.done)}{total} at {format_size(int(p.bytes_per_second))}/s{eta}")

        return store.get(entry_id, progress=report, should_stop=should_stop)

    return run
