import json
import math

import pytest
import torch

from mlplab import TrainConfig, checkpoint, train, train_population


def test_default_mlp_reaches_96_percent_on_real_mnist(splits):
    """The course's MLP: 784-256-10, ReLU, uniform(-0.01, 0.01), SGD 0.1, batch 128, 10 epochs."""
    mlp = train(TrainConfig(), splits=splits, progress=False)
    assert not mlp.diverged and len(mlp.history) == 10
    assert mlp.test_accuracy >= 0.96, mlp.history[-1]
    linear = train(TrainConfig(hidden=(), epochs=5), splits=splits, progress=False)
    assert 0.91 <= linear.test_accuracy <= 0.93, linear.history[-1]
    assert mlp.test_accuracy > linear.test_accuracy + 0.02
    # The history is recorded every epoch and the loss goes down.
    losses = [h["train_loss"] for h in mlp.history]
    assert losses[-1] < losses[0] / 3
    assert all(h["seconds"] > 0 for h in mlp.history)


def test_same_seed_same_parameters_bit_for_bit(small_splits):
    cfg = TrainConfig(hidden=(32,), epochs=2, optimizer="adam", lr=1e-3, seed=5)
    a = train(cfg, splits=small_splits, progress=False, device="cpu")
    b = train(cfg, splits=small_splits, progress=False, device="cpu")
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    c = train(cfg.replace(seed=6), splits=small_splits, progress=False, device="cpu")
    assert not torch.equal(a.params["w0"], c.params["w0"])


def _unit_spread(w0):
    """Largest difference between any hidden unit's incoming weights and unit 0's, relative to the largest weight."""
    return float((w0 - w0[:, :1]).abs().max() / w0.abs().max())


def test_zero_init_keeps_hidden_units_identical(small_splits):
    # Sigmoid: with zero weights every hidden unit outputs 0.5, so the weights do move, but all alike. In exact
    # arithmetic they would stay identical forever; in float32 only rounding in the matrix kernels can tell the
    # units apart, so after 20 steps they agree to ~1e-7 of their size, while a random init makes them O(1) apart.
    cfg = TrainConfig(hidden=(16,), activation="sigmoid", lr=0.5, epochs=1, batch_size=100)
    zero = train(cfg.replace(init="zeros"), splits=small_splits, progress=False)
    w0 = zero.params["w0"][0]  # (784, 16): column j is hidden unit j's incoming weights
    assert w0.abs().max() > 1e-3  # trained...
    assert _unit_spread(w0) < 1e-4  # ...but all units alike
    w1 = zero.params["w1"][0]  # (16, 10): row j is hidden unit j's outgoing weights
    assert float((w1 - w1[:1]).abs().max() / w1.abs().max()) < 1e-4
    rand = train(cfg.replace(init="xavier_uniform"), splits=small_splits, progress=False)
    assert _unit_spread(rand.params["w0"][0]) > 0.1


def test_divergence_is_detected_and_reported(small_splits):
    # A linear "MLP" with a huge learning rate: the weights grow geometrically until float32 overflows.
    r = train(TrainConfig(hidden=(32,), activation="identity", init="xavier_normal", lr=10.0, epochs=3),
              splits=small_splits, progress=False)
    assert r.diverged
    assert r.diverged_at["epoch"] == 1 and 0 <= r.diverged_at["step"] < 16
    assert len(r.history) == 1  # stopped in the first epoch instead of running on NaN
    s = r.summary()
    json.dumps(s, allow_nan=False)  # no NaN reaches the JSON
    assert s["diverged"] is True
    for v in r.params.values():  # frozen before the step that broke it
        assert torch.isfinite(v).all()


def test_population_equals_training_each_alone(small_splits):
    """M = 7 configs with their own lr, momentum, seed and data order train as one population."""
    base = TrainConfig(hidden=(13,), epochs=2, batch_size=100, init="xavier_uniform", activation="tanh")
    configs = [base.replace(lr=0.02 * (i + 1), momentum=0.5 * (i % 2), seed=i, data_seed=i % 3) for i in range(7)]
    together = train_population(configs, splits=small_splits, progress=False, device="cpu")
    for c, r in zip(configs, together):
        alone = train(c, splits=small_splits, progress=False, device="cpu")
        for k in alone.params:
            torch.testing.assert_close(r.params[k], alone.params[k], rtol=1e-4, atol=1e-5)
        assert r.test_accuracy == pytest.approx(alone.test_accuracy, abs=0.004)


def test_a_diverging_model_does_not_disturb_the_others(small_splits):
    base = TrainConfig(hidden=(13,), epochs=2, batch_size=100, activation="identity", init="xavier_normal")
    configs = [base.replace(lr=0.1, seed=0), base.replace(lr=1e3, seed=1), base.replace(lr=0.05, seed=2)]
    pop = train_population(configs, splits=small_splits, progress=False, device="cpu")
    assert [r.diverged for r in pop] == [False, True, False]
    for i in (0, 2):
        alone = train(configs[i], splits=small_splits, progress=False, device="cpu")
        for k in alone.params:
            torch.testing.assert_close(pop[i].params[k], alone.params[k], rtol=1e-4, atol=1e-5)
        assert len(pop[i].history) == 2
    assert all(math.isfinite(h["test_accuracy"]) for h in pop[0].history)


def test_population_refuses_mixed_shapes(small_splits):
    with pytest.raises(ValueError, match="share hidden"):
        train_population([TrainConfig(hidden=(8,)), TrainConfig(hidden=(9,))], splits=small_splits)


def test_checkpoint_roundtrip(tmp_path, small_splits):
    cfg = TrainConfig(hidden=(8, 8), epochs=1, activation="gelu")
    r = train(cfg, splits=small_splits, progress=False)
    path = checkpoint.save(tmp_path / "m.pt", r.params, cfg, {"test_accuracy": r.test_accuracy})
    params, cfg2, metrics = checkpoint.load(path)
    assert cfg2 == cfg and metrics["test_accuracy"] == r.test_accuracy
    assert set(params) == {"w0", "b0", "w1", "b1", "w2", "b2"}
    assert all(torch.equal(params[k], r.params[k]) for k in params)
    torch.save({"format": "other"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an mlplab checkpoint"):
        checkpoint.load(tmp_path / "x.pt")


def test_every_optimizer_schedule_and_activation_trains(small_splits):
    for opt, lr, mom, sched in (("sgd", 0.1, 0.9, "step"), ("adam", 1e-2, 0.0, "cosine"),
                                ("adamw", 1e-2, 0.0, "onecycle"), ("sgd", 0.1, 0.9, "constant")):
        r = train(TrainConfig(hidden=(32,), optimizer=opt, lr=lr, momentum=mom, nesterov=mom > 0, schedule=sched,
                              warmup_steps=5, epochs=2, init="kaiming_uniform", weight_decay=1e-4),
                  splits=small_splits, progress=False)
        assert r.test_accuracy > 0.7, (opt, r.history[-1])
    for act in ("leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softplus", "sin", "identity"):
        r = train(TrainConfig(hidden=(32,), activation=act, init="xavier_normal", optimizer="adam", lr=1e-2, epochs=2),
                  splits=small_splits, progress=False)
        assert r.test_accuracy > 0.6, (act, r.history[-1])
