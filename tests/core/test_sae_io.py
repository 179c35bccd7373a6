"""SAE files: round trip, validation errors, and import of dictionary_learning checkpoints."""

import json

import pytest
import torch
from safetensors.torch import save_file

from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig, SAEError, import_dictionary_learning, load_sae, save_sae
from insight_desktop.core.sae.io import CONFIG_KEY, VERSION_KEY


def trained_like_sae(seed=0):
    torch.manual_seed(seed)
    sae = MatryoshkaSAE(SAEConfig(d_in=12, n_concepts=48, k=3, group_sizes=(6, 12, 30)))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
        sae.normalize_decoder_()
        sae.threshold.fill_(0.7)
    return sae


def test_round_trip_gives_identical_encodings(tmp_path):
    sae = trained_like_sae()
    path = save_sae(sae, tmp_path / "model.safetensors")
    sidecar = json.loads((tmp_path / "model.safetensors.json").read_text())
    assert sidecar["config"] == sae.config.to_dict() and sidecar[VERSION_KEY] == 1
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_sae(path)
    assert loaded.config == sae.config and not loaded.training
    x = torch.randn(50, 12)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded(x)[0], sae(x)[0])
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert torch.equal(getattr(loaded, name), getattr(sae, name))


def test_missing_truncated_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(SAEError, match="does not exist"):
        load_sae(tmp_path / "nope.safetensors")
    path = save_sae(trained_like_sae(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SAEError, match="truncated.safetensors"):
        load_sae(truncated)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(SAEError, match="junk.safetensors"):
        load_sae(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"W_enc": torch.zeros(12, 48)}, str(foreign))                 # no Insight metadata
    with pytest.raises(SAEError, match="format_version"):
        load_sae(foreign)


def _write(path, tensors, config, version="1"):
    save_file(tensors, str(path), metadata={CONFIG_KEY: json.dumps(config.to_dict()), VERSION_KEY: version})
    return path


def test_wrong_shapes_missing_tensors_and_newer_versions_are_rejected(tmp_path):
    sae = trained_like_sae()
    tensors = {n: getattr(sae, n).detach().clone().reshape(getattr(sae, n).shape) for n in
               ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
    other = SAEConfig(d_in=12, n_concepts=64, k=3, group_sizes=(6, 12, 46))
    with pytest.raises(SAEError, match=r"shapes.*W_enc"):
        load_sae(_write(tmp_path / "shape.safetensors", tensors, other))
    missing = {k: v for k, v in tensors.items() if k != "b_dec"}
    with pytest.raises(SAEError, match="lacks tensors.*b_dec"):
        load_sae(_write(tmp_path / "missing.safetensors", missing, sae.config))
    with pytest.raises(SAEError, match="newer"):
        load_sae(_write(tmp_path / "future.safetensors", tensors, sae.config, version="2"))
    assert torch.equal(load_sae(_write(tmp_path / "ok.safetensors", tensors, sae.config)).W_dec, sae.W_dec)


def _dictionary_learning_state(d=12, m=48, k=3, groups=(6, 12, 30), threshold=0.25, seed=1):
    """A state dict as dictionary_learning's MatryoshkaBatchTopKSAE.state_dict() has it."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(m, d, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    return {"k": torch.tensor(k, dtype=torch.int), "threshold": torch.tensor(threshold),
            "group_sizes": torch.tensor(groups), "W_enc": torch.randn(d, m, generator=g),
            "b_enc": torch.randn(m, generator=g) * 0.1, "W_dec": W_dec, "b_dec": torch.randn(d, generator=g)}


@pytest.mark.parametrize("as_file", [False, True])
def test_dictionary_learning_import_encodes_like_the_definition(tmp_path, as_file):
    state = _dictionary_learning_state()
    if as_file:
        torch.save(state, tmp_path / "ae.pt")
        sae = import_dictionary_learning(tmp_path / "ae.pt")
    else:
        sae = import_dictionary_learning(state)
    assert sae.config == SAEConfig(d_in=12, n_concepts=48, k=3, group_sizes=(6, 12, 30))
    x = torch.randn(40, 12)
    a = torch.relu((x - state["b_dec"]) @ state["W_enc"] + state["b_enc"])
    expected = a * (a > 0.25)
    with torch.no_grad():
        z = sae.encode(x)
        assert torch.allclose(z, expected, atol=1e-6)
        assert torch.allclose(sae.decode(z), expected @ state["W_dec"] + state["b_dec"], atol=1e-5)


def test_dictionary_learning_import_validates(tmp_path):
    state = _dictionary_learning_state()
    with pytest.raises(SAEError, match="missing.*group_sizes"):
        import_dictionary_learning({k: v for k, v in state.items() if k != "group_sizes"})
    with pytest.raises(SAEError, match="W_dec"):
        import_dictionary_learning({**state, "W_dec": torch.zeros(40, 12)})
    with pytest.raises(SAEError, match="group_sizes"):
        import_dictionary_learning({**state, "group_sizes": torch.tensor([6, 12, 20])})
    with pytest.raises(SAEError, match="does not exist"):
        import_dictionary_learning(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00\x01garbage")
    with pytest.raises(SAEError, match="cannot be read"):
        import_dictionary_learning(tmp_path / "bad.pt")
    save_file(state, str(tmp_path / "ae.safetensors"))
    assert import_dictionary_learning(tmp_path / "ae.safetensors").config.k == 3


RECORD = {"train_config": {"threshold_start_step": 270, "dead_tokens": 9600}, "steps": 300, "tokens_seen": 76800,
          "run": {"total_steps": 300, "total_tokens": 76800, "auto": ["threshold_start_step", "dead_tokens"]},
          "threshold_updates": 29, "aux_steps": 263, "max_dead": 14}


def test_training_record_round_trips_and_info_reports_theta_and_auxk(tmp_path):
    from insight_desktop.core.inspect import describe

    sae = trained_like_sae()
    sae.training_info = RECORD
    path = save_sae(sae, tmp_path / "trained.safetensors")
    assert load_sae(path).training_info == RECORD
    assert json.loads((tmp_path / "trained.safetensors.json").read_text())["training"] == RECORD
    text = describe(path)
    assert "threshold θ    0.7 (EMA over the last 29 steps)" in text
    assert "AuxK           ran in 263 of 300 steps (up to 14 dead latents)" in text
    assert "threshold start step 270 (auto), dead tokens 9,600 (auto)" in text

    never = trained_like_sae()
    never.threshold.fill_(-1.0)
    never.training_info = {**RECORD, "threshold_updates": 0, "aux_steps": 0, "max_dead": 0}
    text = describe(save_sae(never, tmp_path / "short.safetensors"))
    assert "threshold θ    not estimated — inference falls back to per-chunk BatchTopK" in text
    assert "AuxK           never ran: no latent stayed silent for 9,600 tokens" in text

    old = trained_like_sae()                                    # written before runs were recorded
    assert old.training_info is None and load_sae(save_sae(old, tmp_path / "old.safetensors")).training_info is None
    assert "AuxK           unknown" in describe(tmp_path / "old.safetensors")


def test_bundles_keep_the_training_record_and_info_reports_it(tmp_path):
    from insight_desktop.core.concepts.bundle import ConceptModel
    from insight_desktop.core.inspect import describe

    from .fakes import PatchColourBackbone, random_sae, write_test_bundle

    sae = random_sae(8, 32, threshold=-1.0)
    sae.training_info = {**RECORD, "threshold_updates": 0}
    out = write_test_bundle(tmp_path / "model", PatchColourBackbone(d=8), sae)
    assert ConceptModel.load(out).sae.training_info == sae.training_info
    text = describe(out)
    assert "threshold θ    not estimated" in text and "AuxK           ran in 263 of 300 steps" in text
