"""Training: recovery of a planted hierarchical dictionary, the threshold rule, exact resume."""

import math

import numpy as np
import pytest
import torch

from insight_desktop.core.sae import (ArrayTokenSource, SAEConfig, SAEError, TokenSource, TrainConfig,
                                      TrainProgress, train_sae)


@pytest.fixture(autouse=True)
def one_thread():
    """These SAEs are tiny: with 2 threads, thread hand-offs dominate and a busy machine makes the
    tests ~20× slower. One thread is as fast when idle and steady under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted_hierarchy(seed=2, d=128, n_coarse=6, n_fine=3, n_tokens=24_000):
    """Tokens from a known two-level dictionary.

    Each token holds up to 3 "objects" (each present with p 0.6): a coarse atom with coefficient
    U(0.5, 2) and, half of the time, one of its refinements with coefficient U(0.2, 1), plus
    noise. A refinement only ever fires together with its coarse atom, so the refined object's
    vector is "coarse direction + a perturbation". Only the perturbation is identifiable as an
    atom (any part of it along the parent could equally be carried by the parent), so the
    refinement atoms are the perturbations: orthogonal to their parent and centred within the
    family (the parent is then the mean of its family, as a coarse concept should be).
    """
    rng = np.random.default_rng(seed)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
    coarse = unit(rng.standard_normal((n_coarse, d)))
    p = rng.standard_normal((n_coarse, n_fine, d))
    p -= p.mean(1, keepdims=True)
    p -= (p @ coarse[:, :, None]) * coarse[:, None]
    fine = unit(p).reshape(-1, d)
    fam = np.argsort(rng.random((n_tokens, n_coarse)), 1)[:, :3]
    X = np.zeros((n_tokens, d))
    for j in range(3):
        present = rng.random((n_tokens, 1)) < 0.6
        X += present * rng.uniform(0.5, 2, (n_tokens, 1)) * coarse[fam[:, j]]
        refined = (rng.random(n_tokens) < 0.5) & present[:, 0]
        child = fam[:, j] * n_fine + rng.integers(n_fine, size=n_tokens)
        X += (refined * rng.uniform(0.2, 1, n_tokens))[:, None] * fine[child]
    X += 0.02 * rng.standard_normal(X.shape)
    return X.astype(np.float32), coarse, fine


def test_recovers_a_planted_hierarchical_dictionary():
    X, coarse, fine = planted_hierarchy()
    train, held_out = X[:20_000], torch.from_numpy(X[20_000:])
    n_coarse, atoms = len(coarse), np.concatenate([coarse, fine])   # 6 coarse + 18 refinements
    config = SAEConfig(d_in=128, n_concepts=36, k=3, group_sizes=(6, 30))
    tc = TrainConfig(lr=1e-2, batch_tokens=1024, epochs=40, threshold_start_step=100, dead_tokens=5000,
                     checkpoint_every=0, seed=2)
    # Toy SAE problems have local optima: over 8 (data, init) seeds this setting recovered 88–100 %
    # of the atoms (≥ 90 % in 6) with FVU ≤ 0.035. Training is deterministic on the CPU, so a fixed
    # seed (100 % recovered) makes this a stable check.
    result = train_sae(ArrayTokenSource(train), config, tc, device="cpu")
    sae = result.sae
    assert result.steps == 40 * math.ceil(20_000 / 1024) and not result.stopped_early
    assert not sae.training and sae.W_dec.device.type == "cpu"

    cos = atoms @ sae.W_dec.detach().numpy().T                     # [atoms, latents]
    best, where = cos.max(1), cos.argmax(1)
    assert (best >= 0.9).mean() >= 0.9, f"recovered {np.round(best, 2)}"
    # Coarse atoms are the level-1 concepts (the first group has to reconstruct alone).
    assert (where[:n_coarse] < 6).sum() >= n_coarse - 1, where[:n_coarse]

    assert sae.threshold.item() > 0
    with torch.no_grad():
        x_hat, z = sae(held_out)                                    # inference: a·1[a > θ]
    fvu = ((held_out - x_hat) ** 2).sum() / ((held_out - held_out.mean(0)) ** 2).sum()
    assert fvu.item() <= 0.1
    l0 = (z > 0).sum(1).float().mean().item()
    assert 0.5 * config.k <= l0 <= 1.5 * config.k


def test_threshold_starts_at_the_first_update_and_follows_the_ema():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 16)).astype(np.float32)
    source = ArrayTokenSource(X)
    config = SAEConfig(d_in=16, n_concepts=32, k=2, group_sizes=(8, 24))
    base = dict(lr=1e-3, batch_tokens=64, checkpoint_every=0, seed=3)
    seen = []
    train_sae(source, config, TrainConfig(epochs=3 / 4, threshold_start_step=1, **base), device="cpu",
              on_progress=lambda p: seen.append(p.threshold))
    assert seen[0] == -1.0                                           # step 0 < threshold_start_step

    def min_kept(sae, batch_index):
        x = torch.from_numpy(next(source.iter_batches(64, epoch=0, seed=3, skip=batch_index)))
        with torch.no_grad():
            z = sae.encode_batchtopk(sae.pre_activations(x))
        return z[z > 0].min().item()

    # The SAE after 1 (2) steps is what a 1- (2-) step run returns (training is deterministic).
    after1 = train_sae(source, config, TrainConfig(epochs=1 / 4, threshold_start_step=1, **base), device="cpu").sae
    after2 = train_sae(source, config, TrainConfig(epochs=2 / 4, threshold_start_step=1, **base), device="cpu").sae
    first = min_kept(after1, 1)
    assert seen[1] == pytest.approx(first, rel=1e-6)                  # the first update sets θ
    assert seen[2] == pytest.approx(0.999 * first + 0.001 * min_kept(after2, 2), rel=1e-6)
    assert after2.threshold.item() == pytest.approx(seen[1], rel=1e-6)


def test_training_keeps_decoder_rows_unit_norm_and_reports_progress():
    X = np.random.default_rng(1).standard_normal((512, 16)).astype(np.float32)
    progress: list[TrainProgress] = []
    config = SAEConfig(d_in=16, n_concepts=128, k=1, group_sizes=(8, 120))
    result = train_sae(ArrayTokenSource(X, group_size=4), config,
                       TrainConfig(lr=1e-2, batch_tokens=128, epochs=2, dead_tokens=256, threshold_start_step=2,
                                   checkpoint_every=0), device="cpu", on_progress=progress.append)
    assert [p.step for p in progress] == list(range(1, 9)) and progress[-1].total_steps == 8
    assert progress[-1].tokens_seen == 1024 and progress[-1].epoch == 1
    assert all(p.l0 == pytest.approx(1.0) for p in progress)
    assert any(p.dead_fraction > 0 for p in progress) and any(p.aux_loss > 0 for p in progress)
    assert all(np.isfinite([p.loss, p.mse, p.fvu, p.tokens_per_s]).all() for p in progress)
    assert torch.allclose(result.sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-5)
    assert result.metrics["step"] == 8
    assert isinstance(ArrayTokenSource(X), TokenSource)


def test_array_token_source_batches_whole_images_deterministically():
    X = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    src = ArrayTokenSource(X, group_size=4)                           # 10 images
    batches = list(src.iter_batches(9, epoch=0, seed=1))              # round(9 / 4) = 2 images per batch
    assert src.num_batches(9) == len(batches) == 5
    assert all(b.shape == (8, 3) for b in batches)
    rows = (np.concatenate(batches)[:, 0] // 3).astype(int)
    assert sorted(rows.tolist()) == list(range(40))
    assert all(rows[i] % 4 == 0 and list(rows[i:i + 4]) == list(range(rows[i], rows[i] + 4)) for i in range(0, 40, 4))
    again = list(src.iter_batches(9, epoch=0, seed=1, skip=2))
    assert all(np.array_equal(a, b) for a, b in zip(again, batches[2:]))
    other = np.concatenate(list(src.iter_batches(9, epoch=1, seed=1)))
    assert not np.array_equal(other, np.concatenate(batches))


def _resume_setup():
    X = np.random.default_rng(5).standard_normal((600, 16)).astype(np.float32)
    config = SAEConfig(d_in=16, n_concepts=32, k=2, group_sizes=(4, 28))
    # 600 tokens in images of 5 → 5 batches of 100 (+ one of 100) per epoch; 2.5 epochs;
    # dead latents and the threshold EMA both active, so their state must survive the resume.
    tc = TrainConfig(lr=5e-3, batch_tokens=100, epochs=2.5, dead_tokens=200, threshold_start_step=3,
                     checkpoint_every=4, seed=7)
    return ArrayTokenSource(X, group_size=5), config, tc


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    source, config, tc = _resume_setup()
    full = train_sae(source, config, tc, device="cpu")
    assert full.steps == 15

    calls = {"n": 0}

    def stop_after_7():
        calls["n"] += 1
        return calls["n"] >= 7

    part = train_sae(source, config, tc, device="cpu", checkpoint_dir=tmp_path, should_stop=stop_after_7)
    assert part.stopped_early and part.steps == 7
    assert (tmp_path / "checkpoint.safetensors").exists() and (tmp_path / "trainer_state.json").exists()
    assert not list(tmp_path.glob("*.tmp"))
    resumed = train_sae(source, config, tc, device="cpu", checkpoint_dir=tmp_path)
    assert resumed.steps == 15 and not resumed.stopped_early
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert torch.allclose(getattr(resumed.sae, name), getattr(full.sae, name), atol=1e-6, rtol=0), name
    assert resumed.metrics["tokens_seen"] == full.metrics["tokens_seen"]

    # Resuming a finished run does nothing; resume=False starts over.
    again = train_sae(source, config, tc, device="cpu", checkpoint_dir=tmp_path)
    assert again.steps == 15 and torch.equal(again.sae.W_dec, resumed.sae.W_dec)
    fresh = train_sae(source, config, tc, device="cpu", checkpoint_dir=tmp_path, resume=False)
    assert torch.allclose(fresh.sae.W_dec, full.sae.W_dec, atol=1e-6)


def test_resume_with_a_different_config_is_a_clear_error(tmp_path):
    source, config, tc = _resume_setup()
    train_sae(source, config, tc, device="cpu", checkpoint_dir=tmp_path, should_stop=lambda: True)
    other = SAEConfig(d_in=16, n_concepts=32, k=3, group_sizes=(4, 28))
    with pytest.raises(SAEError, match="different run.*k"):
        train_sae(source, other, tc, device="cpu", checkpoint_dir=tmp_path)
    with pytest.raises(SAEError, match="lr"):
        train_sae(source, config, TrainConfig(**{**tc.to_dict(), "lr": 1e-3, "betas": tc.betas}),
                  device="cpu", checkpoint_dir=tmp_path)
    (tmp_path / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(SAEError, match="unreadable"):
        train_sae(source, config, tc, device="cpu", checkpoint_dir=tmp_path)


def test_wrong_token_dimension_is_an_error():
    with pytest.raises(SAEError, match="dimensions"):
        train_sae(ArrayTokenSource(np.zeros((10, 8), np.float32)),
                  SAEConfig(d_in=16, n_concepts=32, k=2, group_sizes=(4, 28)), TrainConfig(), device="cpu")
