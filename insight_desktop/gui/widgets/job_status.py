"""The status bar's right side: job progress with a Cancel button, and the device in use."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget

DEVICES = (("Auto", "auto"), ("CPU", "cpu"), ("CUDA", "cuda"))


class JobStatus(QWidget):
    """Shows what the worker does and lets the user stop it or pick the device."""

    cancelRequested = Signal()
    deviceChosen = Signal(str)   # "auto", "cpu" or "cuda"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.PlainText)  # it quotes file and model names
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setFixedWidth(160)
        self.bar.setTextVisible(False)
        self.cancel = QToolButton()
        self.cancel.setText("Cancel")
        self.cancel.setToolTip("Stop the running job (Esc)")
        self.cancel.clicked.connect(self.cancelRequested)
        self.device = QComboBox()
        for label, value in DEVICES:
            self.device.addItem(label, value)
        self.device.setToolTip("Where the model runs: Auto uses a CUDA GPU when there is one")
        self.device.activated.connect(self._on_device)
        self.in_use = QLabel()
        self.in_use.setToolTip("The device the loaded model runs on")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.text, self.bar, self.cancel, QLabel("Device"), self.device, self.in_use):
            layout.addWidget(w)
        self.set_idle()

    @Slot(str, float)
    def set_busy(self, text: str, fraction: float) -> None:
        self.text.setText(text)
        if fraction < 0:
            self.bar.setRange(0, 0)  # a busy indicator: model loading has no measurable steps
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(round(1000 * min(max(fraction, 0.0), 1.0)))
        for w in (self.text, self.bar, self.cancel):
            w.setVisible(True)

    @Slot()
    def set_idle(self) -> None:
        for w in (self.text, self.bar, self.cancel):
            w.setVisible(False)

    def set_device_choice(self, device: str) -> None:
        i = self.device.findData(device)
        self.device.setCurrentIndex(max(i, 0))

    def device_choice(self) -> str:
        return str(self.device.currentData())

    def set_device_in_use(self, device: str) -> None:
        self.in_use.setText(f"({device})" if device else "")

    @Slot(int)
    def _on_device(self, index: int) -> None:
        self.deviceChosen.emit(str(self.device.itemData(index)))
