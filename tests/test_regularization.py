"""Dropout, max-norm, label smoothing, weight averaging (EMA), bf16 and deterministic mode, and the presets."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mlplab import optim, preset
from mlplab import regularization as reg
from mlplab.config import LATER_FIELDS, TrainConfig
from mlplab.device import arithmetic, deterministic_mode, keep_freed_memory
from mlplab.losses import correct, cross_entropy
from mlplab.mlp import forward
from mlplab.train import train, train_population


def assert_population_matches_alone(configs, splits):
    """Each model trained in the population ends where it ends when trained by itself."""
    together = train_population(configs, splits=splits, progress=False, device="cpu")
    for c, r in zip(configs, together):
        alone = train(c, splits=splits, progress=False, device="cpu")
        for k in alone.params:
            torch.testing.assert_close(r.params[k], alone.params[k], rtol=1e-4, atol=1e-5)


# -- dropout --------------------------------------------------------------------------------------------------------

def test_dropout_zeroes_a_fraction_p_and_keeps_the_mean():
    h = torch.ones(2, 400, 500)
    p = torch.tensor([0.2, 0.5]).view(2, 1, 1)
    out = reg.dropout(h, p, reg.stream_generators([0, 1], torch.device("cpu"), "hidden_dropout"))
    for m, rate in enumerate((0.2, 0.5)):
        dropped = (out[m] == 0).float().mean().item()
        assert dropped == pytest.approx(rate, abs=0.01)
        kept = out[m][out[m] != 0]
        torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - rate)))  # inverted: survivors scaled up
        assert out[m].mean().item() == pytest.approx(1.0, abs=0.02)


def test_a_models_dropout_mask_does_not_depend_on_its_neighbours():
    h = torch.randn(3, 8, 16)
    p = torch.tensor([0.3, 0.3, 0.6]).view(3, 1, 1)
    together = reg.dropout(h, p, reg.stream_generators([5, 6, 7], torch.device("cpu"), "hidden_dropout"))
    alone = reg.dropout(h[2:], p[2:], reg.stream_generators([7], torch.device("cpu"), "hidden_dropout"))
    torch.testing.assert_close(together[2:], alone)
    assert not torch.equal(together[0] != 0, together[1] != 0)  # different seeds, different masks


def test_a_models_random_streams_are_distinct():
    a = reg.stream_generators([3], torch.device("cpu"), "noise")[0]
    b = reg.stream_generators([3], torch.device("cpu"), "hidden_dropout")[0]
    assert not torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))


def test_dropout_keeps_bf16_activations_bf16():
    h = torch.randn(1, 4, 8, dtype=torch.bfloat16)
    gens = reg.stream_generators([0], torch.device("cpu"), "hidden_dropout")
    out = reg.dropout(h, torch.tensor(0.5).view(1, 1, 1), gens)
    assert out.dtype == torch.bfloat16


def test_dropout_is_off_at_evaluation(small_splits):
    c = TrainConfig(hidden=(32,), epochs=2, batch_size=100, optimizer="adam", lr=3e-3, init="kaiming_uniform",
                    dropout_input=0.2, dropout=0.5)
    r = train(c, splits=small_splits, progress=False, device="cpu")
    x = torch.from_numpy(small_splits.test_x).float() / 255
    y = torch.from_numpy(small_splits.test_y)
    logits = forward(r.params, x, "relu")  # no dropout
    assert correct(logits, y).item() / len(y) == r.test_accuracy
    assert r.test_accuracy > 0.6
    again = forward(r.params, x, "relu")
    assert torch.equal(logits, again)  # evaluation is deterministic


def test_dropout_changes_training_and_is_reproducible(small_splits):
    base = TrainConfig(hidden=(32,), epochs=1, batch_size=100, optimizer="adam", lr=3e-3, init="kaiming_uniform")
    plain = train(base, splits=small_splits, progress=False, device="cpu")
    a = train(base.replace(dropout=0.5), splits=small_splits, progress=False, device="cpu")
    b = train(base.replace(dropout=0.5), splits=small_splits, progress=False, device="cpu")
    assert not torch.equal(plain.params["w0"], a.params["w0"])
    assert torch.equal(a.params["w0"], b.params["w0"])  # masks come from a seeded generator


def test_population_with_dropout_equals_training_each_alone(small_splits):
    base = TrainConfig(hidden=(24,), epochs=1, batch_size=100, optimizer="adam", lr=2e-3, init="kaiming_uniform")
    configs = [base.replace(dropout=0.3, seed=0), base.replace(dropout_input=0.2, dropout=0.5, seed=1, data_seed=4),
               base.replace(seed=2)]
    assert_population_matches_alone(configs, small_splits)


# -- max-norm -------------------------------------------------------------------------------------------------------

def test_max_norm_caps_every_units_incoming_weights_and_leaves_short_ones_alone():
    w = torch.randn(2, 50, 6)
    w[:, :, 0] *= 1e-3  # a short column: untouched
    params = {"w0": w.clone(), "b0": torch.full((2, 1, 6), 100.0)}
    cap = torch.tensor([1.0, float("inf")]).view(2, 1, 1)
    reg.clip_max_norm_(params, cap)
    norms = params["w0"].norm(dim=1)  # (M, fan_out)
    assert (norms[0] <= 1.0 + 1e-6).all()
    torch.testing.assert_close(norms[0, 1:], torch.ones(5))  # long columns land on the cap
    torch.testing.assert_close(params["w0"][0, :, 0], w[0, :, 0])
    torch.testing.assert_close(params["w0"][1], w[1])  # cap inf: unconstrained
    assert (params["b0"] == 100.0).all()  # biases are not constrained
    # direction kept: rescaled, not clipped entry by entry
    torch.testing.assert_close(params["w0"][0, :, 3] / norms[0, 3], w[0, :, 3] / w[0, :, 3].norm())


def test_training_with_max_norm_respects_the_cap(small_splits):
    c = TrainConfig(hidden=(32,), epochs=1, batch_size=100, optimizer="sgd", lr=0.5, init="kaiming_uniform",
                    max_norm=0.5)
    r = train(c, splits=small_splits, progress=False, device="cpu")
    for k in ("w0", "w1"):
        assert r.params[k].norm(dim=1).max().item() <= 0.5 + 1e-5


# -- label smoothing ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch(eps):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 17, 10, generator=g) * 4
    y = torch.randint(0, 10, (17,), generator=g)
    ours = cross_entropy(logits, y, eps)
    ref = torch.stack([F.cross_entropy(logits[m], y, label_smoothing=eps) for m in range(3)])
    torch.testing.assert_close(ours, ref)


def test_label_smoothing_per_model():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 9, 10, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (2, 9), generator=g)
    eps = torch.tensor([0.0, 0.2])
    ours = cross_entropy(logits, y, eps)
    ref = torch.stack([F.cross_entropy(logits[m], y[m], label_smoothing=float(eps[m])) for m in range(2)])
    torch.testing.assert_close(ours, ref)
    (ga,) = torch.autograd.grad(ours.sum(), logits)
    (gb,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(ga, gb)


# -- EMA ------------------------------------------------------------------------------------------------------------

def test_ema_equals_a_hand_computed_average():
    steps = [torch.tensor([[[1.0]]]), torch.tensor([[[3.0]]]), torch.tensor([[[-2.0]]]), torch.tensor([[[5.0]]])]
    ema = {"w0": torch.tensor([[[0.5]]])}
    decay = 0.5
    by_hand = 0.5
    for t, p in enumerate(steps):
        reg.ema_update_(ema, {"w0": p}, torch.tensor(decay).view(1, 1, 1), t)
        d = min(decay, (1 + t) / (10 + t))  # 0.1, 0.18.., 0.25, 0.3077.. : all below 0.5 here
        by_hand = d * by_hand + (1 - d) * p.item()
    assert ema["w0"].item() == pytest.approx(by_hand, rel=1e-6)


def test_training_evaluates_and_returns_the_moving_average(small_splits, monkeypatch):
    """The returned parameters are the EMA of the parameters after every optimizer step, computed here by hand."""
    snapshots = []
    real_step = optim.adam_step

    def recording_step(params, *args, **kwargs):
        real_step(params, *args, **kwargs)
        snapshots.append({k: v.detach().clone() for k, v in params.items()})

    monkeypatch.setattr(optim, "adam_step", recording_step)
    c = TrainConfig(hidden=(8,), epochs=1, batch_size=250, optimizer="adam", lr=1e-2, init="kaiming_uniform",
                    ema=0.9)
    r = train(c, splits=small_splits, progress=False, device="cpu")
    assert len(snapshots) == 8
    from mlplab.mlp import init_mlp

    avg = init_mlp([784, 8, 10], "kaiming_uniform", [c.init_scale], [0])
    for t, snap in enumerate(snapshots):
        d = min(0.9, (1 + t) / (10 + t))
        avg = {k: d * avg[k] + (1 - d) * snap[k] for k in avg}
    for k in avg:
        torch.testing.assert_close(r.params[k], avg[k], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(r.params[k], snapshots[-1][k])  # not simply the last weights


# -- precision and determinism --------------------------------------------------------------------------------------

def test_bf16_autocast_keeps_float32_master_weights(small_splits):
    c = TrainConfig(hidden=(64,), epochs=2, batch_size=100, optimizer="adam", lr=3e-3, init="kaiming_uniform")
    fp32 = train(c, splits=small_splits, progress=False, device="cpu")
    bf16 = train(c.replace(precision="bf16"), splits=small_splits, progress=False, device="cpu")
    assert all(v.dtype == torch.float32 for v in bf16.params.values())
    assert not torch.equal(fp32.params["w0"], bf16.params["w0"])  # the matmuls really ran in bf16
    assert bf16.test_accuracy == pytest.approx(fp32.test_accuracy, abs=0.03)
    with arithmetic(torch.device("cpu"), "bf16"):
        out = forward(bf16.params, torch.rand(5, 784), "relu")
    assert out.dtype == torch.bfloat16
    with arithmetic(torch.device("cpu"), "fp32"):
        assert forward(bf16.params, torch.rand(5, 784), "relu").dtype == torch.float32


def test_deterministic_mode_is_on_during_training_and_restored(small_splits):
    seen = []
    before = torch.are_deterministic_algorithms_enabled()
    train(TrainConfig(hidden=(8,), epochs=1, batch_size=500), splits=small_splits, progress=False, device="cpu",
          deterministic=True, on_epoch=lambda e, rows: seen.append(torch.are_deterministic_algorithms_enabled()))
    assert seen == [True]
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic_mode(False):
        assert torch.are_deterministic_algorithms_enabled() == before


def test_keep_freed_memory_applies_once_on_linux():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux-only; elsewhere the allocator is left alone by design")
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True


# -- configs, keys and presets --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,match", [
    (dict(dropout=1.0), "dropout must be <"), (dict(dropout_input=-0.1), "dropout_input must be >="),
    (dict(max_norm=-1), "max_norm must be >="), (dict(label_smoothing=1), "label_smoothing must be <"),
    (dict(ema=1.0), "ema must be <"), (dict(precision="fp16"), "unknown precision"),
])
def test_bad_regularization_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_new_fields_at_their_defaults_keep_old_trial_keys(monkeypatch):
    import hashlib

    from mlplab import store as store_mod
    from mlplab.store import trial_key

    monkeypatch.setattr(store_mod, "NUMERICS_VERSION", 1)  # the numerics these old keys were made under

    c = TrainConfig(hidden=(8,), lr=0.3)
    old = {k: v for k, v in c.to_dict().items() if k not in LATER_FIELDS}  # the dict before these fields existed
    canon = json.dumps(old, sort_keys=True, separators=(",", ":"))
    assert trial_key(c) == hashlib.sha256(canon.encode()).hexdigest()[:20]
    assert trial_key(c.replace(dropout=0.5)) != trial_key(c)
    assert trial_key(c.replace(precision="bf16")) != trial_key(c)
    assert TrainConfig(precision="bfloat16").precision == "bf16"


def test_presets_are_valid_and_take_overrides():
    fast, best = preset("fast"), preset("best")
    assert fast.precision == "bf16" and fast.epochs >= 1
    assert best.batch_norm and best.noise > 0 and best.val_size == 0
    assert preset("fast", seed=3, epochs=1).seed == 3
    with pytest.raises(ValueError, match="unknown preset"):
        preset("fastest")
    with pytest.raises(ValueError, match="dropout must be"):
        preset("best", dropout=2.0)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mlplab", *args], capture_output=True, text=True, timeout=600)


def test_cli_fast_preset_smoke():
    """A shortened fast preset end to end (a smoke test of behaviour, not a timing)."""
    p = _cli("train", "--preset", "fast", "--epochs", "1", "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["config"]["hidden"] == [384] and s["config"]["precision"] == "bf16" and s["config"]["epochs"] == 1
    assert s["test_accuracy"] > 0.95


def test_cli_best_preset_smoke():
    p = _cli("train", "--preset", "best", "--epochs", "1", "--hidden", "128,64", "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["config"]["batch_norm"] and s["config"]["noise"] == 0.3 and s["config"]["val_size"] == 0
    assert s["val_accuracy"] is None  # trained on all 60,000 images: no validation split
    assert s["test_accuracy"] > 0.9


def test_cli_rejects_an_unknown_preset():
    p = _cli("train", "--preset", "turbo")
    assert p.returncode == 2 and "unknown preset" in p.stderr and "Traceback" not in p.stderr


# -- batch norm and Gaussian noise -------------------------------------------------------------------------------------

def test_batch_norm_matches_torch_in_training_and_evaluation():
    from mlplab import batchnorm as bn

    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 32, 5, generator=g) * 3 + 1  # (M, B, H)
    gamma = torch.rand(2, 1, 5, generator=g) + 0.5
    beta = torch.randn(2, 1, 5, generator=g)
    stats = bn.init_stats([7, 5, 3], 2)
    out, mean, var = bn.batch_norm_train(z, gamma, beta)
    bn.update_running_(stats["mean0"], stats["var0"], mean, var)
    for m in range(2):
        rm, rv = torch.zeros(5), torch.ones(5)
        ref = F.batch_norm(z[m], rm, rv, gamma[m, 0], beta[m, 0], training=True, momentum=bn.MOMENTUM, eps=bn.EPS)
        torch.testing.assert_close(out[m], ref)
        torch.testing.assert_close(stats["mean0"][m, 0], rm)
        torch.testing.assert_close(stats["var0"][m, 0], rv)
        ev = bn.batch_norm_eval(z[m:m + 1], gamma[m:m + 1], beta[m:m + 1], stats["mean0"][m:m + 1],
                                stats["var0"][m:m + 1])
        ref_ev = F.batch_norm(z[m], rm, rv, gamma[m, 0], beta[m, 0], training=False, eps=bn.EPS)
        torch.testing.assert_close(ev[0], ref_ev)


def test_batch_norm_training_learns_and_evaluates_with_running_statistics(small_splits):
    c = TrainConfig(hidden=(32, 32), epochs=2, batch_size=100, optimizer="adam", lr=3e-3, init="kaiming_uniform",
                    batch_norm=True, noise=0.3)
    r = train(c, splits=small_splits, progress=False, device="cpu")
    assert {"g0", "g1", "mean0", "var0", "mean1", "var1"} <= set(r.params)
    assert r.test_accuracy > 0.6
    x = torch.from_numpy(small_splits.test_x).float() / 255
    y = torch.from_numpy(small_splits.test_y)
    logits = forward(r.params, x, "relu")  # evaluation: running statistics, so one image alone gives the same
    assert correct(logits, y).item() / len(y) == r.test_accuracy
    torch.testing.assert_close(forward(r.params, x[:1], "relu")[0, 0], logits[0, 0])
    from mlplab.mlp import n_parameters

    assert n_parameters(r.params) == 784 * 32 + 32 + 32 + 32 * 32 + 32 + 32 + 32 * 10 + 10  # stats not counted


def test_running_statistics_of_a_frozen_model_stay_put():
    from mlplab import batchnorm as bn

    stats = bn.init_stats([3, 4, 2], 2)
    mean, var = torch.full((2, 1, 4), float("nan")), torch.full((2, 1, 4), 2.0)
    bn.update_running_(stats["mean0"], stats["var0"], mean, var, keep=torch.tensor([False, True]).view(2, 1, 1))
    assert torch.equal(stats["mean0"][0], torch.zeros(1, 4)) and torch.equal(stats["var0"][0], torch.ones(1, 4))
    assert stats["mean0"][1].isnan().all()
    torch.testing.assert_close(stats["var0"][1], torch.full((1, 4), 1.1))


def test_batch_norm_skips_a_last_batch_of_one(small_splits):
    from dataclasses import replace

    odd = replace(small_splits, train_x=small_splits.train_x[:201], train_y=small_splits.train_y[:201])
    r = train(TrainConfig(hidden=(8,), epochs=1, batch_size=100, batch_norm=True), splits=odd, progress=False,
              device="cpu")
    assert r.extra["steps"] == 2 and torch.isfinite(r.params["var0"]).all() and (r.params["var0"] > 0).all()


def test_ema_with_batch_norm_is_refused():
    with pytest.raises(ValueError, match="ema with batch_norm"):
        TrainConfig(batch_norm=True, ema=0.99)


def test_population_with_batch_norm_and_noise_equals_training_each_alone(small_splits):
    base = TrainConfig(hidden=(16,), epochs=1, batch_size=100, optimizer="adam", lr=2e-3, init="kaiming_uniform",
                       batch_norm=True)
    configs = [base.replace(noise=0.3, seed=0), base.replace(seed=1, data_seed=3), base.replace(noise=0.1, seed=2)]
    assert_population_matches_alone(configs, small_splits)


def test_cli_regularization_flags_reach_the_config():
    p = _cli("train", "--hidden", "16,16", "--epochs", "1", "--batch-size", "500", "--batch-norm", "--noise", "0.2",
             "--dropout", "0.1", "--dropout-input", "0.1", "--max-norm", "4", "--label-smoothing", "0.05",
             "--precision", "bf16", "--deterministic", "--json")
    assert p.returncode == 0, p.stderr
    c = json.loads(p.stdout)["config"]
    assert (c["batch_norm"], c["noise"], c["dropout"], c["dropout_input"], c["max_norm"], c["label_smoothing"],
            c["precision"]) == (True, 0.2, 0.1, 0.1, 4.0, 0.05, "bf16")
    p = _cli("train", "--preset", "best", "--no-batch-norm", "--noise", "0", "--ema", "0.9", "--hidden", "8",
             "--epochs", "1", "--json")
    assert p.returncode == 0, p.stderr
    c = json.loads(p.stdout)["config"]
    assert (c["batch_norm"], c["ema"], c["label_smoothing"]) == (False, 0.9, 0.1)  # the preset's, overridden
    bad = _cli("train", "--dropout", "1.5")
    assert bad.returncode == 2 and "dropout must be <" in bad.stderr
