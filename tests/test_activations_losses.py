"""Hand-written activations, cross-entropy and the MLP forward pass vs PyTorch's own: values and gradients.

    python -m pytest tests/test_activations_losses.py -q
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlplab.activations import ACTIVATIONS
from mlplab.losses import accuracy, correct, cross_entropy
from mlplab.mlp import forward, init_mlp

# The torch counterpart of every activation. F.softplus switches to the identity above `threshold` (default
# 20), which is off by up to e^-20 ~ 2e-9; at 40 the switch is exact in float64 (e^-40 < ulp(40) / 2).
REFERENCE = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "elu": F.elu,
    "gelu": lambda x: F.gelu(x, approximate="none"),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": lambda x: F.softplus(x, threshold=40.0),
    "sin": torch.sin,
    "identity": lambda x: x,
}
# Differentiable at 0 (elu too, with alpha = 1).
SMOOTH = ["elu", "gelu", "tanh", "sigmoid", "softplus", "sin", "identity"]
TIGHT = {"rtol": 1e-10, "atol": 1e-12}

MAGNITUDES = [1e-3, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.5, 37.0, 50.0, 100.0, 800.0, 1e4]


def _inputs() -> torch.Tensor:
    """Nonzero float64 inputs: a symmetric grid up to ±1e4 plus a random sample."""
    grid = torch.tensor(MAGNITUDES, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    sample = 3.0 * torch.randn(64, generator=g, dtype=torch.float64)
    return torch.cat([-grid, grid, sample[sample != 0]])


def _value_and_grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(x) and d(sum fn(x))/dx, through autograd."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    (gx,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), gx


def test_every_activation_has_a_reference():
    assert set(ACTIVATIONS) == set(REFERENCE)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_values_and_gradients_match_torch(name):
    x = _inputs()
    y, gx = _value_and_grad(ACTIVATIONS[name], x)
    y_ref, gx_ref = _value_and_grad(REFERENCE[name], x)
    assert y.shape == x.shape and y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, **TIGHT)
    torch.testing.assert_close(gx, gx_ref, **TIGHT)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_finite_for_large_inputs(name, dtype):
    """The references are finite at ±50 .. ±1e4, so ours must be too (float32 is what training runs in)."""
    x = torch.tensor([-1e4, -800.0, -100.0, -50.0, 50.0, 100.0, 800.0, 1e4], dtype=dtype)
    y, gx = _value_and_grad(ACTIVATIONS[name], x)
    y_ref, gx_ref = _value_and_grad(REFERENCE[name], x)
    assert torch.isfinite(y_ref).all() and torch.isfinite(gx_ref).all()
    assert torch.isfinite(y).all(), f"{name}({x.tolist()}) = {y.tolist()}"
    assert torch.isfinite(gx).all(), f"{name}'({x.tolist()}) = {gx.tolist()}"
    tol = TIGHT if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(gx, gx_ref, **tol)


@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_activation_gradient_at_zero(name):
    x = torch.zeros(3, dtype=torch.float64)
    y, gx = _value_and_grad(ACTIVATIONS[name], x)
    y_ref, gx_ref = _value_and_grad(REFERENCE[name], x)
    torch.testing.assert_close(y, y_ref, **TIGHT)
    torch.testing.assert_close(gx, gx_ref, **TIGHT)


@pytest.mark.parametrize(("name", "one_sided"), [("relu", (0.0, 1.0)), ("leaky_relu", (0.01, 1.0))])
def test_kink_gradient_at_zero_is_a_one_sided_derivative(name, one_sided):
    """At the kink any subgradient will do (torch takes the left one), but it must be one of the slopes."""
    y, gx = _value_and_grad(ACTIVATIONS[name], torch.zeros(1, dtype=torch.float64))
    assert y.item() == 0.0
    assert gx.item() in one_sided


def test_leaky_relu_slope():
    x = torch.tensor([-1e4, -2.0, 3.0], dtype=torch.float64)
    expected = torch.tensor([-100.0, -0.02, 3.0], dtype=torch.float64)
    torch.testing.assert_close(ACTIVATIONS["leaky_relu"](x), expected)


# ------------------------------------------------------------------------------------------------------------
# cross-entropy and accuracy

M, B, C = 3, 9, 5


def _logits(extreme: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    z = 3.0 * torch.randn(M, B, C, generator=g, dtype=torch.float64)  # (M, B, C)
    if extreme:
        z[0, 0] = torch.tensor([1e4, -1e4, 0.0, 1e4, -1e4])
        z[1, :, 2] = 1e4
        z[2, 3] = -1e4
        z[2, 4, 1] = -1e4
    return z


def _labels(per_model: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    shape = (M, B) if per_model else (B,)
    return torch.randint(0, C, shape, generator=g)


def _reference_ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy of each model separately, (M,)."""
    ys = y if y.dim() == 2 else y.expand(M, B)
    return torch.stack([F.cross_entropy(z[m], ys[m]) for m in range(M)])


@pytest.mark.parametrize("extreme", [False, True])
@pytest.mark.parametrize("per_model", [False, True])
def test_cross_entropy_matches_torch(per_model, extreme):
    z0, y = _logits(extreme), _labels(per_model)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)  # distinct per model: no mixing across M

    z = z0.clone().requires_grad_(True)
    loss = cross_entropy(z, y)
    (gz,) = torch.autograd.grad((weights * loss).sum(), z)

    z_ref = z0.clone().requires_grad_(True)
    loss_ref = _reference_ce(z_ref, y)
    (gz_ref,) = torch.autograd.grad((weights * loss_ref).sum(), z_ref)

    assert loss.shape == (M,)
    assert torch.isfinite(loss).all() and torch.isfinite(gz).all()
    torch.testing.assert_close(loss.detach(), loss_ref.detach(), **TIGHT)
    torch.testing.assert_close(gz, gz_ref, **TIGHT)


def test_cross_entropy_extreme_logits_exact_values():
    """Two classes at ±1e4: the loss is 0 for the right label and 2e4 for the wrong one, never inf/nan."""
    z = torch.tensor([[[1e4, -1e4], [1e4, -1e4]]], dtype=torch.float64)  # (1, 2, 2)
    loss = cross_entropy(z, torch.tensor([0, 1]))
    torch.testing.assert_close(loss, torch.tensor([1e4], dtype=torch.float64))  # mean of 0 and 2e4


def test_cross_entropy_float32_extreme_logits_finite():
    z = _logits(extreme=True).float().requires_grad_(True)
    loss = cross_entropy(z, _labels(False))
    (gz,) = torch.autograd.grad(loss.sum(), z)
    assert torch.isfinite(loss).all() and torch.isfinite(gz).all()
    torch.testing.assert_close(loss.detach(), _reference_ce(z.detach(), _labels(False)))


def _known_predictions() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose argmax is a known class per (model, example)."""
    g = torch.Generator().manual_seed(3)
    pred = torch.randint(0, C, (M, B), generator=g)  # (M, B)
    z = torch.randn(M, B, C, generator=g) + 10.0 * F.one_hot(pred, C)  # (M, B, C)
    return z, pred


@pytest.mark.parametrize("per_model", [False, True])
def test_correct_and_accuracy_match_direct_count(per_model):
    z, pred = _known_predictions()
    y = _labels(per_model)
    ys = y if per_model else y.expand(M, B)
    expected = [sum(int(pred[m, b] == ys[m, b]) for b in range(B)) for m in range(M)]
    assert 0 < sum(expected) < M * B  # some right, some wrong: the test can tell them apart

    n = correct(z, y)
    assert n.shape == (M,) and n.dtype == torch.int64
    assert n.tolist() == expected

    acc = accuracy(z, y)
    assert acc.shape == (M,) and acc.is_floating_point()
    torch.testing.assert_close(acc, torch.tensor(expected, dtype=acc.dtype) / B)


def test_accuracy_all_right_and_all_wrong():
    z, pred = _known_predictions()
    assert accuracy(z, pred).tolist() == [1.0] * M
    assert correct(z, (pred + 1) % C).tolist() == [0] * M


# ------------------------------------------------------------------------------------------------------------
# the gradient of a whole MLP

SIZES = [6, 7, 5, 4]  # D, hidden [7, 5], C


def _mlp_params() -> dict[str, torch.Tensor]:
    """float64 leaves; biases moved off zero so that a wrong bias broadcast shows."""
    params = init_mlp(SIZES, "xavier_normal", scales=[1.0] * M, seeds=list(range(M)))
    g = torch.Generator().manual_seed(4)
    out = {}
    for k, v in params.items():
        v = v.double()
        if k.startswith("b"):
            v = v + 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64)
        out[k] = v.requires_grad_(True)
    return out


def _reference_logits(params, x_m: torch.Tensor, act: str, m: int) -> torch.Tensor:
    """Model m alone, through F.linear: x_m (B, D) -> (B, C)."""
    L = len(SIZES) - 1
    h = x_m
    for i in range(L):
        h = F.linear(h, params[f"w{i}"][m].T, params[f"b{i}"][m, 0])  # (B, sizes[i+1])
        if i < L - 1:
            h = REFERENCE[act](h)
    return h


def test_init_mlp_shapes():
    params = init_mlp(SIZES, "xavier_normal", scales=[1.0] * M, seeds=list(range(M)))
    assert sorted(params) == ["b0", "b1", "b2", "w0", "w1", "w2"]
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        assert params[f"w{i}"].shape == (M, fan_in, fan_out)
        assert params[f"b{i}"].shape == (M, 1, fan_out)
    assert not torch.equal(params["w0"][0], params["w0"][1])  # each model its own seed


@pytest.mark.parametrize("x_kind", ["shared", "shared_x_per_model_y", "per_model"])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_mlp_loss_and_gradients_match_torch(act, x_kind):
    B_odd = 11
    g = torch.Generator().manual_seed(5)
    if x_kind == "per_model":
        x0 = torch.randn(M, B_odd, SIZES[0], generator=g, dtype=torch.float64)  # (M, B, D)
    else:
        x0 = torch.randn(B_odd, SIZES[0], generator=g, dtype=torch.float64)  # (B, D)
    y_shape = (B_odd,) if x_kind == "shared" else (M, B_odd)
    y = torch.randint(0, SIZES[-1], y_shape, generator=g)
    params = _mlp_params()
    leaves = [*params.values()]

    x = x0.clone().requires_grad_(True)
    logits = forward(params, x, act)
    assert logits.shape == (M, B_odd, SIZES[-1])
    loss = cross_entropy(logits, y).sum()
    grads = torch.autograd.grad(loss, [*leaves, x])

    x_ref = x0.clone().requires_grad_(True)
    loss_ref = 0.0
    for m in range(M):
        x_m = x_ref[m] if x_kind == "per_model" else x_ref
        y_m = y[m] if y.dim() == 2 else y
        logits_m = _reference_logits(params, x_m, act, m)
        torch.testing.assert_close(logits[m].detach(), logits_m.detach(), **TIGHT)
        loss_ref = loss_ref + F.cross_entropy(logits_m, y_m)
    grads_ref = torch.autograd.grad(loss_ref, [*leaves, x_ref])

    torch.testing.assert_close(loss.detach(), loss_ref.detach(), **TIGHT)
    for name, gr, gr_ref in zip([*params, "x"], grads, grads_ref, strict=True):
        assert gr.shape == gr_ref.shape, name
        assert gr.abs().sum() > 0, f"gradient of {name} is all zero: the test would not see a wrong one"
        torch.testing.assert_close(gr, gr_ref, **TIGHT, msg=lambda s, name=name: f"{name}: {s}")
