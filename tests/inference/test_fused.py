"""The fused Bernoulli output layer against autograd through binary_cross_entropy_with_logits."""

import pytest
import torch
import torch.nn.functional as F

from deepem.models import bernoulli_head as fused
from deepem.models.bernoulli_head import bernoulli_linear_log_prob, log_sigmoid_floor


@pytest.fixture(autouse=True)
def fused_at_every_size(monkeypatch):
    """The tests' tensors are small; the fused kernel must run on them (in use it starts at 150k logits)."""
    monkeypatch.setattr(fused, "FUSED_MIN_NUMEL", 0)


def reference(x, h, weight, bias):
    logits = torch.nn.functional.linear(h, weight, bias)
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("scale", [0.5, 8.0, 60.0])  # 60: logits far below the log-sigmoid floor
def test_value_and_gradients_match_autograd(dtype, tol, scale):
    g = torch.Generator().manual_seed(0)
    k, b, hdim, d = 4, 3, 6, 17
    x = torch.bernoulli(torch.full((b, d), 0.4, dtype=dtype), generator=g)
    h = torch.randn(k, b, hdim, dtype=dtype, generator=g).requires_grad_()
    weight = (scale * torch.randn(d, hdim, dtype=dtype, generator=g)).requires_grad_()
    bias = torch.randn(d, dtype=dtype, generator=g).requires_grad_()
    coeff = torch.randn(k, b, dtype=dtype, generator=g)  # a weighted sum, as an IW loss has

    ours = bernoulli_linear_log_prob(x, h, weight, bias)
    grads = torch.autograd.grad((coeff * ours).sum(), (h, weight, bias))
    ref = reference(x, h, weight, bias)
    ref_grads = torch.autograd.grad((coeff * ref).sum(), (h, weight, bias))

    rel = tol * ref.abs().max().item()
    assert torch.allclose(ours, ref, rtol=0, atol=rel)
    for ours_g, ref_g in zip(grads, ref_grads, strict=True):
        assert torch.allclose(ours_g, ref_g, rtol=tol, atol=tol * ref_g.abs().max().item())


def test_far_below_the_floor_is_exact_not_clamped():
    # log σ(t) ≈ t for very negative t: a clamp without the correction would return ~ τ instead.
    h = torch.ones(1, 1, dtype=torch.float64)
    weight = torch.tensor([[-200.0], [300.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    value = bernoulli_linear_log_prob(x, h, weight, None)
    assert value.item() == pytest.approx(-500.0, abs=1e-9)
    assert log_sigmoid_floor(torch.float64) < -35


def test_without_a_graph_same_value():
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((5, 9), 0.3), generator=g)
    h, weight, bias = torch.randn(7, 5, 4, generator=g), torch.randn(9, 4, generator=g), torch.randn(9, generator=g)
    with torch.no_grad():
        fast = bernoulli_linear_log_prob(x, h, weight, bias)
    assert torch.allclose(fast, reference(x, h, weight, bias), atol=1e-4)


def test_only_requested_gradients_are_computed():
    g = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((2, 3), 0.5), generator=g)
    h = torch.randn(2, 4, generator=g).requires_grad_()
    weight, bias = torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    (grad_h,) = torch.autograd.grad(bernoulli_linear_log_prob(x, h, weight, bias).sum(), (h,))
    (ref_h,) = torch.autograd.grad(reference(x, h, weight, bias).sum(), (h,))
    assert torch.allclose(grad_h, ref_h, atol=1e-5)


def test_a_backward_pass_for_some_inputs_computes_only_theirs():
    """θ's and φ's losses are differentiated in separate passes (inputs=group): each gets its own
    gradient right, and a pass for h does not fill W's .grad (nor the reverse)."""
    g = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.full((3, 5), 0.5), generator=g)
    h0 = torch.randn(4, 3, 6, generator=g).requires_grad_()
    weight = torch.randn(5, 6, generator=g).requires_grad_()
    bias = torch.randn(5, generator=g).requires_grad_()
    value = bernoulli_linear_log_prob(x, torch.tanh(h0), weight, bias).sum()
    value.backward(inputs=[h0], retain_graph=True)
    assert weight.grad is None and bias.grad is None
    ref_h0 = torch.autograd.grad(reference(x, torch.tanh(h0), weight, bias).sum(), h0)[0]
    assert torch.allclose(h0.grad, ref_h0, atol=1e-5)
    h0.grad = None
    value.backward(inputs=[weight, bias])
    assert h0.grad is None
    ref_w, ref_b = torch.autograd.grad(reference(x, torch.tanh(h0), weight, bias).sum(), (weight, bias))
    assert torch.allclose(weight.grad, ref_w, atol=1e-5) and torch.allclose(bias.grad, ref_b, atol=1e-5)


def test_under_vmap_the_composite_form_gives_the_same_values():
    g = torch.Generator().manual_seed(4)
    x = torch.bernoulli(torch.full((3, 5), 0.5), generator=g)
    hs, weight, bias = torch.randn(2, 4, 3, 6, generator=g), torch.randn(5, 6, generator=g), torch.randn(5, generator=g)
    batched = torch.func.vmap(lambda h: bernoulli_linear_log_prob(x, h, weight, bias))(hs)
    assert torch.allclose(batched, torch.stack([reference(x, h, weight, bias) for h in hs]), atol=1e-5)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-15), (torch.float32, 2.5e-7)])
def test_fast_tanh_matches_tanh_in_value_and_gradient(dtype, atol):
    from deepem.inference.fast_tanh import fast_tanh

    g = torch.Generator().manual_seed(1)
    # small, moderate and saturated inputs, both signs, plus exact zeros and the tails
    x = torch.cat([torch.randn(20000, dtype=dtype, generator=g) * s for s in (1e-4, 1.0, 5.0, 30.0)]
                  + [torch.tensor([0.0, -0.0, 1e3, -1e3], dtype=dtype)]).requires_grad_()
    coeff = torch.randn(x.shape, dtype=dtype, generator=g)
    ours = fast_tanh(x)
    ref = torch.tanh(x)
    (d_ours,) = torch.autograd.grad((coeff * ours).sum(), x)
    (d_ref,) = torch.autograd.grad((coeff * ref).sum(), x)
    assert (ours - ref).abs().max() <= atol
    assert ours.abs().max() <= 1  # never outside tanh's range
    assert torch.allclose(d_ours, d_ref, rtol=0, atol=4 * atol * coeff.abs().max().item())
    with torch.no_grad():
        assert torch.equal(fast_tanh(x), ours)


def test_mlp_tanh_layers_use_the_fast_kernel_and_stay_modules_of_tanh():
    from deepem.models.networks import mlp

    net = mlp(5, [200, 200], 3)
    acts = [m for m in net if isinstance(m, torch.nn.Tanh)]
    assert len(acts) == 2
    x = torch.randn(400, 5, generator=torch.Generator().manual_seed(0))  # 80k hidden entries: the fast path
    reference = x
    for m in net:
        reference = torch.tanh(reference) if isinstance(m, torch.nn.Tanh) else m(reference)
    assert torch.allclose(net(x), reference, rtol=0, atol=1e-6)
