"""`mlplab tune` on a real Optuna: specs, pruning as `take`, PBT's exploit, kill and resume, export, Ray."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
import torch
from conftest import write_idx
from optuna.trial import TrialState

from mlplab import TrainConfig, pbt, train, train_population, tune
from mlplab.cli import main as cli_main
from mlplab.data import to_tensors
from mlplab.mlp import layer_sizes
from mlplab.population import EpochPlan, Population

TOL = {"rtol": 1e-5, "atol": 1e-6}  # a model in a population of another size (as in test_population.py)
BASE = {"hidden": [16], "batch_size": 200, "init": "xavier_uniform"}
SEARCH = {"lr": {"loguniform": [1e-2, 0.5]}, "momentum": {"uniform": [0.0, 0.9]}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for these tests: the tune and its references sum in the same order, and small populations
    run fastest that way (more threads only wait on each other, the more so on a busy machine)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _spec(**tune_options):
    return {"base": dict(BASE), "search": dict(SEARCH), "tune": {"sampler": "random", **tune_options}}


def _study(url, name):
    return optuna.load_study(study_name=name, storage=url)


def _history_close(got: list[dict], want: list[dict]):
    for g, w in zip(got, want, strict=True):
        for k in ("val_loss", "train_loss", "test_loss"):
            assert g[k] == pytest.approx(w[k], rel=TOL["rtol"], abs=TOL["atol"]), (k, g, w)
        for k in ("val_accuracy", "test_accuracy"):
            assert g[k] == pytest.approx(w[k], abs=2e-3), (k, g, w)  # one image of 500 may flip


# -- the spec ---------------------------------------------------------------------------------------------------------


def test_spec_from_toml(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text("""
[base]
hidden = [32]
batch-size = 64
[search]
lr = { loguniform = [1e-4, 1] }
width = { int = [4, 128], log = true }
activation = { choice = ["relu", "tanh"] }
weight_decay = { uniform = [0, 0.01], step = 0.001 }
[tune]
trials = 10
per_round = 5
pruner = "halving"
max_epochs = 4
seeds = 2
""")
    spec = tune.TuneSpec.from_toml(path)
    assert spec.name == "search" and spec.base["batch_size"] == 64 and spec.seeds == 2
    d = spec.distributions()
    assert isinstance(d["lr"], optuna.distributions.FloatDistribution) and d["lr"].log
    assert isinstance(d["width"], optuna.distributions.IntDistribution) and d["width"].log
    assert (d["width"].low, d["width"].high) == (4, 128)
    assert d["activation"].choices == ("relu", "tanh") and d["weight_decay"].step == 0.001
    c = spec.config({"lr": 0.1, "width": 7, "activation": "tanh", "weight_decay": 0.002}, seed=1)
    assert c.hidden == (7,) and c.epochs == 4 and c.seed == 1 and c.batch_size == 64 and c.activation == "tanh"
    assert tune.default_storage(spec) == tmp_path / "search.optuna.sqlite3"
    assert tune.halving_rungs(9, 1, 3) == [1, 3] and tune.halving_model_epochs(27, 9) == 27 + 9 * 2 + 3 * 6
    assert tune.halving_trials(27 * 9, 9) == 107  # a 27-point grid's compute at 9 epochs starts 107 halving trials
    assert tune.halving_model_epochs(107, 9) == 27 * 9 < tune.halving_model_epochs(108, 9)


@pytest.mark.parametrize("change,message", [
    ({"search": {"lr": {"loguniform": [0, 1]}}}, "a log scale needs low > 0"),
    ({"search": {"lr": {"uniform": [1, 0.1]}}}, "needs low < high"),
    ({"search": {"lr": {"normal": [0, 1]}}}, "[search] lr must be one of"),
    ({"search": {"lr": [0.1, 0.2]}}, "[search] lr must be one of"),
    ({"search": {"hidden": {"choice": [[8], [16]]}}}, "search width and depth instead"),
    ({"search": {"widht": {"int": [4, 8]}}}, "unknown [search] key 'widht' (did you mean 'width'?); known: activation"),
    ({"search": {"width": {"int": [0, 8]}}}, "hidden sizes must be >= 1"),
    ({"search": {"momentum": {"uniform": [0, 1.5]}}}, "momentum must be < 1"),
    ({"search": {}}, "[search] is empty"),
    ({"base": {"epochs": 3}}, "use [tune] max_epochs"),
    ({"base": {"hiden": [3]}}, "unknown key 'hiden' in [base] (did you mean 'hidden'?)"),
    ({"tune": {"sampler": "cmaes"}}, "sampler must be one of"),
    ({"tune": {"pruner": "median", "scheduler": "pbt"}}, "set [tune] pruner = 'none'"),
    ({"tune": {"trials": 0}}, "trials must be an integer >= 1"),
    ({"tune": {"startup_trials": -1}}, "startup_trials must be an integer >= 0"),
    ({"tune": {"pruner": "halving", "startup_trials": 5}}, "startup_trials applies to pruner 'median' only"),
    ({"tune": {"sampler": "grid", "trials": 4}}, "needs every [search] entry to be a choice"),
    ({"tune": {"refill": 1}}, "refill must be true or false"),
    ({"tune": {"refill": True, "pruner": "halving"}}, "pruner 'halving' needs the trials of a round"),
    ({"tune": {"refill": True, "pruner": "none", "scheduler": "pbt"}}, "scheduler 'pbt' needs the trials"),
    ({"tune": {"refill": True}, "search": {"width": {"int": [4, 8]}}}, "but [search] varies width; set refill"),
    ({"tune": {"refill": True}, "base": {"optimizer": "adam"}}, "Adam's step count is shared by a population"),
    ({"tune": {"refill": True}, "base": {"schedule": "cosine"}}, "learning-rate schedule or warm-up would follow"),
    ({"tune": {"refill": True}, "search": {"ema": {"uniform": [0, 0.9]}}}, "the weight average's warm-up"),
    ({"tune": {"refill": True, "startup_trials": 3}}, "startup_trials = 3 does nothing with refill"),
    ({"tune": {"per-round": 4}}, "unknown key(s) ['per-round'] in [tune] (did you mean 'per_round'?)"),
    ({"extra": {}}, "unknown section(s) ['extra']"),
])
def test_bad_specs_are_one_line_errors(tmp_path, capsys, change, message):
    doc = _spec()
    for section, value in change.items():
        doc[section] = value if section == "extra" or (section == "search" and not value.keys() - {"lr"}) else {
            **doc[section], **value}
    with pytest.raises(ValueError) as e:
        tune.TuneSpec.from_dict(doc)
    assert message in str(e.value) and "\n" not in str(e.value)
    # The same spec through the command: one line on stderr, exit status 2, and no storage written.
    path = tmp_path / "bad.toml"
    path.write_text(_toml(doc))
    assert cli_main(["tune", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlplab tune: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "bad.optuna.sqlite3").exists()


def _toml(doc: dict) -> str:
    import json

    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    return "".join(f"[{s}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in body.items()) for s, body in doc.items())


def test_command_line_errors_exit_2(tmp_path, capsys):
    path = tmp_path / "ok.toml"
    path.write_text(_toml(_spec(trials=1)))
    for argv, message in ((["tune", str(tmp_path / "missing.toml")], "no such tune spec"),
                          (["tune", str(path), "--storage", str(tmp_path / "nope" / "x.db")], "does not exist"),
                          (["tune", str(path), "--storage", "redis://x"], "must be an Optuna RDB URL"),
                          (["tune", str(path), "--backend", "spark"], "unknown backend"),
                          (["export", str(tmp_path / "none.sqlite"), "--optuna", str(tmp_path / "o.db")], "")):
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


# -- pruning is take ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def halving(small_splits, tmp_path_factory):
    """Synchronous successive halving over one round of 6 trials: rungs after epochs 1 and 2 (eta 2) keep 3, then 1,
    which runs to max_epochs 3."""
    url = f"sqlite:///{tmp_path_factory.mktemp('halving') / 'h.sqlite3'}"
    spec = _spec(trials=6, per_round=6, pruner="halving", eta=2, max_epochs=3, name="halving")
    summary = tune.run(spec, storage=url, splits=small_splits, device="cpu")
    return spec, url, summary, _study(url, "halving")


def test_halving_prunes_synchronously(halving):
    spec, url, summary, study = halving
    trials = study.get_trials()
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert len(trials) == 6 and summary.trials == 6 and summary.ran == 6
    assert [t.user_attrs["epochs"] for t in by_state[TrialState.PRUNED]].count(1) == 3  # 6 -> 3 after epoch 1
    assert [t.user_attrs["epochs"] for t in by_state[TrialState.PRUNED]].count(2) == 2  # 3 -> 1 after epoch 2
    assert len(by_state[TrialState.COMPLETE]) == 1 and summary.model_epochs == 6 + 3 + 1
    assert summary.model_epochs == tune.halving_model_epochs(6, 3, 1, 2)
    # at each rung the survivors had the best validation accuracy of those left
    for epoch in (1, 2):
        left = [t for t in trials if t.user_attrs["epochs"] >= epoch]
        kept = [t for t in left if t.user_attrs["epochs"] > epoch]
        assert min(t.intermediate_values[epoch] for t in kept) >= max(
            t.intermediate_values[epoch] for t in left if t not in kept)
    # a rerun resumes: nothing left to do
    again = tune.run(spec, storage=url, splits=None, device="cpu")
    assert again.ran == 0 and again.trials == 6 and again.model_epochs == 0
    with pytest.raises(ValueError, match="made by a different spec") as refused:
        tune.run({**spec, "search": {"lr": {"loguniform": [1e-3, 0.5]}}}, storage=url, splits=None, device="cpu")
    assert "[search] lr: {'loguniform': [0.01, 0.5]} in the study, {'loguniform': [0.001, 0.5]} now" in str(
        refused.value) and "[search] momentum: {'uniform': [0.0, 0.9]} in the study, unset now" in str(refused.value)


def test_median_prunes_a_round_from_its_first_epoch_against_its_peers(small_splits, tmp_path):
    """Optuna's median pruner, with the other trials of the round at the same epoch as peers: a single round (no
    completed trial yet) prunes after its first epoch, and exactly the trials whose best value so far is below the
    median of the others' values at that epoch, once there are at least 5 others (the pruner's n_startup_trials)."""
    import numpy as np

    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    tune.run(_spec(trials=8, per_round=8, pruner="median", max_epochs=3, name="median"), storage=url,
             splits=small_splits, device="cpu")
    trials = _study(url, "median").get_trials()
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(t.state == TrialState.PRUNED and t.user_attrs["epochs"] == 1 for t in trials)
    for epoch in (1, 2):
        there = [t for t in trials if epoch in t.intermediate_values]
        for t in there:
            others = [o.intermediate_values[epoch] for o in there if o is not t]
            best = max(v for e, v in t.intermediate_values.items() if e <= epoch)
            stopped = t.state == TrialState.PRUNED and t.user_attrs["epochs"] == epoch
            assert stopped == (len(others) >= 5 and best < np.median(others)), (epoch, t.number, best, others)


def test_median_with_startup_trials_prunes_nothing_until_that_many_completed(small_splits, tmp_path):
    """startup_trials = 4, rounds of 4: the first round runs whole (no trial has completed before it); the second
    prunes by the median rule against the 4 completed trials and its own other trials at the same epoch."""
    import numpy as np

    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    tune.run(_spec(trials=8, per_round=4, pruner="median", max_epochs=3, startup_trials=4, name="s"), storage=url,
             splits=small_splits, device="cpu")
    trials = sorted(_study(url, "s").get_trials(), key=lambda t: t.number)
    first, second = trials[:4], trials[4:]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == 3 for t in first)
    for epoch in (1, 2):
        there = [t for t in second if epoch in t.intermediate_values]
        for t in there:
            peers = [o.intermediate_values[epoch] for o in first + there if o is not t]
            best = max(v for e, v in t.intermediate_values.items() if e <= epoch)
            stopped = t.state == TrialState.PRUNED and t.user_attrs["epochs"] == epoch
            assert stopped == (best < np.median(peers)), (epoch, t.number, best, peers)


def test_a_progress_bar_follows_each_round_epoch_by_epoch(small_splits, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    tune.run(_spec(trials=2, per_round=2, pruner="none", max_epochs=2, name="bar"), storage=url,
             splits=small_splits, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "round" in err and "0/2" in err and "2 of 2 trial(s) going" in err  # (tqdm may skip later redraws)
    tune.run(_spec(trials=4, per_round=2, pruner="none", max_epochs=2, name="bar"), storage=url,
             splits=small_splits, device="cpu", progress=False)
    assert capsys.readouterr().err == ""


def test_a_pruned_trajectory_equals_the_model_trained_alone(halving, small_splits):
    """Up to the epoch it was pruned, a trial's numbers are those of its model trained on its own (M = 1)."""
    spec, url, summary, study = halving
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED and t.user_attrs["epochs"] == 2]
    t = pruned[0]
    config = TrainConfig.from_dict(t.user_attrs["config"])
    assert config == tune.TuneSpec.from_dict(spec).config(t.params)
    alone = train(config, splits=small_splits, device="cpu", progress=False)
    _history_close(t.user_attrs["history"], alone.history[:2])
    assert [t.intermediate_values[e] for e in (1, 2)] == [h["val_accuracy"] for h in t.user_attrs["history"]]


def test_survivors_equal_a_run_without_the_pruned(halving, small_splits):
    """The trials kept at the first rung, trained as a population of their own from the start, give the same numbers
    as in the tune (where three more models shared their population for the first epoch)."""
    spec, url, summary, study = halving
    kept = sorted((t for t in study.get_trials() if t.user_attrs["epochs"] >= 2), key=lambda t: t.number)
    configs = [TrainConfig.from_dict(t.user_attrs["config"]) for t in kept]
    results = train_population(configs, splits=small_splits, device="cpu", progress=False)
    for t, r in zip(kept, results):
        _history_close(t.user_attrs["history"], r.history[:t.user_attrs["epochs"]])


def _alone(config: TrainConfig, splits, skip: int, epochs: int) -> list[dict]:
    """`config` trained alone (M = 1) for `epochs`, its data-order stream first advanced by `skip` epochs: a trial
    that joined a refilled population after `skip` of its epochs reads the stream from there."""
    from mlplab import data as data_mod

    w = tune.PopulationWorker([config], [0], splits, "cpu")
    for g in w.pop.order_gens.values():
        for _ in range(skip):
            data_mod.epoch_order(len(w.X), g)
    return [w.epoch()["rows"][0] for _ in range(epochs)]


def test_refill_keeps_one_population_full_and_each_trial_trains_as_alone(small_splits, tmp_path):
    """[tune] refill: 8 trials, at most 3 at a time; about half draw a learning rate that diverges in the first
    epoch, so trials end at different epochs and new ones join the running population. Every trial's numbers are
    those of its model trained alone, with the data-order stream advanced to where it joined."""
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    spec = {"base": {**BASE, "activation": "identity"}, "search": {"lr": {"choice": [0.05, 0.2, 1e5]}},  # 1e5:
            "tune": {"sampler": "random", "trials": 8, "per_round": 3, "pruner": "none", "max_epochs": 3,
                     "refill": True, "name": "refill"}}  # overflows (a ReLU net would collapse, finite)
    lines = []
    summary = tune.run(spec, storage=url, splits=small_splits, device="cpu", log=lines.append)
    trials = _study(url, "refill").get_trials()
    assert len(trials) == 8 and summary.trials == 8 and summary.ran == 8 and summary.rounds == 1
    diverged = [t for t in trials if t.user_attrs["outcome"] == "diverged"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert diverged and len(diverged) + len(complete) == 8
    assert all(t.params["lr"] == 1e5 and t.user_attrs["diverged_at"]["epoch"] == 1 for t in diverged)
    assert max(t.user_attrs["population_size"] for t in trials) == 3  # full, never more
    assert any(t.user_attrs["joined_epoch"] > 0 for t in trials)  # some joined a population that had trained
    assert summary.model_epochs == sum(t.user_attrs["epochs"] for t in trials)
    for pop in {t.user_attrs["population"] for t in trials}:  # seconds: its population's wall time until it left,
        left = sorted((t.user_attrs["joined_epoch"] + t.user_attrs["epochs"], t.user_attrs["seconds"])  # so the
                      for t in trials if t.user_attrs["population"] == pop)  # later it left, the more
        assert [s for _, s in left] == sorted(s for _, s in left) and left[0][1] > 0
    assert "up to 3 trial(s) at a time in one population" in lines[0] and "8 trial(s)" in lines[-1]
    for t in complete:
        config = TrainConfig.from_dict(t.user_attrs["config"])
        _history_close(t.user_attrs["history"], _alone(config, small_splits, t.user_attrs["joined_epoch"], 3))
        assert [t.intermediate_values[e] for e in (1, 2, 3)] == [h["val_accuracy"] for h in t.user_attrs["history"]]
    for t in diverged:  # it broke at the very step (of its own, from where it joined) where its model alone breaks
        alone = _alone(TrainConfig.from_dict(t.user_attrs["config"]), small_splits, t.user_attrs["joined_epoch"], 1)
        assert not alone[0]["alive"] and alone[0]["diverged_at"] == t.user_attrs["diverged_at"]
    # a rerun resumes: nothing left to do
    assert tune.run(spec, storage=url, splits=small_splits, device="cpu").ran == 0


def test_refill_prunes_with_optunas_own_median_rule(small_splits, tmp_path):
    """With refill the median pruner is Optuna's rule as in its own loop: after each epoch a trial stops exactly when
    its best value so far is below the median of the completed trials' values at that epoch, once 5 have completed
    (the completed trials: those that ended at an earlier epoch of the population, read from where each joined);
    until then only 5 trials run."""
    import numpy as np

    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    tune.run(_spec(trials=14, per_round=6, pruner="median", max_epochs=3, refill=True, name="m"), storage=url,
             splits=small_splits, device="cpu")
    trials = _study(url, "m").get_trials()
    # until 5 have completed only 5 run (more would run whole, unpruned); then up to per_round = 6 at a time
    first = [t for t in trials if t.user_attrs["population"].endswith("-0") and t.user_attrs["joined_epoch"] == 0]
    assert len(first) == 5 and max(t.user_attrs["population_size"] for t in trials) <= 6

    def at(t, epoch):  # when (population, its epoch) the trial's `epoch` ended
        return int(t.user_attrs["population"].rsplit("-", 1)[1]), t.user_attrs["joined_epoch"] + epoch

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and len(complete) + len(pruned) == 14
    for t in complete + pruned:
        for epoch in range(1, t.user_attrs["epochs"] + (t.state == TrialState.PRUNED)):
            if epoch == 3:
                break
            peers = [o.intermediate_values[epoch] for o in complete if at(o, 3) < at(t, epoch)]
            best = max(v for e, v in t.intermediate_values.items() if e <= epoch)
            stopped = t.state == TrialState.PRUNED and t.user_attrs["epochs"] == epoch
            assert stopped == (len(peers) >= 5 and best < np.median(peers)), (t.number, epoch, best, peers)
    # a pruned trial's numbers up to its stop are its model's trained alone (its stream advanced where it joined)
    for t in sorted(pruned, key=lambda t: -t.user_attrs["joined_epoch"])[:3]:  # the latest joiners first
        config = TrainConfig.from_dict(t.user_attrs["config"])
        _history_close(t.user_attrs["history"],
                       _alone(config, small_splits, t.user_attrs["joined_epoch"], t.user_attrs["epochs"]))


def test_refill_with_hyperband_prunes_by_its_brackets(small_splits, tmp_path):
    """Optuna's hyperband pruner works trial by trial, so it goes with refill as it is: every trial ends (complete or
    pruned at one of its rungs), trials join the running population, and each reported value is the trial's own."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    summary = tune.run(_spec(trials=12, per_round=4, pruner="hyperband", max_epochs=4, refill=True, name="h"),
                       storage=url, splits=small_splits, device="cpu")
    trials = _study(url, "h").get_trials()
    assert summary.trials == 12 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(t.state == TrialState.PRUNED for t in trials) and any(t.user_attrs["joined_epoch"] for t in trials)
    for t in trials:
        assert [t.intermediate_values[e] for e in sorted(t.intermediate_values)] == [
            h["val_accuracy"] for h in t.user_attrs["history"]]


def test_refill_that_cannot_fit_asks_no_trial(small_splits, tmp_path):
    """The memory check comes before any trial is asked: a refused run leaves nothing running behind."""
    url = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    one = tune.planner.population_bytes([tune.TuneSpec.from_dict(_spec()).config({})])  # room for one model only
    with pytest.raises(ValueError, match="do not fit one population in memory; lower per_round"):
        tune.run(_spec(trials=4, per_round=4, refill=True, name="f"), storage=url, splits=small_splits, device="cpu",
                 budget_bytes=one)
    assert _study(url, "f").get_trials() == []


def test_refill_goes_on_when_its_population_breaks(small_splits, tmp_path, monkeypatch):
    """A population that fails to take new trials fails the trials in it (outcome 'error'); the new trials start a
    population of their own and the search goes on to its count, leaving no trial running."""
    calls = {"n": 0}
    add = tune.PopulationWorker.add

    def flaky(self, configs, ids):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("no room")
        return add(self, configs, ids)

    monkeypatch.setattr(tune.PopulationWorker, "add", flaky)
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    spec = {"base": {**BASE, "activation": "identity"}, "search": {"lr": {"choice": [0.05, 1e5]}},
            "tune": {"sampler": "random", "trials": 6, "per_round": 2, "pruner": "none", "max_epochs": 2,
                     "refill": True, "name": "b"}}  # lr 1e5 diverges, so trials end early and new ones must join
    summary = tune.run(spec, storage=url, splits=small_splits, device="cpu")
    study = _study(url, "b")
    trials = study.get_trials()
    assert calls["n"] >= 2 and summary.trials == 6 == tune.counted(study)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    errors = [t for t in trials if t.user_attrs.get("outcome") == "error"]
    assert errors and all("MemoryError: no room" in t.user_attrs["error"] for t in errors)
    assert len({t.user_attrs["population"] for t in trials}) >= 2


def test_trials_carry_their_provenance_and_test_accuracy_is_never_the_objective(halving):
    spec, url, summary, study = halving
    for t in study.get_trials():
        a = t.user_attrs
        assert a["config"]["epochs"] == 3 and a["mlplab_version"].startswith(tune.__version__) and a["seconds"] > 0
        assert a["population"].endswith("-0") and a["population_size"] == 6 and a["outcome"] in ("complete", "pruned")
        assert "test_accuracy" in a and 0 < a["test_accuracy"] <= 1
        assert t.value == a["history"][-1]["val_accuracy"] == t.intermediate_values[a["epochs"]]
        assert "test_accuracy" not in t.params
    best = study.best_trial
    assert best.value == max(t.value for t in study.get_trials() if t.state == TrialState.COMPLETE)
    assert summary.best_value == best.value and summary.best_test_accuracy == best.user_attrs["test_accuracy"]
    assert study.metric_names == ["val_accuracy"]


# -- population-based training ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pbt_exploit_is_an_exact_copy(small_splits, optimizer):
    base = TrainConfig(hidden=(12,), epochs=3, batch_size=100, optimizer=optimizer, init="kaiming_uniform",
                       momentum=0.9 if optimizer == "sgd" else 0.0, lr=0.05 if optimizer == "sgd" else 2e-3)
    configs = [base.replace(seed=0, ema=0.9, dropout=0.1), base.replace(seed=1, lr=base.lr / 3, max_norm=3.0),
               base.replace(seed=2, data_seed=7, dropout=0.2), base.replace(seed=3, data_seed=7, lr=base.lr * 2)]
    X, Y = to_tensors(small_splits.train_x, small_splits.train_y, "cpu")
    pop = Population.create(configs, layer_sizes(784, base.hidden, 10), torch.device("cpu"))
    plan = EpochPlan.of(base, len(X))
    pop.train_epoch(X, Y, plan)
    before = _state(pop)
    pbt.exploit(pop, dst=[1, 3], src=[2, 0])
    after = _state(pop)
    for k in after:
        for d, s in ((1, 2), (3, 0)):
            assert torch.equal(after[k][d], before[k][s]), (k, d, s)  # bit for bit
        assert torch.equal(after[k][0], before[k][0]) and torch.equal(after[k][2], before[k][2])
    assert pop.configs[1].lr == configs[2].lr and pop.configs[1].seed == 1 and pop.configs[1].max_norm == 0.0
    assert pop.configs[3].ema == 0.9 and pop.configs[3].data_seed == 7
    pbt.set_hyperparameters(pop, 1, {"lr": 0.0123})
    assert pop.hp["lr"][1].item() == pytest.approx(0.0123) and pop.configs[1].lr == 0.0123
    assert pop.hp["lr"][2].item() == pytest.approx(configs[2].lr)
    loss, steps = pop.train_epoch(X, Y, plan)  # training goes on from the copies
    assert torch.isfinite(loss).all() and bool(pop.alive.all())


def _state(pop):
    """Every per-model tensor, by name."""
    out = {f"p.{k}": v.detach().clone() for k, v in pop.params.items()}
    for part, d in pop.opt_state.items():
        if isinstance(d, dict):
            out.update({f"{part}.{k}": v.clone() for k, v in d.items()})
    out.update({f"ema.{k}": v.clone() for k, v in (pop.ema or {}).items()})
    out.update({f"hp.{k}": v.clone() for k, v in pop.hp.items() if isinstance(v, torch.Tensor)})
    if pop.cap is not None:
        out["cap"] = pop.cap.clone()
    return out


def test_pbt_through_tune_stores_lineage_and_schedule(small_splits, tmp_path):
    url = f"sqlite:///{tmp_path / 'pbt.sqlite3'}"
    spec = _spec(trials=4, per_round=4, pruner="none", scheduler="pbt", max_epochs=3, name="pbt")
    summary = tune.run(spec, storage=url, splits=small_splits, device="cpu")
    study = _study(url, "pbt")
    members = tune.pbt_members(study)
    assert summary.complete == 4 and len(members) == 4
    copies = [s for m in members for s in m["hp_schedule"] if s["from"] is not None]
    assert len(copies) == 2  # one member (a quarter of 4) copies another after epochs 1 and 2
    for m in members:
        t = study.trials[m["number"]]
        last = m["hp_schedule"][-1]["hp"]
        assert t.user_attrs["final_config"]["lr"] == pytest.approx(last["lr"])
        assert m["lineage"] == [s["from"] for s in m["hp_schedule"] if s["from"] is not None]
        for s in m["hp_schedule"]:
            assert 1e-2 <= s["hp"]["lr"] <= 0.5 and 0 <= s["hp"]["momentum"] <= 0.9  # perturbed within the space
    pbt.plot_schedules(members, "lr", tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000
    best = study.trials[summary.best_trial]  # the summary gives the hyperparameters the best member ended with
    assert summary.best_final_params == best.user_attrs["hp_schedule"][-1]["hp"] and summary.best_params == best.params


# -- kill and resume --------------------------------------------------------------------------------------------------


def _idx_folder(path, mnist):
    """The first 2,500 training and 500 test images of MNIST as IDX files (val_size 500 leaves 2,000 to train)."""
    path.mkdir()
    write_idx(path / "train-images-idx3-ubyte", mnist.train_images[:2500].reshape(-1, 28, 28))
    write_idx(path / "train-labels-idx1-ubyte", mnist.train_labels[:2500])
    write_idx(path / "t10k-images-idx3-ubyte", mnist.test_images[:500].reshape(-1, 28, 28))
    write_idx(path / "t10k-labels-idx1-ubyte", mnist.test_labels[:500])
    return path


def _states(db) -> list[str]:
    """The state of every trial in an Optuna SQLite storage ([] while it is still being created)."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [s for (s,) in con.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # no tables yet
        return []
    finally:
        con.close()


@pytest.mark.parametrize("refill", [False, True])
def test_killed_tune_resumes_without_counting_a_trial_twice(tmp_path, mnist, refill):
    data = _idx_folder(tmp_path / "data", mnist)
    spec = tmp_path / "kill.toml"
    spec.write_text(_toml({"base": {**BASE, "data": str(data), "val_size": 500}, "search": SEARCH,
                           "tune": {"trials": 6, "per_round": 2, "sampler": "tpe", "pruner": "median",
                                    "max_epochs": 2, "refill": refill}}))
    db = tmp_path / "kill.optuna.sqlite3"
    cmd = [sys.executable, "-m", "mlplab", "tune", str(spec), "--quiet", "--heartbeat", "1", "--threads", "1"]
    log = tmp_path / "first.log"
    with open(log, "wb") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and p.poll() is None:
                states = _states(db)
                if "RUNNING" in states and "COMPLETE" in states:
                    break
                time.sleep(0.02)
            assert p.poll() is None, log.read_text()
        finally:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    running = _states(db).count("RUNNING")
    assert running >= 1
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = _study(f"sqlite:///{db}", "kill")
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retry_of = {t.system_attrs["failed_trial"]: t for t in trials if "failed_trial" in t.system_attrs}
    stale = [t for t in trials if t.number in retry_of]
    assert len(stale) == running and len(retry_of) == running  # the killed run's trials, each retried once
    for s in stale:  # failed, not counted; its retry has the same parameters and finished
        assert s.state == TrialState.FAIL and s.user_attrs["outcome"] == "driver died"
        # same parameters (a driver killed inside `ask` may have left some or all of them unsampled)
        assert {k: retry_of[s.number].params[k] for k in s.params} == s.params
        assert retry_of[s.number].state in (TrialState.COMPLETE, TrialState.PRUNED)
    counted = [t for t in trials if t not in stale]
    assert len(counted) == 6 == tune.counted(study)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)


@pytest.mark.parametrize("refill", [False, True])
def test_an_interrupted_tune_hands_its_trials_back_and_counts_them_once(small_splits, tmp_path, monkeypatch, refill):
    """Ctrl-C in the middle of training: the unfinished trials fail with outcome 'interrupted' and are queued again
    with the same parameters; the summary says how many, and complete + pruned + failed add up to the trials. A
    trial interrupted more often than Optuna's retry limit (MAX_RETRY) is not queued again: it stays failed, counts,
    and the log says so."""
    url = f"sqlite:///{tmp_path / 'int.sqlite3'}"
    spec = _spec(trials=4, per_round=2, pruner="none", max_epochs=2, name="int", refill=refill)
    train_epoch = tune.PopulationWorker.epoch

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune.PopulationWorker, "epoch", interrupted)
    lines = []
    for attempt in range(tune.MAX_RETRY + 1):  # the same 2 trials, handed back each time
        with pytest.raises(KeyboardInterrupt):
            tune.run(spec, storage=url, splits=small_splits, device="cpu", log=lines.append)
        trials = _study(url, "int").get_trials()
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        failed = [t for t in trials if t.state == TrialState.FAIL]
        assert len(failed) == 2 * (attempt + 1) and all(t.user_attrs["outcome"] == "interrupted" for t in failed)
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        assert len(waiting) == (2 if attempt < tune.MAX_RETRY else 0)  # queued again, up to the retry limit
        first = {t.params["lr"] for t in failed[:2]}  # the same two settings each time
        assert {t.params["lr"] for t in failed} == first and {t.params["lr"] for t in waiting} <= first
    assert "interrupted 4 times: not queued again" in lines[-1]
    monkeypatch.setattr(tune.PopulationWorker, "epoch", train_epoch)
    s = tune.run(spec, storage=url, splits=small_splits, device="cpu")
    assert s.trials == 4 and s.complete + s.pruned + s.failed == 4
    assert s.failed == 2 and s.interrupted == 2 * tune.MAX_RETRY  # the 2 given up count; their retries do not
    assert s.complete == 2  # 2 new settings ran in place of none of the given-up ones


@pytest.mark.parametrize("refill", [False, True])
def test_a_trial_with_seeds_trains_a_model_per_seed_and_the_log_counts_both(small_splits, tmp_path, refill):
    """[tune] seeds = 2: each trial trains seeds 0 and 1 of its setting, its history is their mean, and the line
    that starts the round says why its population holds 4 models for 2 trials."""
    url = f"sqlite:///{tmp_path / 'seeds.sqlite3'}"
    raw = _spec(trials=2, per_round=2, pruner="none", max_epochs=1, seeds=2, name="seeds", refill=refill)
    lines = []
    tune.run(raw, storage=url, splits=small_splits, device="cpu", log=lines.append)
    said = "up to 2 trial(s) x 2 seeds at a time in one population: 4 x 784-16-10" if refill else \
        "2 trial(s) x 2 seeds in 1 population(s): 4 x 784-16-10"
    assert said in lines[0], lines[0]
    spec = tune.TuneSpec.from_dict(raw)
    for t in _study(url, "seeds").get_trials():
        assert t.user_attrs["population_size"] == 4
        alone = train_population([spec.config(t.params, seed=k) for k in (0, 1)], splits=small_splits,
                                 device="cpu", progress=False)
        mean = {k: sum(r.history[0][k] for r in alone) / 2 for k in ("val_loss", "train_loss", "test_loss",
                                                                     "val_accuracy", "test_accuracy")}
        _history_close(t.user_attrs["history"], [mean])


def test_the_round_bar_shows_each_epoch_with_its_trials_going(small_splits, tmp_path, capsys):
    """The bar's count and its "N of M trial(s) going" are drawn together after every epoch (the count lagged one
    epoch behind when epochs took under tqdm's 0.1 s between prints)."""
    spec = _spec(trials=2, per_round=2, pruner="none", max_epochs=2, name="bar")
    tune.run(spec, storage=f"sqlite:///{tmp_path / 'bar.sqlite3'}", splits=small_splits, device="cpu", progress=True)
    drawn = [part for part in capsys.readouterr().err.split("\r") if "trial(s) going" in part]
    assert any("1/2" in part and "2 of 2 trial(s) going" in part for part in drawn), drawn
    assert any("2/2" in part and "0 of 2 trial(s) going" in part for part in drawn), drawn


def test_ctrl_c_in_mlplab_tune_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from mlplab.cli import main

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune.PopulationWorker, "epoch", interrupted)
    spec = tmp_path / "c.toml"
    spec.write_text(_toml({"base": BASE, "search": SEARCH, "tune": {"trials": 2, "per_round": 2, "max_epochs": 1}}))
    assert main(["tune", str(spec), "--quiet", "--threads", "1"]) == 130
    assert capsys.readouterr().err.strip() == "mlplab: interrupted; the same command resumes it"


def test_trials_whose_heartbeat_stopped_are_failed_and_retried(small_splits, tmp_path):
    """A trial left running by a driver elsewhere (not a process of this machine) is failed once its heartbeat is
    older than the grace period, and retried."""
    url = f"sqlite:///{tmp_path / 'hb.sqlite3'}"
    spec = tune.TuneSpec.from_dict(_spec(trials=2, per_round=2, pruner="none", max_epochs=1, name="hb"))
    study = tune.open_study(spec, url)
    t = study.ask(spec.distributions())
    t.set_user_attr("driver", "another-machine:123:456")
    hb = tune._open_storage(url, heartbeat=1, grace=1)
    hb.record_heartbeat(t._trial_id)
    time.sleep(2.2)
    summary = tune.run(spec, storage=url, splits=small_splits, device="cpu", heartbeat=1, grace=1)
    trials = _study(url, "hb").get_trials()
    assert summary.retried == 1 and trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["outcome"] == "driver died"  # as for a driver process that ended
    assert [x.state for x in trials[1:]] == [TrialState.COMPLETE] * 2 and trials[1].params == trials[0].params
    assert trials[1].system_attrs["failed_trial"] == 0 and summary.trials == 2


def test_a_trial_whose_heartbeat_stopped_too_often_counts_as_failed(small_splits, tmp_path):
    """A stale trial that is already Optuna's MAX_RETRY-th retry is failed and not queued again: it keeps the
    outcome 'driver died', counts toward [tune] trials as a failed one (one new setting runs, not two), the log
    names it, and complete + pruned + failed add up to the trials. Before, it had no outcome and counted nowhere."""
    url = f"sqlite:///{tmp_path / 'hb4.sqlite3'}"
    spec = tune.TuneSpec.from_dict(_spec(trials=2, per_round=2, pruner="none", max_epochs=1, name="hb4"))
    study = tune.open_study(spec, url)
    storage = tune._open_storage(url, heartbeat=1, grace=1)
    for n in range(tune.MAX_RETRY):  # trials 0..2: interrupted, each retried by the next
        t = study.ask(spec.distributions())
        storage.set_trial_system_attr(t._trial_id, "retry_history", list(range(n)))
        t.set_user_attr("outcome", "interrupted")
        study.tell(t, state=TrialState.FAIL)
    t = study.ask(spec.distributions())  # trial 3, the third retry, left running by a driver elsewhere
    storage.set_trial_system_attr(t._trial_id, "retry_history", list(range(tune.MAX_RETRY)))
    t.set_user_attr("driver", "another-machine:123:456")
    storage.record_heartbeat(t._trial_id)
    time.sleep(2.2)
    lines = []
    summary = tune.run(spec, storage=url, splits=small_splits, device="cpu", heartbeat=1, grace=1, log=lines.append)
    trials = _study(url, "hb4").get_trials()
    assert trials[3].state == TrialState.FAIL and trials[3].user_attrs["outcome"] == "driver died"
    assert not [x for x in trials if x.state == TrialState.WAITING]  # not queued again
    assert "except trial 3: failed 4 times, not queued again" in lines[0]
    assert (summary.trials, summary.failed, summary.complete, summary.interrupted) == (2, 1, 1, 3)
    assert len(trials) == 5 and trials[4].state == TrialState.COMPLETE  # one new setting, in the stale one's place


# -- export -----------------------------------------------------------------------------------------------------------


def test_export_a_sweep_store_to_optuna(small_splits, tmp_path, capsys):
    from mlplab.store import Store

    configs = [TrainConfig(hidden=(8,), epochs=2, batch_size=100, lr=lr, seed=s) for lr in (0.05, 0.2) for s in (0, 1)]
    results = train_population(configs, splits=small_splits, device="cpu", progress=False)
    with Store(tmp_path / "sweep.sqlite") as store:
        store.claim(configs)
        store.finish(results)
    url = f"sqlite:///{tmp_path / 'export.sqlite3'}"
    assert cli_main(["export", str(tmp_path / "sweep.sqlite"), "--optuna", url]) == 0
    assert "4 trial(s) added" in capsys.readouterr().err
    study = _study(url, "sweep")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {(t.params["lr"], t.params["seed"]) for t in trials} == {(c.lr, c.seed) for c in configs}
    by_key = {r.config: r for r in results}
    for t in trials:
        r = by_key[TrainConfig.from_dict(t.user_attrs["config"])]
        assert t.value == r.val_accuracy and t.user_attrs["test_accuracy"] == r.test_accuracy
        assert (t.user_attrs["status"], t.user_attrs["outcome"]) == ("done", r.outcome)  # as `mlplab results` says
        assert t.intermediate_values == {h["epoch"]: h["val_accuracy"] for h in r.history}
    assert tune.export(tmp_path / "sweep.sqlite", url) == (0, 4)  # again: nothing new


# -- Ray --------------------------------------------------------------------------------------------------------------


REFILL_RAY = {"base": {**BASE, "activation": "identity"}, "search": {"lr": {"choice": [0.05, 1e5]}},
              "tune": {"sampler": "random", "trials": 5, "per_round": 2, "pruner": "none", "max_epochs": 2,
                       "refill": True, "name": "ray"}}  # lr 1e5 diverges: trials end early and others join


@pytest.mark.parametrize("spec", [_spec(trials=4, per_round=4, pruner="halving", eta=2, max_epochs=2, name="ray"),
                                  REFILL_RAY], ids=["halving", "refill"])
def test_ray_backend_gives_the_local_numbers(small_splits, tmp_path, spec):
    pytest.importorskip("ray", reason="the ray extra is part of .[test]")
    threads = torch.get_num_threads()
    values = {}
    for backend in ("local", "ray"):
        url = f"sqlite:///{tmp_path / backend}.sqlite3"
        tune.run(spec, storage=url, splits=small_splits, device="cpu", backend=backend, threads=1)
        values[backend] = [(t.state, t.params, t.user_attrs.get("joined_epoch"),
                            [h["val_loss"] for h in t.user_attrs["history"]]) for t in _study(url, "ray").get_trials()]
    assert torch.get_num_threads() == threads
    assert values["ray"] == values["local"]  # same threads, same floating-point sums: the same bits
    if spec is REFILL_RAY:
        assert any(joined for _, _, joined, _ in values["ray"])  # some trials joined a trained population



@pytest.mark.parametrize("refill", [False, True])
def test_ray_gives_each_finished_population_its_cpu_back(small_splits, tmp_path, refill):
    """More populations, one after another, than the machine has CPUs: each finished population's actor is released,
    so the next one can be scheduled (before, the third population waited forever on a 2-CPU machine)."""
    pytest.importorskip("ray", reason="the ray extra is part of .[test]")
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    summary = tune.run(_spec(trials=4, per_round=1, pruner="none", max_epochs=1, refill=refill, name="c"),
                       storage=url, splits=small_splits, device="cpu", backend="ray", threads=1)
    assert summary.trials == 4 and summary.ran == 4
    assert len({t.user_attrs["population"] for t in _study(url, "c").get_trials()}) == 4


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_search_draws_new_settings_not_its_first_ones_again(tmp_path, sampler):
    """Reopening a study (a resume) must not re-seed the sampler to the draws of its first trials; a new study with
    the same spec still starts from the same draws (the seed is honoured)."""
    spec = tune.TuneSpec.from_dict(_spec(sampler=sampler, trials=6, per_round=3))
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}

    def ask(url, n=3):
        study = tune.open_study(spec, url)
        return [study.ask(dist).params["lr"] for _ in range(n)]

    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    first, resumed = ask(url), ask(url)
    assert not set(first) & set(resumed), (first, resumed)
    assert ask(f"sqlite:///{tmp_path / 'b.sqlite3'}") == first
