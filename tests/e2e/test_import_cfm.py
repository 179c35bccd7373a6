"""`insight import-cfm`: the authors' release files (SAE state dict, names, dense D) → a bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insight_desktop.cli import main
from insight_desktop.core.concepts.bundle import ConceptModel
from insight_desktop.core.import_cfm import CFMImportError, read_names, sparsify_d

M, D = 16, 8


@pytest.fixture
def release(tmp_path):
    g = torch.Generator().manual_seed(0)
    W_dec = torch.nn.functional.normalize(torch.randn(M, D, generator=g), dim=1)
    state = {"W_enc": W_dec.t().clone(), "b_enc": 0.1 * torch.randn(M, generator=g), "W_dec": W_dec,
             "b_dec": torch.randn(D, generator=g), "k": torch.tensor(3), "threshold": torch.tensor(0.2),
             "group_sizes": torch.tensor([4, 12])}
    torch.save(state, tmp_path / "ae.pt")
    (tmp_path / "names.txt").write_text("\n".join(f"concept{i}" for i in range(M)) + "\n")
    dense = np.zeros((M, M), np.float32)
    np.fill_diagonal(dense, 10.0)
    dense[3, 7] = 9.0    # 7 carries 90 % of 3's mass: 7 is 3's parent
    dense[7, 3] = 2.0    # not the reverse
    dense[5, 6] = 0.05   # 0.5 % share: below min_share, dropped
    np.save(tmp_path / "D.npy", dense)
    torch.save({"D": torch.from_numpy(dense)}, tmp_path / "D.pt")
    return tmp_path, state, dense


@pytest.mark.parametrize("d_file", ["D.npy", "D.pt"])
def test_import_release(release, d_file, capsys):
    folder, state, dense = release
    out = folder / f"imported-{d_file}"
    assert main(["import-cfm", "--sae", str(folder / "ae.pt"), "--names", str(folder / "names.txt"),
                 "--relations", str(folder / d_file), "--out", str(out)]) == 0
    assert "16 in 2 levels [4, 12], k = 3" in capsys.readouterr().out
    model = ConceptModel.load(out)
    x = torch.randn(5, D)
    a = torch.relu((x - state["b_dec"]) @ state["W_enc"] + state["b_enc"])
    torch.testing.assert_close(model.sae.encode(x), a * (a > 0.2))
    assert model.names.names[7] == "concept7" and model.names.method == "release"
    assert model.relations.parents_of(3) == [7] and model.relations.parents_of(7) == []
    assert model.relations.display_parent[3] == 7
    assert model.relations.D.nnz == M + 2  # diagonal + the two real shares; the 0.5 % entry dropped
    assert model.manifest.backbone["spec"]["options"]["model"] == "ViT-B-16"


def test_bad_release_files(release):
    folder, _, dense = release
    with pytest.raises(CFMImportError, match="has 15 names"):
        (folder / "short.txt").write_text("\n".join(["x"] * 15))
        read_names(folder / "short.txt", M)
    np.save(folder / "wrong.npy", dense[:4, :4])
    with pytest.raises(CFMImportError, match=r"shape \(4, 4\)"):
        sparsify_d(folder / "wrong.npy", M)
    (folder / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CFMImportError, match="junk.pt"):
        sparsify_d(folder / "junk.pt", M)
    assert main(["import-cfm", "--sae", str(folder / "names.txt"), "--names", str(folder / "names.txt"),
                 "--out", str(folder / "x")]) == 1


def test_import_uses_clip_dinoiser_by_default(release, tmp_path, monkeypatch, capsys):
    """The authors' SAE was trained on F⁺: a bundle must not silently fall back to MaskCLIP."""
    from insight_desktop.core.backbones.tiny import save_upstream_last_pt
    from tests.core.test_dinoiser_checkpoint import upstream_heads

    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))  # an empty model store
    folder, _, _ = release
    args = ["import-cfm", "--sae", str(folder / "ae.pt"), "--names", str(folder / "names.txt")]

    assert main([*args, "--out", str(folder / "default")]) == 0
    assert "store:clip-dinoiser is not in the model store yet" in capsys.readouterr().err
    spec = ConceptModel.load(folder / "default").manifest.backbone["spec"]
    assert spec["options"]["dinoiser"] == "store:clip-dinoiser"

    last = save_upstream_last_pt(tmp_path / "last.pt", upstream_heads(768))
    assert main([*args, "--out", str(folder / "file"), "--dinoiser", str(last)]) == 0
    assert ConceptModel.load(folder / "file").manifest.backbone["spec"]["options"]["dinoiser"] == str(last.resolve())

    assert main([*args, "--out", str(folder / "plain"), "--dinoiser", "none"]) == 0
    assert "plain MaskCLIP" in capsys.readouterr().err
    assert ConceptModel.load(folder / "plain").manifest.backbone["spec"]["options"]["dinoiser"] is None

    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main([*args, "--out", str(folder / "bad"), "--dinoiser", str(tmp_path / "bad.pt")]) == 2
    assert "--dinoiser" in capsys.readouterr().err and not (folder / "bad").exists()
