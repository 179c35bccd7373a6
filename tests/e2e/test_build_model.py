"""`insight build-model`: a folder of photos → a complete bundle; interrupted builds resume exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from insight_desktop.cli import main
from insight_desktop.core.build import BuildOptions, BuildStopped, build_model
from insight_desktop.core.concepts.bundle import ConceptModel
from tests.core.fakes import write_block_photos

WORDS = ["red", "green", "blue", "stripes", "dots", "sky", "grass", "water", "stone", "wood", "metal", "cloud"]


@pytest.fixture
def photos(tmp_path):
    """Images made of coloured stripes and blobs, so concepts have something to find."""
    return write_block_photos(tmp_path / "photos", 8, seed=1)


@pytest.fixture
def vocab(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


def small_options(vocab) -> BuildOptions:
    return BuildOptions(n_concepts=32, k=4, level_fractions=(0.25, 0.75), vocabularies=(str(vocab),),
                        default_vocabularies=False, thumbnails_per_concept=4, relations_batch_tokens=392,
                        train={"epochs": 4, "batch_tokens": 392, "lr": 2e-3, "dead_tokens": 2000,
                               "threshold_start_step": 4, "checkpoint_every": 2, "seed": 0})


def test_cli_builds_a_complete_bundle(tmp_path, photos, vocab, tiny_model_files, capsys):
    out = tmp_path / "model.zip"
    args = ["build-model", str(photos), "--out", str(out), "--concepts", "32", "--k", "4", "--levels", "2",
            "--epochs", "4", "--batch-tokens", "392", "--lr", "2e-3", "--dead-tokens", "2000",
            "--threshold-start", "4", "--vocab", str(vocab), "--no-default-vocab", "--thumbnails", "4", "-q",
            "--model", str(tiny_model_files.config_path), "--pretrained", str(tiny_model_files.checkpoint_path),
            "--dinoiser", str(tiny_model_files.dinoiser_path), "--device", "cpu"]
    assert main(args) == 0
    assert "32 in 2 levels" in capsys.readouterr().out
    model = ConceptModel.load(out)
    assert model.relations.n_tokens == 8 * 196
    names = model.names.names
    assert {n.split(" (")[0] for n in names} <= set(WORDS)  # duplicates are numbered: "cat (2)"
    assert len(set(names)) == len(names)
    fired = np.flatnonzero(model.relations.f > 0)
    assert len(fired) >= 4
    jpeg = model.thumbnail(int(fired[0]))
    assert jpeg is not None
    from io import BytesIO

    strip = Image.open(BytesIO(jpeg))
    assert strip.height == 64 and strip.width in (64, 128, 192, 256)
    assert model.manifest.provenance["command"].startswith("insight build-model")
    assert not (tmp_path / "model.zip.work").exists()  # work folder removed after success
    assert main(["info", str(out)]) == 0
    assert "concepts fired" in capsys.readouterr().out


def test_interrupted_build_resumes_to_the_same_model(tmp_path, photos, vocab, tiny_backbone):
    options = small_options(vocab)
    reference = ConceptModel.load(build_model(photos, tmp_path / "ref", tiny_backbone, options, device="cpu"))

    # Stop after the stage's first real progress report (the thumbnails stage: at its start).
    for stage_to_stop, reports in (("sae", 2), ("relations", 2), ("thumbnails", 1)):
        out = tmp_path / f"resumed-{stage_to_stop}"
        seen = {"n": 0}

        def progress(p, stage_to_stop=stage_to_stop, seen=seen):
            if p.stage == stage_to_stop:
                seen["n"] += 1

        with pytest.raises(BuildStopped, match="run the same command again"):
            build_model(photos, out, tiny_backbone, options, device="cpu", on_progress=progress,
                        should_stop=lambda reports=reports, seen=seen: seen["n"] >= reports)
        assert (tmp_path / f"resumed-{stage_to_stop}.work").exists() and not out.exists()
        model = ConceptModel.load(build_model(photos, out, tiny_backbone, options, device="cpu"))
        for name in ("W_enc", "W_dec", "b_dec", "threshold"):
            torch.testing.assert_close(getattr(model.sae, name), getattr(reference.sae, name), atol=1e-6, rtol=0)
        assert model.names.names == reference.names.names
        np.testing.assert_array_equal(model.relations.display_parent, reference.relations.display_parent)
        assert sorted(model.manifest.files) == sorted(reference.manifest.files)


def test_resuming_with_other_settings_is_refused(tmp_path, photos, vocab, tiny_backbone):
    options = small_options(vocab)
    with pytest.raises(BuildStopped):
        build_model(photos, tmp_path / "m", tiny_backbone, options, device="cpu", should_stop=lambda: True)
    with pytest.raises(ValueError, match="other settings"):
        build_model(photos, tmp_path / "m", tiny_backbone, BuildOptions(**{**options.__dict__, "k": 5}), device="cpu")
