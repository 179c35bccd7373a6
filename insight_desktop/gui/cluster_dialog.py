""""Build on a cluster…": the Build dialog's build, written as a Slurm script instead of run here.

The user picks nodes, GPUs per node, partition, account and a time limit; the dialog shows the
``torchrun`` command and the whole ``sbatch`` script as they type (rendered by
:mod:`insight_desktop.core.cluster_script`, pure text) and saves the script atomically. Nothing
runs here and nothing is sent anywhere: the user copies the script to the cluster and submits
it with ``sbatch``. The folder and output paths start as this computer's and can be changed to
where the cluster sees them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.cluster_script import (
    ClusterJob,
    ClusterScriptError,
    build_arguments,
    sbatch_script,
    torchrun_command,
    write_script,
)
from .build_job import REFERENCE, BuildRequest

HELP = ("Copy the script to the cluster and submit it with sbatch. The image folder and the model file "
        "must be on a file system every node sees; if the job runs out of time, submitting the same "
        "script again continues it.")
WEIGHTS = (" The reference backbone needs its weights in the cluster's model store once (insight models get "
           "openclip-vit-b-16-laion2b, insight models get clip-dinoiser).")
#: the DINOiser heads the dialog's build uses when none is chosen (the Build dialog takes the store's)
STORE_DINOISER = "store:clip-dinoiser"


class ClusterScriptDialog(QDialog):
    """Nodes × GPUs, partition and time → the torchrun command and an sbatch script, saved atomically."""

    def __init__(self, request: BuildRequest, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Build on a cluster")
        self.setMinimumWidth(640)
        self.request = request
        self.help = HELP + (WEIGHTS if request.backbone == REFERENCE else "")
        self.saved_path: Path | None = None
        self._build_ui()
        self.refresh()

    def _build_ui(self) -> None:
        form = QFormLayout()
        self.folder_edit = QLineEdit(self.request.folder)
        self.folder_edit.setToolTip("The image folder as the cluster's nodes see it")
        self.out_edit = QLineEdit(self.request.out)
        self.out_edit.setToolTip("Where the cluster writes the model (its work folder goes next to it)")
        self.nodes_spin = QSpinBox(minimum=1, maximum=4096, value=1)
        self.gpus_spin = QSpinBox(minimum=1, maximum=64, value=8)
        self.cpus_spin = QSpinBox(minimum=1, maximum=256, value=8)
        self.cpus_spin.setToolTip("CPU cores per GPU, for decoding images while the GPU extracts features")
        self.partition_edit = QLineEdit(placeholderText="the cluster's default")
        self.account_edit = QLineEdit(placeholderText="none")
        self.time_edit = QLineEdit("24:00:00")
        self.time_edit.setToolTip("Slurm's time limit: HH:MM:SS or days-HH:MM:SS")
        self.setup_edit = QLineEdit(ClusterJob("", "").setup)
        self.setup_edit.setToolTip("A shell line that makes `python` the environment with insight-desktop installed")
        for label, w in (("Image folder (on the cluster):", self.folder_edit),
                         ("Save model as (on the cluster):", self.out_edit), ("Nodes:", self.nodes_spin),
                         ("GPUs per node:", self.gpus_spin), ("CPUs per GPU:", self.cpus_spin),
                         ("Partition:", self.partition_edit), ("Account:", self.account_edit),
                         ("Time limit:", self.time_edit), ("Environment:", self.setup_edit)):
            form.addRow(label, w)
            signal = w.valueChanged if isinstance(w, QSpinBox) else w.textChanged
            signal.connect(self.refresh)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.command_text = QPlainTextEdit(readOnly=True, maximumHeight=90)
        self.script_text = QPlainTextEdit(readOnly=True)
        for w in (self.command_text, self.script_text):
            w.setFont(mono)
            w.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.error_label = QLabel(wordWrap=True, visible=False, styleSheet="color: #c0392b;",
                                  textFormat=Qt.TextFormat.PlainText)
        self.status_label = QLabel(self.help, wordWrap=True, textFormat=Qt.TextFormat.PlainText)
        self.copy_button = QPushButton("Copy command")
        self.copy_button.clicked.connect(self.copy_command)
        self.save_button = QPushButton("Save script…", default=True)
        self.save_button.clicked.connect(self.save_script)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.copy_button, self.save_button, close):
            buttons.addWidget(b)
        outer = QVBoxLayout(self)
        outer.addLayout(form)
        outer.addWidget(QLabel("Command (on one node, or on each node):"))
        outer.addWidget(self.command_text)
        outer.addWidget(QLabel("Slurm script:"))
        outer.addWidget(self.script_text, 1)
        outer.addWidget(self.error_label)
        outer.addWidget(self.status_label)
        outer.addLayout(buttons)

    def job(self) -> ClusterJob:
        """The job the form describes (not yet validated)."""
        r = self.request
        dinoiser = r.dinoiser or (STORE_DINOISER if r.backbone == REFERENCE else None)
        return ClusterJob(folder=self.folder_edit.text().strip(), out=self.out_edit.text().strip(),
                          build_args=build_arguments(r.backbone, r.options, dinoiser),
                          nodes=self.nodes_spin.value(), gpus_per_node=self.gpus_spin.value(),
                          cpus_per_gpu=self.cpus_spin.value(), partition=self.partition_edit.text().strip(),
                          account=self.account_edit.text().strip(), time_limit=self.time_edit.text().strip(),
                          setup=self.setup_edit.text().strip())

    @Slot()
    def refresh(self) -> None:
        """Render the command and the script, or say what is wrong with the options."""
        try:
            job = self.job()
            command, script = torchrun_command(job), sbatch_script(job)
        except ClusterScriptError as exc:
            self.error_label.setText(f"Cannot write the script: {exc}.")
            self.error_label.setVisible(True)
            self.save_button.setEnabled(False)
            self.copy_button.setEnabled(False)
            return
        self.error_label.setVisible(False)
        self.save_button.setEnabled(True)
        self.copy_button.setEnabled(True)
        self.command_text.setPlainText(command)
        self.script_text.setPlainText(script)

    @Slot()
    def copy_command(self) -> None:
        QGuiApplication.clipboard().setText(self.command_text.toPlainText())

    @Slot()
    def save_script(self) -> None:
        start = str(Path(self.request.out).with_suffix("").with_name(Path(self.request.out).stem + ".sbatch"))
        path, _ = QFileDialog.getSaveFileName(self, "Save the Slurm script", start, "Slurm script (*.sbatch *.sh)")
        if not path:
            return
        try:
            self.saved_path = write_script(path, sbatch_script(self.job()))
        except ClusterScriptError:
            return  # refresh() already says why and keeps Save disabled
        except OSError as exc:
            self.error_label.setText(f"Could not save {path}: {exc.strerror or exc}")
            self.error_label.setVisible(True)
            return
        saved = self.saved_path
        self.status_label.setText(f"Saved {saved}. On the cluster: sbatch {saved.name}\n\n{self.help}")
