"""The first-run dialog: start with the demo model (already open), get the reference Insight
model (download or import, in the model manager), or build a model from a folder of images."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QCommandLinkButton, QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from ..core.store import DEMO_ID, ModelStore
from .screen_fit import centre_on_screen


class FirstRunDialog(QDialog):
    """Three ways to start; ``modelChosen`` carries a concept model to open."""

    modelChosen = Signal(str)

    def __init__(self, store: ModelStore | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Welcome to Insight Desktop")
        self.setMinimumWidth(560)
        self.store = store or ModelStore()
        intro = QLabel("Insight shows where a vision model's concepts live in your images, how they relate, "
                       "and why it segments and classifies as it does. Which concept model do you want to use? "
                       "(Later: <i>File → Manage Models…</i>)")
        intro.setWordWrap(True)
        self.demo = QCommandLinkButton("Start with the demo model",
                                       "Already loading, and works offline: a small stand-in model with real weights "
                                       "(EfficientNet-Lite0 + MiniLM), 1024 concepts.")
        self.reference = QCommandLinkButton("Get the reference Insight model",
                                            "OpenCLIP ViT-B/16 + CLIP-DINOiser + the authors' SAE: download once "
                                            "(about 600 MB) or import files you carried over; then it works offline.")
        self.build = QCommandLinkButton("Build a model from my images",
                                        "Learn concepts from a folder of your own images, on this computer.")
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        for button, slot in ((self.demo, self.choose_demo), (self.reference, self.open_manager),
                             (self.build, self.open_builder)):
            button.clicked.connect(slot)
            layout.addWidget(button)
        self.close_buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.close_buttons.rejected.connect(self.reject)  # keep whatever model is open (the demo, loading)
        layout.addWidget(self.close_buttons)
        self.demo.setEnabled(self.store.find(DEMO_ID) is not None)
        centre_on_screen(self)  # not on the main window, which may be larger than the screen

    @Slot()
    def choose_demo(self) -> None:
        demo = self.store.find(DEMO_ID)
        if demo is not None:
            self.modelChosen.emit(str(demo.path))
        self.accept()

    @Slot()
    def open_manager(self) -> None:
        from .model_manager import ModelManagerDialog

        self.manager = ModelManagerDialog(self.store, self.parentWidget())
        self.manager.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.manager.modelChosen.connect(self.modelChosen)
        self.accept()
        self.manager.open()

    @Slot()
    def open_builder(self) -> None:
        from .build_dialog import BuildModelDialog

        self.builder = BuildModelDialog(self.parentWidget())
        self.builder.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.builder.modelBuilt.connect(self.modelChosen)
        self.accept()
        self.builder.open()
