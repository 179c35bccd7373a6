"""The SAE module and its loss, checked against hand computations from docs/method.md §2."""

import numpy as np
import pytest
import torch

from insight_desktop.core.sae import (
    MatryoshkaSAE,
    SAEConfig,
    batch_topk_dense,
    batch_topk_indices,
    geometric_median,
    matryoshka_loss_dense,
    sparse_step,
)
from insight_desktop.core.sae.trainer import update_threshold


def tiny_sae(d=16, m=40, k=3, groups=(5, 10, 25), seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    sae = MatryoshkaSAE(SAEConfig(d_in=d, n_concepts=m, k=k, group_sizes=groups)).to(dtype)
    x = torch.randn(64, d, dtype=dtype)
    sae.init_from_data(x, torch.Generator().manual_seed(seed))
    with torch.no_grad():                      # move away from the symmetric init
        sae.b_enc.normal_(0, 0.3)
        sae.W_enc.add_(0.2 * torch.randn_like(sae.W_enc))
    return sae, x


# ---------------------------------------------------------------- geometric median
def test_geometric_median_known_cases():
    # 1-D: the geometric median is the ordinary median, whatever the outlier does.
    pts = torch.tensor([[0.0], [1.0], [2.0], [3.0], [1000.0]], dtype=torch.float64)
    assert geometric_median(pts).item() == pytest.approx(2.0, abs=1e-3)
    # Symmetric configuration: square corners plus centre → the centre.
    sq = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [0.0, 0.0]])
    assert torch.allclose(geometric_median(sq), torch.zeros(2), atol=1e-4)
    # A far outlier drags the mean, barely the median.
    rng = np.random.default_rng(0)
    cloud = torch.tensor(rng.normal(0, 1, (200, 8)))
    with_outlier = torch.cat([cloud, torch.full((1, 8), 1e4, dtype=torch.float64)])
    gm = geometric_median(with_outlier)
    assert torch.linalg.norm(with_outlier.mean(0)).item() > 100
    assert torch.linalg.norm(gm - geometric_median(cloud)).item() < 0.05


def test_geometric_median_minimises_sum_of_distances():
    pts = torch.tensor(np.random.default_rng(1).normal(size=(50, 3)) ** 3)
    gm = geometric_median(pts)

    def cost(p):
        return torch.linalg.norm(pts - p, dim=1).sum().item()

    for delta in torch.eye(3, dtype=pts.dtype) * 1e-2:
        assert cost(gm) <= cost(gm + delta) + 1e-9 and cost(gm) <= cost(gm - delta) + 1e-9


# ---------------------------------------------------------------- BatchTopK
@pytest.mark.parametrize("shape,k", [((8, 20), 3), ((256, 1024), 8), ((300, 777), 5)])
def test_batch_topk_keeps_exactly_k_times_B_largest(shape, k):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(shape, generator=g) + 0.01                   # all positive, no ties
    idx = batch_topk_indices(a, k)
    assert idx.numel() == k * shape[0]
    ref = a.view(-1).topk(k * shape[0]).indices
    assert torch.equal(idx, torch.sort(ref).values)
    z = batch_topk_dense(a, k)
    assert int((z != 0).sum()) == k * shape[0]
    kept = a.view(-1)[idx]
    assert kept.min() >= a.view(-1)[torch.ones(a.numel(), dtype=torch.bool).index_fill_(0, idx, False)].max()


def test_batch_topk_exact_even_when_the_sampled_cutoff_is_misleading():
    # Entries on the sampling stride are huge, the rest moderate: the first cut-off guess keeps
    # too few candidates and the selection must retry lower.
    a = torch.rand(512, 1024, generator=torch.Generator().manual_seed(1)) + 0.01
    a.view(-1)[::127] += 100.0
    k = 16                                                       # k·B = 8192 > number of sampled entries
    idx = batch_topk_indices(a, k)
    assert torch.equal(idx, torch.sort(a.view(-1).topk(k * 512).indices).values)


def test_batch_topk_with_few_positive_entries_keeps_the_positives():
    a = torch.zeros(300, 400)
    a[3, 7], a[100, 5], a[299, 399] = 1.0, 2.0, 0.5
    idx = batch_topk_indices(a, 2)
    assert sorted(idx.tolist()) == sorted([3 * 400 + 7, 100 * 400 + 5, 299 * 400 + 399])


# ---------------------------------------------------------------- module
def test_shapes_init_and_parameter_count():
    cfg = SAEConfig.reference()
    sae = MatryoshkaSAE(cfg)
    assert sae.W_enc.shape == (512, 8192) and sae.W_dec.shape == (8192, 512)
    assert sae.b_enc.shape == (8192,) and sae.b_dec.shape == (512,) and sae.threshold.item() == -1.0
    assert sae.n_parameters == 2 * 512 * 8192 + 8192 + 512         # ≈ 8.4 M (docs/method.md §7)
    x = torch.randn(300, 512) + 3.0
    sae.init_from_data(x, torch.Generator().manual_seed(0))
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(8192), atol=1e-5)
    assert torch.equal(sae.W_enc, sae.W_dec.t()) and (sae.b_enc == 0).all()
    assert torch.allclose(sae.b_dec, geometric_median(x), atol=1e-5)


def test_encode_uses_threshold_and_falls_back_to_batchtopk():
    sae, x = tiny_sae()
    a = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    with torch.no_grad():
        z = sae.encode(x)                                        # θ = −1: BatchTopK over this batch
        assert int((z > 0).sum()) == sae.config.k * x.shape[0]
        assert torch.allclose(z, batch_topk_dense(a, sae.config.k), atol=1e-12)
        sae.threshold.fill_(0.4)
        assert torch.allclose(sae.encode(x), a * (a > 0.4))
        assert ((sae.encode(x) > 0) == (a > 0.4)).all()           # exactly the entries above θ
        sae.threshold.fill_(0.0)
        assert torch.allclose(sae.encode(x), a)                   # θ = 0: plain ReLU codes
        x_hat, z2 = sae(x)
        assert torch.allclose(x_hat, z2 @ sae.W_dec + sae.b_dec)


def test_sparse_decode_matches_dense_matmul():
    cfg = SAEConfig(d_in=32, n_concepts=512, k=4, group_sizes=(64, 448))
    sae = MatryoshkaSAE(cfg)
    z = torch.relu(torch.randn(100, 512) - 2.5)                  # ~0.6 % non-zero
    with torch.no_grad():
        assert torch.allclose(sae.decode(z), z @ sae.W_dec + sae.b_dec, atol=1e-5)


def test_prefix_reconstructions_match_per_group_definition():
    sae, x = tiny_sae()
    z = sae.encode_batchtopk(sae.pre_activations(x)).detach()
    rec = sae.prefix_reconstructions(z)
    assert rec.shape == (3, 64, 16)
    for g, end in enumerate(sae.config.group_ends):
        expected = sae.b_dec + z[:, :end] @ sae.W_dec[:end]
        assert torch.allclose(rec[g], expected, atol=1e-12)
    assert torch.allclose(rec[-1], sae.decode(z))


def test_decoder_constraints():
    sae, x = tiny_sae()
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.remove_parallel_decoder_grad_()
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-12
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(40, 1, dtype=torch.float64) + 0.5)
    sae.normalize_decoder_()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(40, dtype=torch.float64))


# ---------------------------------------------------------------- loss by hand
def _hand_example():
    """d 2, m 3 in groups (1, 2), k 1, two tokens; every number checkable on paper."""
    sae = MatryoshkaSAE(SAEConfig(d_in=2, n_concepts=3, k=1, group_sizes=(1, 2))).double()
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64))
        sae.W_enc.copy_(sae.W_dec.t())
        sae.b_enc.copy_(torch.tensor([0.0, -0.5, 0.0], dtype=torch.float64))
        sae.b_dec.copy_(torch.tensor([0.1, 0.0], dtype=torch.float64))
    x = torch.tensor([[2.1, 1.0], [0.1, 3.0]], dtype=torch.float64)
    return sae, x


def test_loss_equals_hand_computation():
    sae, x = _hand_example()
    # x − b_dec = (2, 1) and (0, 3). Pre-activations a = ReLU(xc·W_decᵀ + b_enc):
    #   token 0: (2, 0.5, 2.0), token 1: (0, 2.5, 2.4).
    # BatchTopK keeps k·B = 2 entries of the 2×3 matrix: 2.5 (t1, c1) and 2.4 (t1, c2)
    # (the 2.0s of token 0 lose). Token 0 decodes to nothing at every level: residual (2, 1),
    # ‖·‖² = 5 for both groups. Token 1: group 1 (concept 0 only) → residual (0, 3), 9;
    # full → 2.5·(0,1) + 2.4·(0.6, 0.8) = (1.44, 4.42) → residual (−1.44, −1.42), 2.0736 + 2.0164.
    g1 = (5 + 9) / 2
    g2 = (5 + 1.44**2 + 1.42**2) / 2
    # As dictionary_learning: each group's loss × w_g = 1/G, then the mean over the G = 2 groups.
    expected = (g1 / 2 + g2 / 2) / 2
    dense = matryoshka_loss_dense(sae, x)
    assert dense.total.item() == pytest.approx(expected, abs=1e-12)
    sel = sparse_step.select(sae, x, 1)
    assert sorted(zip(sel.rows.tolist(), sel.cols.tolist())) == [(1, 1), (1, 2)]
    stats = sparse_step.loss_and_grads(sae, sel, dead=None, aux_alpha=1 / 32)
    assert stats.loss.item() == pytest.approx(expected, abs=1e-12)
    assert stats.min_kept.item() == pytest.approx(2.4)
    assert stats.mse.item() == pytest.approx(g2, abs=1e-12)


def test_aux_loss_equals_hand_computation_with_a_dead_latent():
    sae, x = _hand_example()
    dead = torch.tensor([True, False, False])                   # concept 0 planted dead
    # k_aux = min(d/2, #dead) = 1: each token's largest dead pre-activation is a_0 = (2, 0).
    # ê = a_0·W_dec[0] without bias: (2, 0) and (0, 0). Residuals e = x − x̂⁽ᴳ⁾ (from above):
    e = np.array([[2.0, 1.0], [-1.44, -1.42]])
    e_hat = np.array([[2.0, 0.0], [0.0, 0.0]])
    num = ((e - e_hat) ** 2).sum(1).mean()
    den = ((e - e.mean(0)) ** 2).sum(1).mean()
    aux = num / den
    dense = matryoshka_loss_dense(sae, x, dead=dead)
    assert dense.aux.item() == pytest.approx(aux, abs=1e-12)
    stats = sparse_step.loss_and_grads(sae, sparse_step.select(sae, x, 1), dead=dead, aux_alpha=1 / 32)
    assert stats.aux_loss.item() == pytest.approx(aux, abs=1e-12)
    assert stats.loss.item() == pytest.approx(dense.reconstruction.item() + aux / 32, abs=1e-12)


@pytest.mark.parametrize("with_dead", [False, True])
def test_sparse_gradients_equal_autograd_of_the_definition(with_dead):
    sae, x = tiny_sae()
    dead = torch.zeros(40, dtype=torch.bool)
    dead[[3, 7, 20, 33, 39]] = True
    dead = dead if with_dead else None
    sae.zero_grad()
    ref = matryoshka_loss_dense(sae, x, dead=dead, aux_alpha=1 / 32)
    ref.total.backward()
    expected = {n: p.grad.clone() for n, p in sae.named_parameters()}
    stats = sparse_step.loss_and_grads(sae, sparse_step.select(sae, x, 3), dead=dead, aux_alpha=1 / 32)
    assert stats.loss.item() == pytest.approx(ref.total.item(), rel=1e-12)
    if with_dead:
        assert stats.aux_loss.item() > 0
    for name, p in sae.named_parameters():
        assert torch.allclose(p.grad, expected[name], atol=1e-12, rtol=1e-10), name


def test_threshold_update_rule():
    assert update_threshold(-1.0, 0.37, 0.999) == 0.37                       # first update sets θ
    assert update_threshold(0.37, 0.5, 0.999) == pytest.approx(0.999 * 0.37 + 0.001 * 0.5)
