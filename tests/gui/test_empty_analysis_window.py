"""An image in which no concept fires, shown in the window: a result with a note, not an error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QMessageBox

from tests.gui.conftest import wait_for_analysis


@pytest.fixture(scope="module")
def silent_bundle(tiny_model_files, tmp_path_factory):
    """The tiny backbone with an SAE whose threshold no code reaches."""
    from insight_desktop.core.backbones import create_backbone
    from tests.core.fakes import random_sae, write_test_bundle

    bb = create_backbone("clip-dinoiser", device="cpu", model=str(tiny_model_files.config_path),
                         pretrained=str(tiny_model_files.checkpoint_path), dinoiser=str(tiny_model_files.dinoiser_path))
    return write_test_bundle(tmp_path_factory.mktemp("silent") / "silent.zip", bb,
                             random_sae(bb.feature_dim, 64, k=6, threshold=1e6))


def test_a_black_strip_with_no_concept_shows_a_note_not_an_error(qtbot, window, silent_bundle, tmp_path):
    from insight_desktop.core.engine import NO_CONCEPTS_NOTICE

    strip = tmp_path / "strip.png"
    Image.fromarray(np.zeros((1, 2000, 3), np.uint8)).save(strip)
    window.document.set_classes(("sky", "road"))
    window.start([strip], silent_bundle)
    a = wait_for_analysis(qtbot, window)
    assert a.concepts == () and NO_CONCEPTS_NOTICE in a.notices
    assert a.segmentation is not None and a.segmentation.labels.shape == (1, 2000)
    assert window.document.concept == -1
    assert not [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert window.notes.isVisibleTo(window) and NO_CONCEPTS_NOTICE in window.notes.toolTip()
    window.document.set_overlay(show_segmentation=True, show_residual=True)
    window.document.select_segment(int(a.segmentation.labels[0, 0]))
    qtbot.wait(50)
    assert not [b for b in window.findChildren(QMessageBox) if b.isVisible()]
