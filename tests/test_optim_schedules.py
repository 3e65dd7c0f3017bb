"""The hand-written SGD, Adam(W) and learning-rate schedules against torch.optim, step by step.

    python -m pytest tests/test_optim_schedules.py -q

A population of M = 3 models takes T steps of `sgd_step`/`adam_step`; each model m is replayed on its own with
a torch.optim optimizer built from model m's hyperparameters, fed the same gradients, and must land on the
same parameters and optimizer state.
"""

from __future__ import annotations

import math

import pytest
import torch

from mlplab import optim
from mlplab.schedules import lr_factor

M, T = 3, 10
SHAPES = {"w0": (M, 4, 3), "b0": (M, 1, 3), "w1": (M, 3, 2), "b1": (M, 1, 2)}
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _problem(seed: int = 0) -> dict:
    """Start parameters and a quadratic-plus-noise gradient field: g_t = A * (p - C) + N_t, all float64."""
    g = torch.Generator().manual_seed(seed)

    def draw(shape, scale=1.0):
        return scale * torch.randn(shape, generator=g, dtype=torch.float64)

    return {
        "p0": {k: draw(s) for k, s in SHAPES.items()},
        "A": {k: 0.5 + torch.rand(s, generator=g, dtype=torch.float64) for k, s in SHAPES.items()},
        "C": {k: draw(s) for k, s in SHAPES.items()},
        "N": [{k: draw(s, 0.3) for k, s in SHAPES.items()} for _ in range(T)],
    }


def _grad(prob: dict, k: str, p: torch.Tensor, t: int, m: int | None = None) -> torch.Tensor:
    """Gradient of parameter k at step t: the whole population (m None) or model m alone."""
    sl = slice(None) if m is None else m
    return prob["A"][k][sl] * (p - prob["C"][k][sl]) + prob["N"][t][k][sl]


def _lr_at(t: int) -> float:
    """A varying learning-rate factor, so that a step that ignores the lr it is given is caught."""
    return 1.0 - 0.05 * t


def _per_model(values: list[float], as_tensor: bool):
    """(M, 1, 1) float64 tensor of per-model values, or the single python float they all share."""
    if as_tensor:
        return torch.tensor(values, dtype=torch.float64).view(M, 1, 1)
    assert len(set(values)) == 1, "a float hyperparameter is shared by all models"
    return float(values[0])


def _clone(params: dict) -> dict:
    return {k: v.clone() for k, v in params.items()}


# ------------------------------------------------------------------------------------------------------------
# SGD

SGD_CASES = {
    # name: (lr per model, momentum per model, weight decay per model, nesterov, hyperparameters as tensors)
    "plain": ([0.1] * M, [0.0] * M, [0.0] * M, False, False),
    "momentum": ([0.1] * M, [0.9] * M, [0.0] * M, False, False),
    "nesterov": ([0.1] * M, [0.9] * M, [0.0] * M, True, False),
    "weight_decay": ([0.1] * M, [0.0] * M, [0.05] * M, False, False),
    "momentum_weight_decay": ([0.1] * M, [0.9] * M, [0.05] * M, False, False),
    "nesterov_weight_decay": ([0.1] * M, [0.9] * M, [0.05] * M, True, False),
    "per_model": ([0.1, 0.05, 0.2], [0.0, 0.5, 0.9], [0.0, 1e-3, 0.1], False, True),
    "per_model_nesterov": ([0.1, 0.05, 0.2], [0.3, 0.5, 0.9], [0.0, 1e-3, 0.1], True, True),
    "tensor_zero_terms": ([0.1, 0.05, 0.2], [0.0] * M, [0.0] * M, False, True),
}


def _run_sgd(prob, lrs, mus, wds, nesterov, as_tensor, keep_at=None):
    params = _clone(prob["p0"])
    state = optim.init_state(params, "sgd")
    lr, mu, wd = (_per_model(v, as_tensor) for v in (lrs, mus, wds))
    for t in range(T):
        grads = {k: _grad(prob, k, p, t) for k, p in params.items()}
        keep = None if keep_at is None else keep_at(t)
        optim.sgd_step(params, grads, state, lr * _lr_at(t), mu, wd, nesterov, keep)
    return params, state


def _torch_sgd(prob, m, lr, mu, wd, nesterov, steps=None):
    """Model m alone through torch.optim.SGD, taking the steps in `steps` (all T by default)."""
    leaves = {k: prob["p0"][k][m].clone() for k in SHAPES}
    opt = torch.optim.SGD(list(leaves.values()), lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov)
    for t in range(T) if steps is None else steps:
        for k, p in leaves.items():
            p.grad = _grad(prob, k, p, t, m)
        opt.param_groups[0]["lr"] = lr * _lr_at(t)
        opt.step()
    bufs = {k: opt.state[p].get("momentum_buffer") for k, p in leaves.items()}
    return leaves, bufs


@pytest.mark.parametrize("case", sorted(SGD_CASES))
def test_sgd_matches_torch(case):
    lrs, mus, wds, nesterov, as_tensor = SGD_CASES[case]
    prob = _problem()
    params, state = _run_sgd(prob, lrs, mus, wds, nesterov, as_tensor)
    for m in range(M):
        ref, bufs = _torch_sgd(prob, m, lrs[m], mus[m], wds[m], nesterov)
        for k in SHAPES:
            assert not torch.equal(params[k][m], prob["p0"][k][m]), "the step must move the parameters"
            torch.testing.assert_close(params[k][m], ref[k], **TIGHT)
            if mus[m] != 0.0:
                torch.testing.assert_close(state["buf"][k][m], bufs[k], **TIGHT)
    if not as_tensor and mus[0] == 0.0:
        assert all(not b.any() for b in state["buf"].values()), "momentum 0.0 (a float) must skip the buffer"


def test_sgd_float_and_tensor_hyperparameters_agree():
    prob = _problem(1)
    a, sa = _run_sgd(prob, [0.1] * M, [0.9] * M, [0.05] * M, True, False)
    b, sb = _run_sgd(prob, [0.1] * M, [0.9] * M, [0.05] * M, True, True)
    for k in SHAPES:
        torch.testing.assert_close(a[k], b[k], **TIGHT)
        torch.testing.assert_close(sa["buf"][k], sb["buf"][k], **TIGHT)


def _keep_pattern(t: int) -> torch.Tensor:
    """Model 1 frozen on steps 2..5, model 2 frozen on step 7; model 0 always steps. (M, 1, 1) bool."""
    keep = torch.ones(M, dtype=torch.bool)
    keep[1] = not (2 <= t <= 5)
    keep[2] = t != 7
    return keep.view(M, 1, 1)


def _steps_kept(m: int) -> list[int]:
    return [t for t in range(T) if bool(_keep_pattern(t)[m])]


def test_sgd_keep_freezes_params_and_buffers():
    lrs, mus, wds = [0.1, 0.05, 0.2], [0.9, 0.5, 0.8], [0.0, 1e-3, 0.1]
    prob = _problem(2)
    params = _clone(prob["p0"])
    state = optim.init_state(params, "sgd")
    lr, mu, wd = (_per_model(v, True) for v in (lrs, mus, wds))
    for t in range(T):
        grads = {k: _grad(prob, k, p, t) for k, p in params.items()}
        keep = _keep_pattern(t)
        before = _clone(params), _clone(state["buf"])
        optim.sgd_step(params, grads, state, lr * _lr_at(t), mu, wd, True, keep)
        for m in range(M):
            for k in SHAPES:
                moved = not torch.equal(params[k][m], before[0][k][m])
                assert moved == bool(keep[m]), f"step {t}, model {m}, {k}: keep={bool(keep[m])}"
                if not keep[m]:
                    assert torch.equal(state["buf"][k][m], before[1][k][m])
    # SGD has no step count, so a frozen model resumes exactly as if the frozen steps never happened.
    for m in range(M):
        ref, bufs = _torch_sgd(prob, m, lrs[m], mus[m], wds[m], True, steps=_steps_kept(m))
        for k in SHAPES:
            torch.testing.assert_close(params[k][m], ref[k], **TIGHT)
            torch.testing.assert_close(state["buf"][k][m], bufs[k], **TIGHT)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_keep_false_ignores_nonfinite_gradients(kind):
    """The training loop's case: a diverged model (nan/inf gradients) is frozen and must not turn nan."""
    prob = _problem(3)
    params = _clone(prob["p0"])
    state = optim.init_state(params, kind)
    grads = {k: _grad(prob, k, p, 0) for k, p in params.items()}
    grads["w0"][1, 0, 0] = float("nan")
    grads["b1"][1, 0, 1] = float("inf")
    keep = torch.tensor([True, False, True]).view(M, 1, 1)
    lr = torch.full((M, 1, 1), 0.1, dtype=torch.float64)
    if kind == "sgd":
        optim.sgd_step(params, grads, state, lr, 0.9, 0.01, False, keep)
        moments = [state["buf"]]
    else:
        optim.adam_step(params, grads, state, lr, (0.9, 0.999), 1e-8, 0.01, False, keep)
        moments = [state["m"], state["v"]]
    for k in SHAPES:
        assert torch.equal(params[k][1], prob["p0"][k][1])
        assert torch.isfinite(params[k]).all()
        assert not torch.equal(params[k][0], prob["p0"][k][0])
        for s in moments:
            assert not s[k][1].any() and torch.isfinite(s[k]).all()


# ------------------------------------------------------------------------------------------------------------
# Adam and AdamW

ADAM_CASES = {
    # name: (lr, beta1, beta2, eps, weight decay: per model), decoupled, hyperparameters as tensors
    "adam": ([1e-2] * M, [0.9] * M, [0.999] * M, [1e-8] * M, [0.0] * M, False, False),
    "adam_weight_decay": ([1e-2] * M, [0.9] * M, [0.999] * M, [1e-8] * M, [0.1] * M, False, False),
    "adamw": ([1e-2] * M, [0.9] * M, [0.999] * M, [1e-8] * M, [0.1] * M, True, False),
    "adam_per_model": ([1e-2, 3e-2, 5e-3], [0.9, 0.8, 0.5], [0.999, 0.99, 0.9], [1e-8, 1e-6, 1e-3],
                       [0.0, 0.05, 0.2], False, True),
    "adamw_per_model": ([1e-2, 3e-2, 5e-3], [0.9, 0.8, 0.5], [0.999, 0.99, 0.9], [1e-8, 1e-6, 1e-3],
                        [0.0, 0.05, 0.2], True, True),
}


def _run_adam(prob, lrs, b1s, b2s, epss, wds, decoupled, as_tensor, keep_at=None):
    params = _clone(prob["p0"])
    state = optim.init_state(params, "adam")
    b1, b2, eps, wd = (_per_model(v, as_tensor) for v in (b1s, b2s, epss, wds))
    lr = _per_model(lrs, as_tensor)
    for t in range(T):
        grads = {k: _grad(prob, k, p, t) for k, p in params.items()}
        keep = None if keep_at is None else keep_at(t)
        optim.adam_step(params, grads, state, lr * _lr_at(t), (b1, b2), eps, wd, decoupled, keep)
    return params, state


def _torch_adam(prob, m, lr, b1, b2, eps, wd, decoupled):
    leaves = {k: prob["p0"][k][m].clone() for k in SHAPES}
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls(list(leaves.values()), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for t in range(T):
        for k, p in leaves.items():
            p.grad = _grad(prob, k, p, t, m)
        opt.param_groups[0]["lr"] = lr * _lr_at(t)
        opt.step()
    return leaves, {k: opt.state[p] for k, p in leaves.items()}


@pytest.mark.parametrize("case", sorted(ADAM_CASES))
def test_adam_matches_torch(case):
    *hp, decoupled, as_tensor = ADAM_CASES[case]
    prob = _problem(4)
    params, state = _run_adam(prob, *hp, decoupled, as_tensor)
    assert state["t"] == T
    for m in range(M):
        ref, ref_state = _torch_adam(prob, m, *(v[m] for v in hp), decoupled)
        for k in SHAPES:
            assert not torch.equal(params[k][m], prob["p0"][k][m])
            torch.testing.assert_close(params[k][m], ref[k], **TIGHT)
            torch.testing.assert_close(state["m"][k][m], ref_state[k]["exp_avg"], **TIGHT)
            torch.testing.assert_close(state["v"][k][m], ref_state[k]["exp_avg_sq"], **TIGHT)


def test_adamw_differs_from_adam_with_weight_decay():
    """Decoupling must change the result; otherwise the two cases above could both pass by accident."""
    prob = _problem(5)
    hp = ([1e-2] * M, [0.9] * M, [0.999] * M, [1e-8] * M, [0.1] * M)
    a, _ = _run_adam(prob, *hp, False, False)
    w, _ = _run_adam(prob, *hp, True, False)
    assert not torch.allclose(a["w0"], w["w0"], rtol=1e-6, atol=0)


def test_adam_keep_freezes_params_and_moments():
    lrs, b1s, b2s = [1e-2, 3e-2, 5e-3], [0.9, 0.8, 0.5], [0.999, 0.99, 0.9]
    epss, wds = [1e-8] * M, [0.0, 0.05, 0.2]
    prob = _problem(6)
    params = _clone(prob["p0"])
    state = optim.init_state(params, "adam")
    lr, b1, b2, eps, wd = (_per_model(v, True) for v in (lrs, b1s, b2s, epss, wds))
    for t in range(T):
        grads = {k: _grad(prob, k, p, t) for k, p in params.items()}
        keep = _keep_pattern(t)
        before = _clone(params), _clone(state["m"]), _clone(state["v"])
        optim.adam_step(params, grads, state, lr * _lr_at(t), (b1, b2), eps, wd, True, keep)
        for m in range(M):
            for k in SHAPES:
                moved = not torch.equal(params[k][m], before[0][k][m])
                assert moved == bool(keep[m]), f"step {t}, model {m}, {k}: keep={bool(keep[m])}"
                if not keep[m]:
                    assert torch.equal(state["m"][k][m], before[1][k][m])
                    assert torch.equal(state["v"][k][m], before[2][k][m])
    # Model 0 was never frozen: it must match its own AdamW run exactly, unaffected by the others' freezing.
    ref, ref_state = _torch_adam(prob, 0, lrs[0], b1s[0], b2s[0], epss[0], wds[0], True)
    for k in SHAPES:
        torch.testing.assert_close(params[k][0], ref[k], **TIGHT)
        torch.testing.assert_close(state["m"][k][0], ref_state[k]["exp_avg"], **TIGHT)


# ------------------------------------------------------------------------------------------------------------
# learning-rate schedules


def _torch_factors(make_scheduler, n: int) -> list[float]:
    """The lr of a base-1.0 torch optimizer at steps 0..n-1 under `make_scheduler(optimizer)`."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make_scheduler(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradient: a no-op, but torch wants optimizer.step() before scheduler.step()
        sched.step()
    return out


@pytest.mark.parametrize("total", [7, 50, 120])
def test_cosine_matches_cosine_annealing(total):
    sched = torch.optim.lr_scheduler.CosineAnnealingLR
    ref = _torch_factors(lambda o: sched(o, T_max=total, eta_min=0.0), total + 1)
    ours = [lr_factor("cosine", s, total, 10) for s in range(total + 1)]
    assert ours[0] == 1.0 and abs(ours[-1]) < 1e-15
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=1e-9, atol=1e-12)


def test_cosine_stays_at_zero_after_the_end():
    assert [lr_factor("cosine", s, 20, 5) for s in (20, 21, 40)] == pytest.approx([0.0, 0.0, 0.0], abs=1e-15)


@pytest.mark.parametrize(("steps_per_epoch", "step_size", "gamma"), [(5, 1, 0.1), (7, 3, 0.5), (1, 2, 0.3)])
def test_step_matches_step_lr(steps_per_epoch, step_size, gamma):
    total = 12 * steps_per_epoch
    sched = torch.optim.lr_scheduler.StepLR
    ref = _torch_factors(lambda o: sched(o, step_size=step_size * steps_per_epoch, gamma=gamma), total)
    ours = [lr_factor("step", s, total, steps_per_epoch, step_size, gamma) for s in range(total)]
    assert len(set(ours)) > 2
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("w", [1, 4, 10])
def test_warmup_ramps_linearly_then_constant(w):
    total = 30
    ours = [lr_factor("constant", s, total, 5, warmup_steps=w) for s in range(total)]
    assert ours[:w] == pytest.approx([(s + 1) / w for s in range(w)])
    assert ours[w:] == [1.0] * (total - w)
    if w > 1:  # torch's LinearLR from 1/w to 1 over w - 1 steps is the same ramp
        sched = torch.optim.lr_scheduler.LinearLR
        ref = _torch_factors(lambda o: sched(o, start_factor=1 / w, end_factor=1.0, total_iters=w - 1), total)
        torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=1e-12, atol=1e-12)


def test_no_warmup_is_the_schedule_itself():
    for s in range(25):
        assert lr_factor("constant", s, 25, 5) == 1.0
        assert lr_factor("cosine", s, 25, 5, warmup_steps=0) == lr_factor("cosine", s, 25, 5)


@pytest.mark.parametrize("name", ["cosine", "step", "onecycle"])
def test_warmup_multiplies_the_schedule(name):
    total, w = 40, 6
    for s in range(total):
        base = lr_factor(name, s, total, 4, 2, 0.5)
        expected = base * min(1.0, (s + 1) / w)
        assert lr_factor(name, s, total, 4, 2, 0.5, warmup_steps=w) == pytest.approx(expected)


@pytest.mark.parametrize("total", [10, 100, 1000])
def test_onecycle_shape(total):
    f = [lr_factor("onecycle", s, total, 10) for s in range(total + 1)]
    peak = int(0.3 * total)
    assert f[0] == pytest.approx(1 / 25, rel=1e-12)
    assert max(f) == pytest.approx(1.0, rel=1e-12) and f.index(max(f)) == peak
    assert all(a < b for a, b in zip(f[:peak], f[1:peak + 1], strict=True)), "strictly up to the peak"
    assert all(a > b for a, b in zip(f[peak:-1], f[peak + 1:], strict=True)), "strictly down after it"
    assert f[-1] == pytest.approx(1 / (25 * 1e4), rel=1e-9)  # at step == total
    if total >= 100:
        assert 1 / (25 * 1e4) < f[total - 1] < 1e-3  # the last step taken is near the floor
    assert min(f) > 0


def test_onecycle_is_cosine_between_its_ends():
    total = 100  # up = 30 steps
    lo, end = 1 / 25, 1 / (25 * 1e4)
    assert lr_factor("onecycle", 15, total, 1) == pytest.approx((lo + 1) / 2, rel=1e-12)
    assert lr_factor("onecycle", 65, total, 1) == pytest.approx((1 + end) / 2, rel=1e-12)
    frac = 10 / 30
    expected = 1 + (lo - 1) * 0.5 * (1 + math.cos(math.pi * frac))
    assert lr_factor("onecycle", 10, total, 1) == pytest.approx(expected, rel=1e-12)
