"""Each architecture's sparsity rule on hand-made inputs, decoder-norm handling, the registry."""

from __future__ import annotations

import pytest
import torch

from probes.errors import InputError
from saes import registry
from saes.architectures.batchtopk import topk_per_batch
from saes.architectures.feature_choice import choose_per_column, column_capacities
from saes.architectures.jumprelu import jumprelu, step
from saes.architectures.mutual_choice import underused, zipf_fit
from saes.architectures.topk import topk_per_row


def make(name: str, **kw):
    return registry.build(registry.make_config(name, d_in=8, d_sae=16, seed=1, **kw))


def test_registry_lists_eight_saes_two_transcoders_and_rejects_unknown():
    assert registry.sae_names() == ["batchtopk", "feature_choice", "gated", "jumprelu", "matryoshka_batchtopk",
                                    "mutual_choice", "standard", "topk"]
    assert registry.names() == sorted([*registry.sae_names(), "jumprelu_transcoder", "topk_transcoder"])
    with pytest.raises(InputError, match="Unknown SAE architecture 'crosscoder'.*topk"):
        registry.lookup("crosscoder")


def test_topk_keeps_exactly_k_per_row():
    z = torch.tensor([[5.0, 1.0, 3.0, 4.0, 2.0], [0.5, 0.4, 0.3, 0.2, 0.1]])
    f = topk_per_row(z, 2)
    assert torch.equal(f, torch.tensor([[5.0, 0, 0, 4.0, 0], [0.5, 0.4, 0, 0, 0]]))
    sae = make("topk", k=3)
    x = torch.randn(50, 8)
    sae.W_enc.data.abs_()
    f = sae.encode(x.abs())
    assert ((f > 0).sum(-1) == 3).all()


def test_topk_never_keeps_negative():
    f = topk_per_row(torch.tensor([[-1.0, -2.0, 3.0]]), 2)
    assert torch.equal(f, torch.tensor([[0.0, 0.0, 3.0]]))


def test_batchtopk_keeps_k_times_batch_and_sets_threshold():
    z = torch.tensor([[9.0, 1.0, 8.0], [7.0, 6.0, 0.5]])  # k=2, B=2: keep the 4 largest: 9, 8, 7, 6
    f, smallest = topk_per_batch(z, 2)
    assert torch.equal(f, torch.tensor([[9.0, 0.0, 8.0], [7.0, 6.0, 0.0]]))
    assert float(smallest) == 6.0
    sae = make("batchtopk", k=2)
    sae.train()
    out = sae.activation(z.repeat(1, 6)[:, :16] if False else torch.cat([z, torch.zeros(2, 13)], 1))
    assert int((out > 0).sum()) == 4 and float(sae.threshold) == 6.0
    sae.eval()  # inference: a JumpReLU with the learned global threshold
    inf = sae.activation(torch.cat([z, torch.zeros(2, 13)], 1))
    assert torch.equal(inf[:, :3], torch.tensor([[9.0, 0.0, 8.0], [7.0, 0.0, 0.0]]))


def test_mutual_choice_keeps_exactly_k_b_in_the_batch():
    sae = make("mutual_choice", k=3)
    sae.train()
    z = torch.rand(10, 16) + 0.1
    f = sae.activation(z)
    assert int((f > 0).sum()) == 3 * 10
    kept = torch.sort(f[f > 0]).values
    assert torch.equal(kept, torch.sort(z.flatten()).values[-30:])


def test_feature_choice_at_most_m_per_column():
    r = torch.tensor([[3.0, 0.0], [2.0, 5.0], [1.0, 4.0], [4.0, 0.0]])
    f = choose_per_column(r, torch.tensor([2, 3]))
    assert torch.equal(f, torch.tensor([[3.0, 0.0], [0.0, 5.0], [0.0, 4.0], [4.0, 0.0]]))
    sae = make("feature_choice", k=2)  # uniform m = round(2 * 32 / 16) = 4
    sae.train()
    f = sae.activation(torch.randn(32, 16))
    assert ((f > 0).sum(0) <= 4).all()
    assert ((f > 0).sum(0) == 4).sum() >= 8


def test_feature_choice_zipf_capacities_follow_rank():
    density = torch.tensor([0.1, 0.5, 0.3, 0.0, 0.05, 0.04, 0.03, 0.02])  # ranks 3, 1, 2, 8, 4, 5, 6, 7
    rank = [3, 1, 2, 8, 4, 5, 6, 7]
    q = column_capacities(100, 8, 2, "zipf", density, alpha=1.0)  # 1 each, then 192 by 1/rank
    harmonic = sum(1 / r for r in range(1, 9))
    assert q.tolist() == pytest.approx([1 + 192 / r / harmonic for r in rank])
    assert float(q.sum()) == pytest.approx(200)
    # a quota above B is clipped to B and its excess shared in proportion (water-filling)
    q = column_capacities(10, 8, 5, "zipf", density, alpha=3.0)
    assert float(q.max()) == pytest.approx(10) and float(q.sum()) == pytest.approx(50)
    assert float(q[1]) == pytest.approx(10) and float(q[3]) < float(q[6]) < float(q[0]) <= 10


@pytest.mark.parametrize(("batch", "d_sae", "k", "kind"), [(64, 4096, 4, "uniform"), (100, 300, 7, "uniform"),
                                                           (64, 96, 5, "zipf"), (64, 4096, 4, "zipf"), (37, 50, 3, "uniform")])
def test_feature_choice_budget_is_exact(batch, d_sae, k, kind):
    g = torch.Generator().manual_seed(d_sae)
    r = torch.rand(batch, d_sae, generator=g) + 0.01  # all positive: every kept slot is non-zero
    density = torch.rand(d_sae, generator=g)
    f = choose_per_column(r, column_capacities(batch, d_sae, k, kind, density))
    assert int((f > 0).sum()) == k * batch  # exactly k*B active entries, L0 exactly k on average
    # each column keeps its largest entries (independent check: kept >= every dropped entry of the column)
    kept_min = torch.where(f > 0, f, torch.full_like(f, float("inf"))).min(0).values
    dropped_max = torch.where(f > 0, torch.zeros_like(f), r).max(0).values
    assert bool(((kept_min >= dropped_max) | (kept_min == float("inf"))).all())


def test_feature_choice_leftover_slots_go_by_value():
    # q = 1.5 per column: floor 1 each, then 2 leftover slots to the columns with the largest 2nd entry
    r = torch.tensor([[9.0, 8.0, 7.0, 6.0], [1.0, 5.0, 2.0, 4.0]])
    f = choose_per_column(r, torch.full((4,), 1.5, dtype=torch.float64))
    assert (f > 0).sum(0).tolist() == [1, 2, 1, 2]


def test_jumprelu_thresholds_and_straight_through_gradients():
    z = torch.tensor([[0.5, 1.0, 1.51, 2.0]], requires_grad=True)
    theta = torch.tensor([1.0, 1.0, 1.5, 3.0], requires_grad=True)
    f = jumprelu(z, theta, bandwidth=0.1)
    assert torch.equal(f.detach(), torch.tensor([[0.0, 0.0, 1.51, 0.0]]))  # strictly above theta
    f.sum().backward()
    # d/dtheta = -(theta/eps) K((z - theta)/eps): only |z - theta| < eps/2 count (z=1.0 at 1.0; 1.51 at 1.5)
    assert torch.allclose(theta.grad, torch.tensor([0.0, -10.0, -15.0, 0.0]))
    assert torch.equal(z.grad, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    theta.grad = None
    step(z, theta, 0.1).sum().backward()
    assert torch.allclose(theta.grad, torch.tensor([0.0, -10.0, -10.0, 0.0]))


def test_standard_l1_uses_decoder_norms():
    sae = make("standard", l1_coefficient=2.0)
    sae.W_dec.data *= 3.0
    x = torch.randn(5, 8)
    out = sae.loss(x)
    f = out.feature_acts
    assert torch.allclose(out.terms["l1"], 2.0 * (f * 3.0).sum(-1).mean(), rtol=1e-5)


def test_unit_decoder_norm_after_step_and_parallel_grad_removed():
    sae = make("topk", k=2)
    x = torch.randn(20, 8)
    sae.loss(x).loss.backward()
    sae.remove_parallel_decoder_grad()
    rows = sae.W_dec.data / sae.W_dec.data.norm(dim=1, keepdim=True)
    assert (sae.W_dec.grad * rows).sum(1).abs().max() < 1e-5
    torch.optim.SGD(sae.parameters(), lr=0.5).step()
    sae.normalize_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16), atol=1e-6)


@pytest.mark.parametrize("name", ["standard", "jumprelu"])
def test_fold_decoder_norm_keeps_outputs(name):
    sae = make(name, decoder_norm="free")
    sae.W_dec.data *= torch.linspace(0.5, 3.0, 16)[:, None]
    sae.b_enc.data += 0.3
    x = torch.randn(30, 8)
    before = sae(x)
    sae.fold_decoder_norm()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16), atol=1e-6)
    assert torch.allclose(sae(x), before, atol=1e-5)


def test_fold_refused_for_topk():
    with pytest.raises(InputError, match="unit"):
        make("topk").fold_decoder_norm()


def test_auxk_zero_without_dead_and_positive_with():
    sae = make("topk", k=2)
    x = torch.randn(20, 8)
    assert float(sae.loss(x).terms["auxk"]) == 0.0
    assert float(sae.loss(x, dead_mask=torch.ones(16, dtype=torch.bool)).terms["auxk"].detach()) > 0.0


def test_underuse_marks_features_below_zipf_fit():
    # six features on an exact Zipf curve 0.4 / r, one far below it, one dead
    density = torch.tensor([0.4 / r for r in range(1, 7)] + [0.0005, 0.0])
    fit = zipf_fit(density)
    assert fit[0] > fit[1] > fit[5] > fit[7]
    mask = underused(density, 0.1, None)
    assert mask.tolist() == [False] * 6 + [True, True]
    assert underused(density, 0.1, torch.tensor([True] + [False] * 7)).tolist() == [True] + [False] * 5 + [True, True]


def test_norm_scale_round_trip_in_raw_units():
    sae = make("standard")
    sae.cfg.norm_scale = 4.0
    x = torch.randn(3, 8)
    assert torch.allclose(sae.pre_acts(x), (4 * x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    f = sae.encode(x)
    assert torch.allclose(sae.decode(f), (f @ sae.W_dec + sae.b_dec) / 4)


def test_wrong_width_is_input_error():
    with pytest.raises(InputError, match="d_in=8"):
        make("topk").encode(torch.randn(2, 9))


def test_underuse_loss_stays_active_until_the_target_count():
    from saes.architectures.mutual_choice import underuse_loss

    t = torch.tensor(1.0)
    # feature 0 reaches t on one token only (the old max-based loss would be 0); its target is 3 of 4 tokens
    z = torch.tensor([[2.0, 0.0], [0.5, 0.0], [0.25, 0.0], [-1.0, 0.0]], requires_grad=True)
    under = torch.tensor([True, False])
    loss = underuse_loss(z, t, under, torch.tensor([0.75, 0.75]))
    # by hand: n = ceil(0.75 * 4) = 3 best tokens 2.0, 0.5, 0.25: (0 + 0.5 + 0.75) / 3
    assert float(loss) == pytest.approx(1.25 / 3)
    loss.backward()
    assert z.grad[:, 1].abs().sum() == 0 and z.grad[1, 0] < 0 and z.grad[0, 0] == 0  # only under-used, below t
    # selected on its target count: zero
    z2 = torch.tensor([[2.0], [1.5], [1.0], [-1.0]])
    assert float(underuse_loss(z2, t, torch.tensor([True]), torch.tensor([0.75]))) == 0.0


@pytest.mark.parametrize("dead", [False, True])
def test_topk_sparse_step_equals_dense_step(dead):
    sae = registry.build(registry.make_config("topk", d_in=12, d_sae=40, k=5, aux_k=7, seed=3, norm_scale=1.3))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.2)
        sae.b_enc.normal_(0, 0.2)
    x = torch.randn(33, 12, generator=torch.Generator().manual_seed(4))
    mask = (torch.arange(40) % 3 == 0) if dead else None
    grads = []
    outs = []
    for fn in (sae.loss, sae.loss_sparse):
        sae.zero_grad(set_to_none=True)
        out = fn(x, dead_mask=mask)
        out.loss.backward()
        outs.append(out)
        grads.append({n: p.grad.clone() for n, p in sae.named_parameters()})
    dense, sparse = outs
    assert float(sparse.loss) == pytest.approx(float(dense.loss), rel=1e-5)
    assert float(sparse.terms["auxk"]) == pytest.approx(float(dense.terms["auxk"]), rel=1e-5, abs=1e-7)
    assert (float(dense.terms["auxk"]) > 0) == dead
    assert torch.allclose(sparse.x_hat, dense.x_hat, atol=1e-5)
    for name in grads[0]:
        assert torch.allclose(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-5), name
    assert sparse.l0() == dense.l0() == 5.0
    # the firing statistics from (values, indices) equal the dense ones
    a = registry.build(registry.make_config("topk", d_in=12, d_sae=40, k=5))
    b = registry.build(registry.make_config("topk", d_in=12, d_sae=40, k=5))
    a.update_stats(dense)
    b.update_stats(sparse)
    assert torch.equal(a.tokens_since_fired, b.tokens_since_fired) and torch.allclose(a.density_ema, b.density_ema)
