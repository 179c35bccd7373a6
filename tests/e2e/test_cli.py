"""The `insight` command end to end on the tiny model: features → train-sae → info, and errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from insight_desktop.cli import main


@pytest.fixture
def photo_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for i in range(6):
        base = rng.integers(0, 256, (3,))
        rgb = np.clip(base + rng.normal(0, 40, (120, 160, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / ("nested" if i % 2 else ".") / f"p{i}.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    return folder


def backbone_args(files):
    return ["--model", str(files.config_path), "--pretrained", str(files.checkpoint_path),
            "--dinoiser", str(files.dinoiser_path), "--device", "cpu"]


def test_features_train_info_round_trip(tmp_path, photo_folder, tiny_model_files, capsys):
    store, sae = tmp_path / "store", tmp_path / "concepts.safetensors"
    assert main(["features", str(photo_folder), "--out", str(store), "-q", *backbone_args(tiny_model_files)]) == 0
    out, err = capsys.readouterr()
    assert "6 images, 1,176 tokens" in out  # 6 × 14 × 14
    assert "unreadable: broken.jpg" in err

    assert main(["train-sae", str(store), "--out", str(sae), "--concepts", "64", "--k", "4", "--levels", "2",
                 "--epochs", "3", "--batch-tokens", "400", "--dead-tokens", "2000", "--threshold-start", "2",
                 "--lr", "1e-3", "--device", "cpu", "-q"]) == 0
    assert "saved" in capsys.readouterr().out

    from insight_desktop.core.sae import load_sae

    model = load_sae(sae)
    assert model.config.n_concepts == 64 and model.config.d_in == 32 and model.config.group_sizes == (21, 43)
    assert float(model.threshold) > 0  # the inference threshold was estimated

    assert main(["info", str(sae)]) == 0
    assert "64 concepts, k = 4" in capsys.readouterr().out
    assert main(["info", str(store)]) == 0
    info = capsys.readouterr().out
    assert "6 (1 unreadable)" in info and "1,176" in info
    assert main(["info", str(tiny_model_files.dinoiser_path)]) == 0
    assert "CLIP-DINOiser" in capsys.readouterr().out


def test_user_errors_are_one_clear_line(tmp_path, tiny_model_files, capsys, photo_folder):
    assert main(["features", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s")]) == 2
    assert "is not a folder" in capsys.readouterr().err

    bad = tmp_path / "last.pt"
    bad.write_bytes(tiny_model_files.dinoiser_path.read_bytes()[:200])
    args = backbone_args(tiny_model_files)
    args[args.index("--dinoiser") + 1] = str(bad)
    assert main(["features", str(photo_folder), "--out", str(tmp_path / "s"), "-q", *args]) == 1
    err = capsys.readouterr().err
    assert "last.pt" in err and "Traceback" not in err

    with pytest.raises(SystemExit):  # argparse: --out is required
        main(["train-sae", str(tmp_path / "nowhere")])
    capsys.readouterr()
    assert main(["train-sae", str(photo_folder), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "not a token store" in capsys.readouterr().err
    assert main(["info", str(photo_folder / "broken.jpg")]) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_levels_option():
    from insight_desktop.cli.common import CLIError, parse_levels

    assert parse_levels("3") == pytest.approx((1 / 7, 2 / 7, 4 / 7))
    assert parse_levels("0.25,0.75") == (0.25, 0.75)
    with pytest.raises(CLIError, match="add up to 1"):
        parse_levels("0.5,0.6")
    with pytest.raises(CLIError):
        parse_levels("many")


def test_relations_and_name_stand_alone(tmp_path, photo_folder, tiny_model_files, capsys):
    store, sae = tmp_path / "store", tmp_path / "sae.safetensors"
    assert main(["features", str(photo_folder), "--out", str(store), "-q", *backbone_args(tiny_model_files)]) == 0
    assert main(["train-sae", str(store), "--out", str(sae), "--concepts", "32", "--k", "4", "--levels", "2",
                 "--epochs", "2", "--batch-tokens", "400", "--dead-tokens", "2000", "--threshold-start", "2",
                 "--lr", "1e-3", "--device", "cpu", "-q"]) == 0
    rel = tmp_path / "relations.safetensors"
    assert main(["relations", str(store), "--sae", str(sae), "--out", str(rel), "--device", "cpu", "-q"]) == 0
    assert "1,176 tokens" in capsys.readouterr().out

    from insight_desktop.core.concepts.relations import Relations

    relations = Relations.load(rel)
    assert relations.n_tokens == 1176 and relations.n_concepts == 32
    words = tmp_path / "words.txt"
    words.write_text("red\ngreen\nblue\nnoise\n")
    names = tmp_path / "names.json"
    for method in ("hierarchy", "vanilla"):
        assert main(["name", "--sae", str(sae), "--relations", str(rel), "--out", str(names), "--naming", method,
                     "--vocab", str(words), "--no-default-vocab", "-q", *backbone_args(tiny_model_files)]) == 0
        assert f"32 names ({method})" in capsys.readouterr().out

        from insight_desktop.core.concepts.naming import ConceptNames

        loaded = ConceptNames.from_json(names.read_text())
        assert loaded.method == method and {n.split(" (")[0] for n in loaded.names} <= {"red", "green", "blue", "noise"}
        assert len(set(loaded.names)) == len(loaded.names)  # 32 concepts, 4 words: duplicates are numbered
    assert main(["name", "--sae", str(sae), "--out", str(names), "--vocab", str(words), "--no-default-vocab",
                 *backbone_args(tiny_model_files)]) == 2  # hierarchy naming without relations
    assert "needs --relations" in capsys.readouterr().err
