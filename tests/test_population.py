"""The population as a value: masked updates, take(indices), early stopping, and evaluation independent of M."""

import math

import pytest
import torch

from mlplab import TrainConfig, optim, train, train_population
from mlplab.data import to_tensors
from mlplab.mlp import layer_sizes, select
from mlplab.population import EpochPlan, Population, evaluate

TOL = {"rtol": 1e-5, "atol": 1e-6}  # survivors against a population built without the removed models


def _params(M=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"w0": torch.randn(M, 7, 5, generator=g), "b0": torch.randn(M, 1, 5, generator=g)}


@pytest.mark.parametrize("per_model_wd", [False, True])
@pytest.mark.parametrize("kind", ["sgd", "sgd-momentum", "sgd-nesterov", "adam", "adamw"])
def test_masked_and_unmasked_updates_are_bit_identical(kind, per_model_wd):
    """A model's update must not depend on whether a neighbour is frozen (keep False)."""
    M = 4
    lr = torch.tensor([0.1, 0.05, 0.2, 0.01]).view(M, 1, 1)
    wd = torch.tensor([1e-3, 0.0, 3e-2, 1e-4]).view(M, 1, 1) if per_model_wd else None
    sgd_wd, adam_wd = (1e-3, 1e-2) if wd is None else (wd, wd)
    runs = []
    for keep in (None, torch.tensor([True, False, True, True]).view(M, 1, 1)):
        p = _params(M)
        state = optim.init_state(p, "sgd" if kind.startswith("sgd") else "adam")
        for step in range(3):
            grads = _params(M, seed=10 + step)
            if kind.startswith("sgd"):
                mom = 0.0 if kind == "sgd" else torch.tensor([0.9, 0.5, 0.0, 0.9]).view(M, 1, 1)
                optim.sgd_step(p, grads, state, lr, mom, sgd_wd, nesterov=kind == "sgd-nesterov", keep=keep)
            else:
                optim.adam_step(p, grads, state, lr, weight_decay=adam_wd, decoupled=kind == "adamw", keep=keep)
        runs.append(p)
    for k in runs[0]:
        for m in (0, 2, 3):
            assert torch.equal(runs[0][k][m], runs[1][k][m]), (kind, k, m)
        assert not torch.equal(runs[0][k][1], runs[1][k][1])  # the frozen one did not move
    assert torch.equal(runs[1]["w0"][1], _params(M)["w0"][1])


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 3e-3)])
def test_a_diverging_neighbour_changes_no_bit_of_the_others(small_splits, optimizer, lr):
    """Same population size, one neighbour diverging or not: the others' numbers are identical."""
    base = TrainConfig(hidden=(13,), epochs=1, batch_size=100, activation="identity", init="xavier_normal",
                       optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0)
    tame = [base.replace(lr=lr, seed=0), base.replace(lr=lr / 2, seed=1), base.replace(lr=lr, seed=2)]
    wild = [tame[0], base.replace(lr=1e4 if optimizer == "sgd" else 1e25, seed=1), tame[2]]
    a = train_population(tame, splits=small_splits, progress=False, device="cpu")
    b = train_population(wild, splits=small_splits, progress=False, device="cpu")
    assert not a[1].diverged and b[1].diverged
    for i in (0, 2):
        for k in a[i].params:
            assert torch.equal(a[i].params[k], b[i].params[k]), (i, k)
        for ha, hb in zip(a[i].history, b[i].history, strict=True):
            assert {k: v for k, v in ha.items() if k != "seconds"} == {k: v for k, v in hb.items() if k != "seconds"}


def _population(configs, splits):
    X, Y = to_tensors(splits.train_x, splits.train_y, "cpu")
    sizes = layer_sizes(X.shape[1], configs[0].hidden, 10)
    return Population.create(configs, sizes, torch.device("cpu")), X, Y, EpochPlan.of(configs[0], len(X))


def _rich_configs():
    """Four models using every per-model part: dropout (both kinds), noise, max-norm, EMA, Adam, two data orders."""
    base = TrainConfig(hidden=(24, 12), epochs=3, batch_size=100, optimizer="adam", lr=2e-3, init="kaiming_uniform")
    return [base.replace(seed=0, dropout=0.2, ema=0.9), base.replace(seed=1, dropout_input=0.1, max_norm=2.0),
            base.replace(seed=2, data_seed=5, noise=0.1, lr=1e-3), base.replace(seed=3, data_seed=5, dropout=0.1)]


def test_take_compacts_every_per_model_tensor(small_splits):
    configs = _rich_configs()
    pop, X, Y, plan = _population(configs, small_splits)
    pop.train_epoch(X, Y, plan)
    small = pop.take([3, 1])
    assert small.ids == [1, 3] and [c.seed for c in small.configs] == [1, 3]
    per_model = {**small.params, **small.opt_state["m"], **small.opt_state["v"], **(small.ema or {})}
    assert all(v.shape[0] == 2 for v in per_model.values())
    assert all(v.is_leaf and v.requires_grad for v in small.params.values())
    assert small.hp["lr"].shape == (2, 1, 1) and small.cap.shape == (2, 1, 1) and small.alive.shape == (2,)
    assert all(len(g) == 2 for g in small.gens.values() if g is not None)
    assert small.opt_state["t"] == pop.opt_state["t"] and small.step == pop.step
    assert list(small.order_gens) == [1, 5]  # seed 1's own order and the data_seed 5 stream
    for k in small.params:
        assert torch.equal(small.params[k][0], pop.params[k][1]) and torch.equal(small.params[k][1], pop.params[k][3])
    with pytest.raises(AssertionError):
        pop.take([0, 0])


def test_survivors_of_take_match_a_population_built_without_the_others(small_splits):
    """Train 4 models an epoch, take 2, train on: the same as training those 2 alone as a population from the
    start, to float32 rounding (TOL), with every random stream (dropout, noise, data order) in the same place."""
    configs = _rich_configs()
    pop, X, Y, plan = _population(configs, small_splits)
    pop.train_epoch(X, Y, plan)
    pop = pop.take([1, 3])
    pop.train_epoch(X, Y, plan)
    ref, _, _, _ = _population([configs[1], configs[3]], small_splits)
    for _ in range(2):
        ref.train_epoch(X, Y, plan)
    for k in ref.params:
        torch.testing.assert_close(pop.params[k], ref.params[k], **TOL)
    for k in ref.opt_state["m"]:
        torch.testing.assert_close(pop.opt_state["m"][k], ref.opt_state["m"][k], **TOL)


def test_evaluation_does_not_depend_on_the_population_size(small_splits):
    configs = _rich_configs()
    pop, X, Y, plan = _population(configs, small_splits)
    pop.train_epoch(X, Y, plan)
    evals = {"val": to_tensors(small_splits.val_x, small_splits.val_y, "cpu")}
    together = evaluate(pop.evaluated(), evals, "relu")
    for m in range(4):
        alone = evaluate(select(pop.evaluated(), m), evals, "relu")
        assert alone["val_loss"][0] == together["val_loss"][m] and alone["val_accuracy"][0] == together[
            "val_accuracy"][m]
    blocked = evaluate(pop.evaluated(), evals, "relu", max_elements=3 * 2000 * 24)  # models in blocks of 3
    assert blocked == together


def test_early_stopping_reports_the_best_epoch_and_compacts(small_splits):
    """Models stop when val loss stops improving; survivors match a run without the stopped ones, with the same
    stop epochs; each reports its best epoch's metrics and weights."""
    base = TrainConfig(hidden=(32,), epochs=12, batch_size=50, optimizer="adam", init="kaiming_uniform",
                       patience=2, min_delta=1e-3)
    configs = [base.replace(lr=lr, seed=i) for i, lr in enumerate((3e-2, 1e-4, 1e-2, 3e-4))]
    together = train_population(configs, splits=small_splits, progress=False, device="cpu")
    stops = [r.stopped_epoch for r in together]
    assert len(set(stops)) > 1, stops  # some stopped before others: the population shrank
    assert any(r.outcome == "converged" for r in together)
    for r in together:
        assert r.outcome in ("converged", "budget")
        losses = [h["val_loss"] for h in r.history]
        assert r.best_epoch == 1 + min(range(len(losses)), key=lambda e: (losses[e], e)) or r.outcome == "budget"
        if r.outcome == "converged":
            assert r.stopped_epoch == r.best_epoch + base.patience
        assert r.val_accuracy == r.history[r.best_epoch - 1]["val_accuracy"]
        assert r.summary()["best_epoch"] == r.best_epoch
    # The two slowest models, trained as a population of their own, stop at the same epochs with the same numbers.
    late = sorted(range(4), key=lambda i: stops[i])[2:]
    alone = train_population([configs[i] for i in late], splits=small_splits, progress=False, device="cpu")
    for i, r in zip(late, alone):
        assert r.stopped_epoch == together[i].stopped_epoch and r.best_epoch == together[i].best_epoch
        for k in r.params:
            torch.testing.assert_close(r.params[k], together[i].params[k], **TOL)
        assert r.test_accuracy == pytest.approx(together[i].test_accuracy, abs=2e-3)
    # The reported weights are the best epoch's: evaluating them gives the reported validation loss.
    evals = {"val": to_tensors(small_splits.val_x, small_splits.val_y, "cpu")}
    r = together[0]
    assert evaluate(r.params, evals, "relu")["val_loss"][0] == pytest.approx(r.reported["val_loss"], rel=1e-6)


def test_a_collapsed_model_is_told_apart(small_splits):
    """Zero init with ReLU: every hidden unit outputs 0 forever, so the model learns only the class prior."""
    r = train(TrainConfig(hidden=(16,), init="zeros", epochs=2, batch_size=100), splits=small_splits,
              progress=False, device="cpu")
    assert not r.diverged and math.isfinite(r.history[-1]["val_loss"]) and r.outcome == "collapsed"
    d = train(TrainConfig(hidden=(16,), activation="identity", init="xavier_normal", lr=1e3, epochs=2),
              splits=small_splits, progress=False, device="cpu")
    assert d.outcome == "diverged"


def test_patience_needs_a_validation_split():
    with pytest.raises(ValueError, match="val_size"):
        TrainConfig(patience=2, val_size=0)


def _sgd_rich_configs():
    """_rich_configs with SGD and momentum (Adam's step count is shared, so Adam models cannot join a trained one)."""
    return [c.replace(optimizer="sgd", momentum=0.9, lr=0.05 if c.lr == 2e-3 else 0.02) for c in _rich_configs()]


def _create(configs, ids, X, splits=None):
    return Population.create(configs, layer_sizes(X.shape[1], configs[0].hidden, 10), torch.device("cpu"), ids=ids)


def test_models_that_join_a_trained_population_train_as_they_would_alone(small_splits):
    """Two models train an epoch; two fresh ones join: one with a data-order stream of its own, one reading the
    stream of a model already there from where it is. After one more epoch every model matches its reference to
    TOL: the first two trained 2 epochs as a population of their own; each joiner trained 1 epoch alone (the second
    after its stream was advanced by one epoch). Parts only one side used (hidden dropout, EMA, input dropout,
    noise, max-norm) are filled in without changing the other side's numbers."""
    from mlplab import data as data_mod

    c = _sgd_rich_configs()
    X, Y = to_tensors(small_splits.train_x, small_splits.train_y, "cpu")
    plan = EpochPlan.of(c[0], len(X))
    pop = _create([c[0], c[3]], [0, 3], X)
    pop.train_epoch(X, Y, plan)
    joined = pop.join(_create([c[1], c[2]], [1, 2], X))
    assert joined.ids == [0, 1, 3, 2] and [x.order_seed for x in joined.configs] == [0, 1, 5, 5]
    assert joined.step == pop.step and joined.order_gens[5] is pop.order_gens[5]
    assert joined.hp["noise"].flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, 0.1])
    assert torch.isinf(joined.cap.flatten()[[0, 2, 3]]).all() and joined.cap.flatten()[1] == 2.0
    joined.train_epoch(X, Y, plan)
    first = _create([c[0], c[3]], [0, 3], X)
    for _ in range(2):
        first.train_epoch(X, Y, plan)
    fresh = _create([c[1]], [1], X)
    fresh.train_epoch(X, Y, plan)
    late = _create([c[2]], [2], X)
    data_mod.epoch_order(len(X), late.order_gens[5])  # where the stream stood when it joined
    late.train_epoch(X, Y, plan)
    for ref, rows in ((first, [0, 2]), (fresh, [1]), (late, [3])):
        for k in ref.params:
            torch.testing.assert_close(joined.params[k][rows], ref.params[k], **TOL)
            torch.testing.assert_close(joined.opt_state["buf"][k][rows], ref.opt_state["buf"][k], **TOL)
        torch.testing.assert_close(joined.evaluated()["w0"][rows], ref.evaluated()["w0"], **TOL)


def test_adam_models_that_took_different_step_counts_cannot_join(small_splits):
    c = _rich_configs()
    X, Y = to_tensors(small_splits.train_x, small_splits.train_y, "cpu")
    pop = _create(c[:2], [0, 1], X)
    pop.train_epoch(X, Y, EpochPlan.of(c[0], len(X)))
    with pytest.raises(ValueError, match="Adam's step count t is shared"):
        pop.join(_create(c[2:], [2, 3], X))
    assert _create(c[:2], [0, 1], X).join(_create(c[2:], [2, 3], X)).size == 4  # untrained: the same t
