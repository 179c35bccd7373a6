"""GUI fixtures: a real concept bundle on the tiny OpenCLIP backbone, a real Analysis of a
sample photo, a Document holding them and a whole window — so widget tests show real data in
seconds; plus the helpers several test files share (showing a widget, zooming on a pixel)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRectF, QSettings
from PySide6.QtWidgets import QApplication, QWidget

from insight_desktop.core.paths import resource_path

CLASSES = ("cat", "coffee cup", "sky")


@pytest.fixture(scope="session", autouse=True)
def garbage_collected_on_the_gui_thread(qapp):
    """As in the app (gui.app.collect_garbage_on_gui_thread): with automatic collection on, a
    worker thread could collect a closed window's Qt objects and deadlock with the GUI thread."""
    import gc

    from insight_desktop.gui.app import collect_garbage_on_gui_thread

    collect_garbage_on_gui_thread(qapp)
    yield
    qapp._insight_gc.timer.stop()
    gc.enable()


@pytest.fixture(autouse=True)
def own_analysis_cache(tmp_path, monkeypatch):
    """Each test's windows keep their computed analyses in a folder of its own, so that what one
    test computed is not another's instant disk-cache hit (core.analysis_cache)."""
    from insight_desktop.core import analysis_cache

    monkeypatch.setattr(analysis_cache, "default_folder", lambda: tmp_path / "analyses")
    return tmp_path / "analyses"


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path, monkeypatch):
    """Each test's windows keep their curation files (and models) in a data folder of its own, so a
    rename one test makes is not restored in the next (gui.review keeps renames per model)."""
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model_files, tmp_path_factory):
    """A concept bundle (64 concepts, 2 levels, names c0…c63, 1 is a parent of 0) on the tiny
    clip-dinoiser backbone; its manifest records how to recreate the backbone."""
    from insight_desktop.core.backbones import create_backbone
    from tests.core.fakes import random_sae, write_test_bundle

    bb = create_backbone("clip-dinoiser", device="cpu", model=str(tiny_model_files.config_path),
                         pretrained=str(tiny_model_files.checkpoint_path), dinoiser=str(tiny_model_files.dinoiser_path))
    return write_test_bundle(tmp_path_factory.mktemp("bundle") / "tiny.zip", bb,
                             random_sae(bb.feature_dim, 64, k=6, threshold=0.0))


@pytest.fixture(scope="session")
def tiny_analyzer(tiny_bundle):
    from insight_desktop.core.engine import Analyzer

    analyzer = Analyzer(tiny_bundle, device="cpu")
    yield analyzer
    analyzer.close()


@pytest.fixture(scope="session")
def sample_rgb():
    from insight_desktop.core.images import load_image

    return load_image(resource_path("samples", "chelsea.png"))


@pytest.fixture(scope="session")
def tiny_catalog(tiny_analyzer):
    return tiny_analyzer.catalog()


@pytest.fixture(scope="session")
def tiny_analysis(tiny_analyzer, sample_rgb):
    """A full Analysis (concepts, segmentation with CLASSES, zero-shot classification) of chelsea."""
    return tiny_analyzer.analyze(sample_rgb, classes=list(CLASSES))


@pytest.fixture
def document(qtbot, tiny_catalog, tiny_analysis, sample_rgb):
    """A Document with the tiny model, chelsea and its analysis (concept = the top one)."""
    from insight_desktop.core.paths import resource_path as rp
    from insight_desktop.gui.document import Document

    doc = Document()
    doc.set_catalog(tiny_catalog)
    doc.set_image(rp("samples", "chelsea.png"), sample_rgb)
    doc.set_classes(CLASSES)
    doc.set_analysis(tiny_analysis)
    return doc


def visible_pixels(image: np.ndarray) -> int:
    """How many pixels of an RGBA rendering are not fully transparent."""
    return int(np.count_nonzero(image[..., 3])) if image.ndim == 3 and image.shape[2] == 4 else image.size


@pytest.fixture
def window(qtbot, tmp_path, tiny_bundle):
    """A shown MainWindow on CPU whose settings live in a temporary ini file."""
    from insight_desktop.gui.main_window import MainWindow
    from insight_desktop.gui.settings import AppSettings

    w = MainWindow(AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)))
    qtbot.addWidget(w)
    w.status.set_device_choice("cpu")
    w.show()
    yield w
    w.close()


def wait_for_analysis(qtbot, window, timeout=60_000):
    """Wait until the window shows an analysis and its worker is idle; return the analysis."""
    qtbot.waitUntil(lambda: window.document.analysis is not None and not window.worker.is_busy, timeout=timeout)
    return window.document.analysis


def show_widget(qtbot, widget: QWidget, width: int | None = None, height: int | None = None):
    """Show ``widget`` (at width × height when given), closed with the test; wait until it is on screen."""
    qtbot.addWidget(widget)
    if width is not None and height is not None:
        widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def zoom_on(canvas, y: int, x: int) -> QPoint:
    """Zoom ``canvas`` so one image pixel spans several screen pixels; return the viewport point of (y, x)."""
    canvas.viewbox.setRange(QRectF(x - 15, y - 15, 30, 30), padding=0)
    QApplication.processEvents()
    return canvas.image_to_view(y + 0.5, x + 0.5).toPoint()
