"""Build dialog → "Build on a cluster…": the form's build as a torchrun command and a Slurm script,
checked as the shell and the real ``insight build-model`` parser read it; saved atomically; nothing
built here."""

from __future__ import annotations

import shlex

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from insight_desktop.cli import build_parser
from insight_desktop.gui.build_dialog import BuildModelDialog
from insight_desktop.gui.build_job import DEMO, REFERENCE
from tests.core.fakes import write_block_photos


@pytest.fixture
def photos(tmp_path):
    return write_block_photos(tmp_path / "holiday", 3, seed=5)


@pytest.fixture
def build_dialog(qtbot, photos):
    d = BuildModelDialog(folder=photos)
    qtbot.addWidget(d)
    d.show()
    return d


def _open_cluster(qtbot, d):
    assert d.cluster_button.isEnabled()
    qtbot.mouseClick(d.cluster_button, Qt.MouseButton.LeftButton)
    c = d.cluster_dialog
    assert c is not None and c.isVisible()
    qtbot.addWidget(c)
    return c


def _build_args(script: str):
    line = next(ln for ln in script.replace("\\\n", " ").splitlines() if ln.startswith("srun "))
    words = shlex.split(line)
    return words, build_parser().parse_args(words[words.index("-m") + 2:])


def test_the_form_becomes_a_script_for_nodes_times_gpus(qtbot, build_dialog, photos, tmp_path, monkeypatch):
    d = build_dialog
    d.backbone_combo.setCurrentIndex(d.backbone_combo.findData(DEMO))
    d.concepts_spin.setValue(2048)
    d.k_spin.setValue(20)
    d.levels_spin.setValue(3)
    d.epochs_spin.setValue(5.0)
    c = _open_cluster(qtbot, d)
    c.nodes_spin.setValue(4)
    c.gpus_spin.setValue(2)
    c.partition_edit.setText("gpu")
    c.time_edit.setText("12:00:00")
    c.folder_edit.setText("/scratch/me/holiday photos")

    script = c.script_text.toPlainText()
    assert "#SBATCH --nodes=4\n" in script and "#SBATCH --gpus-per-node=2\n" in script
    assert "#SBATCH --partition=gpu\n" in script and "#SBATCH --time=12:00:00\n" in script
    words, args = _build_args(script)
    assert words[words.index("--nnodes") + 1] == "4" and words[words.index("--nproc-per-node") + 1] == "2"
    assert args.folder == "/scratch/me/holiday photos" and args.out == d.output_edit.text()
    assert (args.backbone, args.concepts, args.k, args.epochs) == (DEMO, 2048, 20, 5.0)
    assert [round(float(f), 4) for f in args.levels.split(",")] == [round(1 / 7, 4), round(2 / 7, 4), round(4 / 7, 4)]
    assert c.command_text.toPlainText().startswith("torchrun --nnodes 4 ")

    target = tmp_path / "cluster" / "holiday.sbatch"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    qtbot.mouseClick(c.save_button, Qt.MouseButton.LeftButton)
    assert c.saved_path == target and target.read_text() == script
    assert "sbatch holiday.sbatch" in c.status_label.text()
    # nothing was built or started here
    assert d.job is None and not (photos.parent / "holiday.zip").exists()


def test_the_reference_backbone_uses_the_store_dinoiser_unless_one_is_chosen(qtbot, build_dialog, tmp_path):
    d = build_dialog
    d.backbone_combo.setCurrentIndex(d.backbone_combo.findData(REFERENCE))
    _, args = _build_args(_open_cluster(qtbot, d).script_text.toPlainText())
    assert (args.backbone, args.dinoiser) == (REFERENCE, "store:clip-dinoiser")
    d.dinoiser_edit.setText(str(tmp_path / "last.pt"))
    _, args = _build_args(_open_cluster(qtbot, d).script_text.toPlainText())
    assert args.dinoiser == str(tmp_path / "last.pt")


def test_options_slurm_would_refuse_disable_saving_with_a_reason(qtbot, build_dialog):
    c = _open_cluster(qtbot, build_dialog)
    c.time_edit.setText("one day")
    assert not c.save_button.isEnabled() and c.error_label.isVisible()
    assert "time limit" in c.error_label.text()
    c.time_edit.setText("1-00:00:00")
    assert c.save_button.isEnabled() and not c.error_label.isVisible()
    assert "#SBATCH --time=1-00:00:00" in c.script_text.toPlainText()


def test_a_script_that_cannot_be_saved_says_so(qtbot, build_dialog, tmp_path, monkeypatch):
    c = _open_cluster(qtbot, build_dialog)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(blocker / "x.sbatch"), ""))
    qtbot.mouseClick(c.save_button, Qt.MouseButton.LeftButton)
    assert c.saved_path is None and c.error_label.isVisible() and "Could not save" in c.error_label.text()


def test_no_images_no_cluster_script(qtbot, tmp_path):
    (tmp_path / "empty").mkdir()
    d = BuildModelDialog(folder=tmp_path / "empty")
    qtbot.addWidget(d)
    assert not d.cluster_button.isEnabled()


def test_only_the_reference_backbone_asks_for_weights_on_the_cluster(qtbot, build_dialog):
    d = build_dialog
    d.backbone_combo.setCurrentIndex(d.backbone_combo.findData(DEMO))
    assert "model store" not in _open_cluster(qtbot, d).status_label.text()
    d.backbone_combo.setCurrentIndex(d.backbone_combo.findData(REFERENCE))
    assert "insight models get clip-dinoiser" in _open_cluster(qtbot, d).status_label.text()
