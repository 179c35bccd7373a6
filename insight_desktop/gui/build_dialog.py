"""The "Build a model from my images" dialog: the GUI face of :func:`insight_desktop.core.build.build_model`.

The user picks a folder, a backbone, where to save the bundle and a few options; Build runs the
whole pipeline in a :class:`~insight_desktop.gui.jobs.BackgroundJob` (torch loads there, never on
the GUI thread) and shows each stage with a progress bar and an ETA. Cancel stops at the next safe
point; the core keeps finished work in ``BUNDLE.work/``, so building the same folder into the same
file with the same settings again continues where it stopped, and the dialog says so.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.build import BuildOptions
from .build_job import (
    ALL_STAGES,
    BACKBONES,
    DEVICES,
    REFERENCE,
    RESUME_NOTE,
    STAGE_TITLES,
    BuildRequest,
    default_output,
    eta_text,
    make_backbone,
    run_build,
)
from .jobs import BackgroundJob


class BuildModelDialog(QDialog):
    """Folder of images → a concept-model bundle, with progress, ETA and Cancel."""

    modelBuilt = Signal(str)   # the bundle's path; the dialog closes right after

    def __init__(self, parent: QWidget | None = None, folder: str | Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("Build a model from your images")
        self.setMinimumWidth(560)
        #: creates the backbone on the job thread: ``factory(name, device, dinoiser) -> Backbone``
        self.backbone_factory: Callable[..., Any] = make_backbone
        #: every option the form does not show (vocabularies, batch sizes, …)
        self.base_options = BuildOptions()
        self.job: BackgroundJob | None = None
        self.image_count = 0
        self._output_auto = True          # follow the folder until the user edits the output
        self._close_when_done = False     # the user asked to close: close once the job has ended
        self._built = False
        self._stage = ("", 0.0, 0.0)      # (stage, start time, fraction at start) for the ETA
        self._scan_timer = QTimer(self, singleShot=True, interval=250)
        self._scan_timer.timeout.connect(self.rescan)
        self._build_ui()
        if folder:
            self.folder_edit.setText(str(folder))
            self.rescan()

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        self.inputs = QWidget()
        form = QFormLayout(self.inputs)
        self.folder_edit = QLineEdit(placeholderText="Folder with your images (searched with its sub-folders)")
        self.folder_edit.textChanged.connect(self._folder_changed)
        form.addRow("Image folder:", _with_button(self.folder_edit, "Browse…", self.browse_folder))
        self.folder_status = QLabel("Choose a folder of images.", wordWrap=True, textFormat=Qt.TextFormat.PlainText)
        form.addRow("", self.folder_status)
        self.backbone_combo = QComboBox()
        for name, label in BACKBONES:
            self.backbone_combo.addItem(label, name)
        self.backbone_combo.setToolTip("The image/text encoder under the concepts. The demo backbone works "
                                       "offline; the reference one needs its weights on this computer.")
        self.backbone_combo.currentIndexChanged.connect(self._update_backbone)
        form.addRow("Backbone:", self.backbone_combo)
        self.dinoiser_edit = QLineEdit(placeholderText="CLIP-DINOiser last.pt (optional: without it, plain MaskCLIP)")
        self.dinoiser_row = _with_button(self.dinoiser_edit, "Browse…", self.browse_dinoiser)
        form.addRow("DINOiser weights:", self.dinoiser_row)
        self.output_edit = QLineEdit()
        self.output_edit.textEdited.connect(self._output_edited)
        self.output_edit.textChanged.connect(self._update_state)
        form.addRow("Save model as:", _with_button(self.output_edit, "Browse…", self.browse_output))
        self.output_status = QLabel(wordWrap=True, textFormat=Qt.TextFormat.PlainText)
        form.addRow("", self.output_status)
        form.addRow(self._options_box())
        outer = QVBoxLayout(self)
        outer.addWidget(self.inputs)
        # these labels quote file names and error messages: plain text, never markup
        self.stage_label = QLabel(RESUME_NOTE, wordWrap=True, textFormat=Qt.TextFormat.PlainText)
        self.progress_bar = QProgressBar(textVisible=False, maximum=1000)
        self.detail_label = QLabel(wordWrap=True, textFormat=Qt.TextFormat.PlainText)
        self.error_label = QLabel(wordWrap=True, visible=False, styleSheet="color: #c0392b;",
                                  textFormat=Qt.TextFormat.PlainText)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QPushButton("Show details", checkable=True, visible=False)
        self.details_text = QPlainTextEdit(readOnly=True, visible=False)
        self.details_button.toggled.connect(self.details_text.setVisible)
        for w in (self.stage_label, self.progress_bar, self.detail_label, self.error_label, self.details_button,
                  self.details_text):
            outer.addWidget(w)
        self.build_button = QPushButton("Build", default=True)
        self.build_button.clicked.connect(self.start_build)
        self.cancel_button = QPushButton("Cancel build", enabled=False)
        self.cancel_button.clicked.connect(self.cancel_build)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        self.cluster_button = QPushButton("Build on a cluster…", enabled=False)
        self.cluster_button.setToolTip("Write a Slurm script that builds this model on many GPUs instead of here")
        self.cluster_button.clicked.connect(self.open_cluster_script)
        self.cluster_dialog: QDialog | None = None
        buttons = QHBoxLayout()
        buttons.addWidget(self.cluster_button)
        buttons.addStretch(1)
        for b in (self.build_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        outer.addLayout(buttons)
        self._update_backbone()

    def _options_box(self) -> QGroupBox:
        box = QGroupBox("Options")
        form = QFormLayout(box)
        self.concepts_spin = QSpinBox(minimum=0, maximum=262_144, singleStep=256, value=0)
        self.concepts_spin.setSpecialValueText("Automatic (16 × feature size)")
        self.concepts_spin.setToolTip("How many concepts the dictionary learns. More finds finer concepts but "
                                      "needs more images and time; automatic is 8192 for ViT-B/16.")
        self.k_spin = QSpinBox(minimum=1, maximum=256, value=12)
        self.k_spin.setToolTip("How many concepts may describe one image patch at once (BatchTopK k). "
                               "Higher reconstructs better; lower gives crisper, sparser explanations.")
        self.levels_spin = QSpinBox(minimum=0, maximum=10, value=0)
        self.levels_spin.setSpecialValueText("Reference (6 levels)")
        self.levels_spin.setToolTip("Matryoshka levels, coarse to fine: each level holds twice the concepts of "
                                    "the one before. The reference split has 6 levels.")
        self.epochs_spin = QDoubleSpinBox(decimals=1, minimum=0.1, maximum=1000.0, singleStep=1.0, value=3.0)
        self.epochs_spin.setToolTip("Passes over all image patches while training. More helps small folders; "
                                    "time grows in proportion.")
        self.device_combo = QComboBox()
        for label, value in DEVICES:
            self.device_combo.addItem(label, value)
        self.device_combo.setToolTip("Where the backbone and the training run. CUDA needs an NVIDIA GPU.")
        for label, w in (("Concepts:", self.concepts_spin), ("Concepts per patch (k):", self.k_spin),
                         ("Levels:", self.levels_spin), ("Training epochs:", self.epochs_spin),
                         ("Device:", self.device_combo)):
            form.addRow(label, w)
        return box

    # ------------------------------------------------------------------ inputs
    @Slot()
    def browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an image folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    @Slot()
    def browse_dinoiser(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CLIP-DINOiser weights", "", "PyTorch checkpoint (*.pt *.pth)")
        if path:
            self.dinoiser_edit.setText(path)

    @Slot()
    def browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the model as", self.output_edit.text(),
                                              "Concept model (*.zip)")
        if path:
            self._output_auto = False
            self.output_edit.setText(path)

    @Slot()
    def rescan(self) -> None:
        """Count the folder's images (and follow it with the default output file)."""
        from ..core.images import scan_folder

        self._scan_timer.stop()
        text = self.folder_edit.text().strip()
        self.image_count = 0
        if not text:
            self.folder_status.setText("Choose a folder of images.")
        else:
            try:
                scan = scan_folder(Path(text).expanduser())
            except OSError as exc:
                self.folder_status.setText(f"Cannot use this folder: {getattr(exc, 'strerror', None) or exc}")
            else:
                self.image_count = len(scan.images)
                if self.image_count == 0:
                    self.folder_status.setText("No images in this folder or its sub-folders (JPEG, PNG, TIFF, "
                                               "WebP, BMP or GIF files are used).")
                else:
                    n = len(scan.skipped)
                    other = f"; {n} other file{' is' if n == 1 else 's are'} left out" if n else ""
                    self.folder_status.setText(f"{self.image_count} image{'s' * (self.image_count != 1)}{other}.")
                if self._output_auto:
                    self.output_edit.setText(str(default_output(text)))
        self._update_state()

    @Slot(str)
    def _folder_changed(self, _text: str) -> None:
        self._scan_timer.start()  # scan once typing pauses, not on every key

    @Slot(str)
    def _output_edited(self, _text: str) -> None:
        self._output_auto = False

    @Slot()
    def _update_backbone(self) -> None:
        self.dinoiser_row.setEnabled(self.backbone_combo.currentData() == REFERENCE)

    @Slot()
    def _update_state(self) -> None:
        out = self.output_edit.text().strip()
        ok_out = False
        if not out:
            self.output_status.setText("Choose where to save the model.")
        elif Path(out).expanduser().exists():
            self.output_status.setText("A file with this name exists already: choose another name.")
        else:
            ok_out = True
            resumable = Path(out).expanduser().with_name(Path(out).name + ".work").is_dir()
            self.output_status.setText("An unfinished build into this file was found: Build continues it "
                                       "(with the same settings)." if resumable else "")
        self.build_button.setEnabled(self.job is None and self.image_count > 0 and ok_out)
        self.cluster_button.setEnabled(self.job is None and self.image_count > 0 and bool(out))

    def request(self) -> BuildRequest:
        """The build the form describes."""
        levels = self.levels_spin.value()
        weights = [2.0 ** i for i in range(levels)]
        options = replace(self.base_options, n_concepts=self.concepts_spin.value() or None, k=self.k_spin.value(),
                          level_fractions=tuple(w / sum(weights) for w in weights) if levels else None,
                          train={**self.base_options.train, "epochs": self.epochs_spin.value()})
        return BuildRequest(folder=str(Path(self.folder_edit.text().strip()).expanduser()),
                            out=str(Path(self.output_edit.text().strip()).expanduser()),
                            backbone=self.backbone_combo.currentData(),
                            dinoiser=self.dinoiser_edit.text().strip() or None,
                            device=self.device_combo.currentData(), options=options)

    @Slot()
    def open_cluster_script(self) -> None:
        """Show the form's build as a torchrun command and a Slurm script to save (nothing runs here)."""
        from .cluster_dialog import ClusterScriptDialog

        self.cluster_dialog = ClusterScriptDialog(self.request(), self)
        self.cluster_dialog.open()

    # ------------------------------------------------------------------ running
    @Slot()
    def start_build(self) -> None:
        self.rescan()  # the folder or the output may have changed since the last look
        if not self.build_button.isEnabled():
            return
        from functools import partial

        self.job = BackgroundJob(partial(run_build, self.request(), self.backbone_factory), "build the model")
        self.job.progressed.connect(self._on_progress)
        self.job.succeeded.connect(self._on_succeeded)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.finished.connect(self._on_finished)
        self._set_running(True)
        self._show_error("", "", "")
        self._built = False
        self._stage = ("", 0.0, 0.0)
        self.stage_label.setText("Starting…")
        self.detail_label.setText("")
        self.progress_bar.setRange(0, 0)
        self.job.start()

    @Slot()
    def cancel_build(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.stage_label.setText("Stopping at the next safe point…")

    def _set_running(self, running: bool) -> None:
        self.inputs.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self._update_state()

    @Slot(str, float, str)
    def _on_progress(self, stage: str, fraction: float, detail: str) -> None:
        if self.job is None or self.job.cancel_requested():
            return  # keep "Stopping…" on screen
        now = time.monotonic()
        if stage != self._stage[0]:
            self._stage = (stage, now, max(fraction, 0.0))
        step = ALL_STAGES.index(stage) + 1 if stage in ALL_STAGES else 0
        title = STAGE_TITLES.get(stage, stage)
        self.stage_label.setText(f"Step {step} of {len(ALL_STAGES)}: {title}" if step else title)
        if fraction < 0:
            self.progress_bar.setRange(0, 0)  # busy indicator: no fraction to show
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(round(min(fraction, 1.0) * 1000))
        _, started, first = self._stage
        parts = [detail] if detail else []
        if 0 <= fraction < 1 and fraction - first > 0.01 and now - started > 2:
            parts.append(eta_text((now - started) * (1 - fraction) / (fraction - first)))
        self.detail_label.setText(" · ".join(parts))

    @Slot(object)
    def _on_succeeded(self, path: Any) -> None:
        self.stage_label.setText("The model is ready.")
        self._built = True
        self.modelBuilt.emit(str(path))

    @Slot(str, str, str)
    def _on_failed(self, title: str, message: str, details: str) -> None:
        self.stage_label.setText(title)
        self._show_error(title, message, details)

    @Slot()
    def _on_cancelled(self) -> None:
        self.stage_label.setText("Build stopped. " + RESUME_NOTE)

    @Slot()
    def _on_finished(self) -> None:
        self.job = None
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.detail_label.setText("")
        self._set_running(False)
        close, self._close_when_done = self._close_when_done, False
        if self._built:
            self.accept()
        elif close:
            super().reject()

    def _show_error(self, title: str, message: str, details: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        self.details_text.setPlainText(details)
        self.details_button.setVisible(bool(details))
        self.details_button.setChecked(False)

    # ------------------------------------------------------------------ closing
    def is_building(self) -> bool:
        return self.job is not None

    def confirm_stop(self) -> bool:
        answer = QMessageBox.question(self, "Stop the build?", "A model is being built. Stop it and close?\n\n"
                                      + RESUME_NOTE, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def reject(self) -> None:
        """Close, Esc and the window's close button: while building, ask, then stop and close."""
        if self.job is None:
            super().reject()
        elif not self._close_when_done and self.confirm_stop() and self.job is not None:
            self._close_when_done = True
            self.cancel_build()


def _with_button(edit: QLineEdit, text: str, slot) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    button = QPushButton(text)
    button.clicked.connect(slot)
    layout.addWidget(button)
    return row
