"""BuildModelDialog: a folder of images → a real bundle through the real build_model, with stage
progress, Cancel (resumable), clear messages for an empty folder and for missing weights."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from insight_desktop.core.build import BuildOptions
from insight_desktop.gui.build_dialog import BuildModelDialog
from insight_desktop.gui.build_job import REFERENCE, eta_text
from tests.core.fakes import write_block_photos

WORDS = ["red", "green", "blue", "stripes", "dots", "sky", "grass", "water", "stone", "wood", "metal", "cloud"]


@pytest.fixture
def photos(tmp_path):
    """Six small photos of coloured blocks (and a note that is not an image)."""
    folder = write_block_photos(tmp_path / "holiday", 6, seed=3)
    (folder / "notes.txt").write_text("not an image")
    return folder


class Factory:
    """Stands in for the dialog's backbone factory: the tiny clip-dinoiser backbone, optionally
    held at its first image batch until the test opens ``gate`` (so Cancel lands mid-build)."""

    def __init__(self, backbone, gated=False):
        self.backbone, self.calls = backbone, []
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, name, device, dinoiser):
        self.calls.append((name, device, dinoiser))
        return GatedBackbone(self.backbone, self.gate)


class GatedBackbone:
    def __init__(self, inner, gate):
        self._inner, self._gate = inner, gate

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def dense_features(self, images):
        assert self._gate.wait(30), "the test never released the backbone"
        return self._inner.dense_features(images)


@pytest.fixture
def dialog(qtbot, tmp_path, monkeypatch, tiny_backbone):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    vocab = tmp_path / "words.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    d = BuildModelDialog()
    qtbot.addWidget(d)
    # What the form does not show, made tiny so the real build_model runs in seconds.
    d.base_options = BuildOptions(vocabularies=(str(vocab),), default_vocabularies=False, feature_batch=2,
                                  thumbnails_per_concept=4, relations_batch_tokens=392,
                                  train={"batch_tokens": 392, "lr": 2e-3, "dead_tokens": 2000,
                                         "threshold_start_step": 4, "checkpoint_every": 2, "seed": 0})
    d.backbone_factory = Factory(tiny_backbone)
    # pytest-qt closes widgets before fixtures end: a test that fails mid-build would otherwise hang
    # the whole run on the modal "Stop the build?" question. Tests that check the question patch it again.
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    d.show()
    yield d
    if d.job is not None:
        d.job.cancel()
        d.backbone_factory.gate.set()
        d.job.wait(30_000)


def type_into(qtbot, widget, text):
    widget.setFocus()
    qtbot.keyClick(widget, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(widget, text)


def fill_form(qtbot, d, folder):
    type_into(qtbot, d.folder_edit, str(folder))
    qtbot.waitUntil(lambda: d.folder_status.text().startswith("6 images"), timeout=30_000)
    d.backbone_combo.setFocus()
    qtbot.keyClick(d.backbone_combo, Qt.Key.Key_Down)  # the reference backbone (the test factory makes it tiny)
    for spin, value in ((d.concepts_spin, "32"), (d.k_spin, "4"), (d.levels_spin, "2"), (d.epochs_spin, "4")):
        type_into(qtbot, spin, value)
    qtbot.keyClick(d.device_combo, Qt.Key.Key_Down)  # CPU


def test_builds_a_model_with_stage_progress_and_hands_it_over(qtbot, dialog, photos, tmp_path):
    from insight_desktop.core.concepts.bundle import ConceptModel

    fill_form(qtbot, dialog, photos)
    assert "1 other file is left out" in dialog.folder_status.text()
    expected = tmp_path / "data" / "models" / "built" / "holiday.zip"
    assert dialog.output_edit.text() == str(expected)
    assert dialog.build_button.isEnabled()
    request = dialog.request()
    assert (request.options.n_concepts, request.options.k, request.options.train["epochs"]) == (32, 4, 4.0)
    assert request.options.level_fractions == pytest.approx((1 / 3, 2 / 3))
    assert request.options.vocabularies == dialog.base_options.vocabularies  # the rest comes from base_options

    shown = []
    dialog.progress_bar.valueChanged.connect(lambda v: shown.append((dialog.stage_label.text(), v)))
    with qtbot.waitSignal(dialog.modelBuilt, timeout=120_000) as built:
        qtbot.mouseClick(dialog.build_button, Qt.MouseButton.LeftButton)
        assert dialog.is_building() and not dialog.build_button.isEnabled() and dialog.cancel_button.isEnabled()
        assert not dialog.folder_edit.isEnabled()  # the form is locked while building
    assert dialog.backbone_factory.calls == [(REFERENCE, "cpu", None)]
    path = built.args[0]
    assert Path(path) == expected
    model = ConceptModel.load(path)
    assert model.sae.config.n_concepts == 32 and {n.split(" (")[0] for n in model.names.names} <= set(WORDS)
    assert model.manifest.provenance["images"] == 6
    stages = [text for text, _ in shown]
    for step in ("Step 2 of 7: Extracting patch features", "Step 3 of 7: Training the concept dictionary (SAE)",
                 "Step 4 of 7: Finding how concepts relate", "Step 7 of 7: Writing the model file"):
        assert step in stages, f"{step!r} never shown with a progress value"
    assert max(v for t, v in shown if t.startswith("Step 3")) == 1000  # the SAE bar reached its end
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=30_000)       # closed after handing it over
    assert dialog.result() == dialog.DialogCode.Accepted and dialog.job is None


def test_cancel_mid_build_leaves_no_model_and_the_next_build_resumes(qtbot, dialog, photos, tiny_backbone):
    from insight_desktop.core.concepts.bundle import ConceptModel

    dialog.backbone_factory = factory = Factory(tiny_backbone, gated=True)
    fill_form(qtbot, dialog, photos)
    out = Path(dialog.output_edit.text())
    qtbot.mouseClick(dialog.build_button, Qt.MouseButton.LeftButton)
    # The first progress of the build itself: the backbone now waits inside the first image batch.
    qtbot.waitUntil(lambda: "Extracting patch features" in dialog.stage_label.text(), timeout=30_000)
    with qtbot.waitSignal(dialog.job.cancelled, timeout=30_000):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
        assert dialog.stage_label.text().startswith("Stopping")
        factory.gate.set()
    qtbot.waitUntil(lambda: dialog.job is None, timeout=30_000)
    stage = dialog.stage_label.text()
    assert stage.startswith("Build stopped.") and "continues where it stopped" in stage
    assert not out.exists() and out.with_name(out.name + ".work").is_dir()   # no model; the finished work kept
    assert dialog.isVisible() and dialog.folder_edit.isEnabled() and not dialog.cancel_button.isEnabled()
    assert not dialog.error_label.isVisible()
    assert "unfinished build" in dialog.output_status.text()                 # the dialog says Build resumes it

    with qtbot.waitSignal(dialog.modelBuilt, timeout=120_000) as built:
        qtbot.mouseClick(dialog.build_button, Qt.MouseButton.LeftButton)
    assert ConceptModel.load(built.args[0]).sae.config.n_concepts == 32
    assert not out.with_name(out.name + ".work").exists()


def test_an_empty_folder_says_so_and_cannot_be_built(qtbot, dialog, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    type_into(qtbot, dialog.folder_edit, str(empty))
    qtbot.waitUntil(lambda: dialog.folder_status.text().startswith("No images"), timeout=30_000)
    assert not dialog.build_button.isEnabled()
    type_into(qtbot, dialog.folder_edit, str(tmp_path / "missing"))
    qtbot.waitUntil(lambda: dialog.folder_status.text().startswith("Cannot use this folder"), timeout=30_000)
    assert not dialog.build_button.isEnabled()


def test_an_existing_output_file_blocks_the_build_until_renamed(qtbot, dialog, photos, tmp_path):
    type_into(qtbot, dialog.folder_edit, str(photos))
    qtbot.waitUntil(lambda: dialog.build_button.isEnabled(), timeout=30_000)
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"a model")
    type_into(qtbot, dialog.output_edit, str(taken))
    assert "exists already" in dialog.output_status.text() and not dialog.build_button.isEnabled()
    type_into(qtbot, dialog.folder_edit, str(photos) + "/")   # the folder changes; the user's file stays
    qtbot.waitUntil(lambda: not dialog._scan_timer.isActive(), timeout=30_000)
    assert dialog.output_edit.text() == str(taken)


def test_missing_reference_weights_fail_in_the_dialog_with_how_to_get_them(qtbot, dialog, photos, monkeypatch):
    import huggingface_hub

    from insight_desktop.gui import build_dialog

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)  # nothing cached
    dialog.backbone_factory = build_dialog.make_backbone                                 # the real one
    fill_form(qtbot, dialog, photos)
    built = []
    dialog.modelBuilt.connect(built.append)
    qtbot.mouseClick(dialog.build_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.job is None, timeout=60_000)
    assert built == []
    message = dialog.error_label.text()
    assert dialog.error_label.isVisible() and dialog.isVisible()
    assert "not available offline" in message and "open_clip.create_model('ViT-B-16'" in message
    assert "demo backbone" in message and "Traceback" not in message
    assert dialog.details_button.isVisible() and "Traceback" in dialog.details_text.toPlainText()
    assert dialog.stage_label.text() == "Could not build the model" and dialog.build_button.isEnabled()


def test_closing_while_building_asks_then_stops_and_closes(qtbot, dialog, photos, tiny_backbone, monkeypatch):
    dialog.backbone_factory = factory = Factory(tiny_backbone, gated=True)
    fill_form(qtbot, dialog, photos)
    qtbot.mouseClick(dialog.build_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Extracting patch features" in dialog.stage_label.text(), timeout=30_000)
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)                 # "No": keeps building
    assert dialog.isVisible() and dialog.is_building() and not dialog.job.cancel_requested()
    dialog.close()                                            # "Yes": stops, closes when stopped
    assert dialog.job.cancel_requested() and answers == []
    factory.gate.set()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=30_000)
    assert dialog.result() == dialog.DialogCode.Rejected and dialog.job is None


def test_eta_reads_in_round_units():
    assert [eta_text(s) for s in (1, 42, 58, 61, 1799, 3599, 3600 + 20 * 60)] == [
        "about 5 s left", "about 40 s left", "about 1 min left", "about 1 min left", "about 30 min left",
        "about 1 h left", "about 1 h 20 min left"]


def test_opening_the_dialog_does_not_import_torch(photos):
    import subprocess
    import sys

    code = ("import os, sys; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
            "from PySide6.QtWidgets import QApplication; app = QApplication([])\n"
            "from insight_desktop.gui.build_dialog import BuildModelDialog\n"
            "d = BuildModelDialog(folder=sys.argv[1]); d.show(); app.processEvents()\n"
            "assert d.folder_status.text().startswith('6 images'), d.folder_status.text()\n"
            "assert 'torch' not in sys.modules, 'the dialog imported torch on the GUI thread'\n")
    done = subprocess.run([sys.executable, "-c", code, str(photos)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
