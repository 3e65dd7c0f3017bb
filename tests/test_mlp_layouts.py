"""The layouts `linear` and `forward_streams` choose between (one wide matmul, a batched product over a broadcast
input, stacked per-model batches, per-group products) all give each model's own x @ w + b, and its gradients."""

import pytest
import torch

from mlplab.mlp import forward_streams, init_mlp, linear


def _leaves(M, D, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(M, D, H, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(M, 1, H, generator=g, dtype=torch.float64).requires_grad_(True)
    return w, b


@pytest.mark.parametrize("M", [1, 3])
@pytest.mark.parametrize("H", [1, 8, 16, 40])  # both sides of the wide/batched switch at H = 16
@pytest.mark.parametrize("shared", [True, False])
def test_linear_matches_each_model_alone(M, H, shared):
    D, B = 6, 5
    w, b = _leaves(M, D, H)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, D, generator=g, dtype=torch.float64) if shared else \
        torch.randn(M, B, D, generator=g, dtype=torch.float64)
    out = linear(x, w, b)  # (M, B, H)
    ref = torch.stack([(x if shared else x[m]) @ w[m] + b[m] for m in range(M)])
    torch.testing.assert_close(out, ref)
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * up).sum(), [w, b])
    want = torch.autograd.grad((ref * up).sum(), [w, b])
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("sizes", [[4], [1, 1, 1, 1], [2, 1, 1], [1, 3]])
@pytest.mark.parametrize("hidden", [1, 7, 20])  # per-group products, one wide matmul, batched
def test_forward_streams_matches_each_model_on_its_batch(sizes, hidden):
    D, B, M = 6, 5, sum(sizes)
    params = {k: v.double().requires_grad_(True)
              for k, v in init_mlp([D, hidden, 3], "xavier_normal", [1.0] * M, list(range(M))).items()}
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(B, D, generator=g, dtype=torch.float64) for _ in sizes]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    groups = [slice(s, s + n) for s, n in zip(starts, sizes)]
    out = forward_streams(params, xs, groups, "tanh")  # (M, B, 3)
    ref = []
    for x, grp in zip(xs, groups):
        for m in range(grp.start, grp.stop):
            h = torch.tanh(x @ params["w0"][m] + params["b0"][m])
            ref.append(h @ params["w1"][m] + params["b1"][m])
    ref = torch.stack(ref)
    torch.testing.assert_close(out, ref)
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * up).sum(), list(params.values()))
    want = torch.autograd.grad((ref * up).sum(), list(params.values()))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)
