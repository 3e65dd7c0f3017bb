"""The Ray backend against a real local Ray instance that these tests start and stop themselves."""

import os
import sqlite3
import sys

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is part of .[test]; install it with pip install 'mlplab[ray]'")

from mlplab import TrainConfig  # noqa: E402
from mlplab.runner import run_sweep  # noqa: E402
from mlplab.store import Store, trial_key  # noqa: E402
from mlplab.train import train_population  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module

TRIALS = [TrainConfig(hidden=(h,), epochs=1, batch_size=256, lr=lr, seed=s, init="xavier_uniform")
          for h in (3, 5, 7) for lr in (0.05, 0.2) for s in (0, 1)]
KEEP = frozenset({trial_key(TRIALS[0]), trial_key(TRIALS[5])})  # widths 3 and 5: two of the three populations


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def _metrics(path):
    with Store(path, create=False) as s:
        return {r["key"]: (r["status"], r["test_accuracy"], r["val_accuracy"], r["train_loss"],
                           [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]])
                for r in s.records()}


def test_ray_stores_the_same_metrics_as_the_local_backend(tmp_path, local_ray):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks use one thread each; same threads, same floating-point sums
    try:
        local = run_sweep(TRIALS, tmp_path / "local.sqlite", progress=False, keep_weights=KEEP)
    finally:
        torch.set_num_threads(threads)
    remote = run_sweep(TRIALS, tmp_path / "ray.sqlite", progress=False, backend="ray", keep_weights=KEEP)
    assert (local.trained, remote.trained, remote.populations) == (12, 12, 3)
    assert _metrics(tmp_path / "local.sqlite") == _metrics(tmp_path / "ray.sqlite")  # bit-identical
    # The weights kept (those of KEEP only, from two of the three populations) come back from the workers intact.
    with Store(tmp_path / "local.sqlite", create=False) as a, Store(tmp_path / "ray.sqlite", create=False) as b:
        for c in TRIALS:
            mine, theirs = a.weights(trial_key(c)), b.weights(trial_key(c))
            if trial_key(c) in KEEP:
                assert mine is not None and set(theirs) == set(mine) == {"w0", "b0", "w1", "b1"}
                assert all(torch.equal(theirs[k], mine[k]) for k in mine)
            else:
                assert mine is None and theirs is None
    again = run_sweep(TRIALS, tmp_path / "ray.sqlite", progress=False, backend="ray")
    assert (again.trained, again.skipped) == (0, 12)  # resuming skips everything finished


def _dies_once(marker):
    def train_fn(configs, **kw):
        if configs[0].hidden == (5,) and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies mid-task
        return train_population(configs, **kw)

    return train_fn


def _always_dies(configs, **kw):
    if configs[0].hidden == (7,):
        os._exit(1)
    return train_population(configs, **kw)


def test_a_killed_worker_is_retried_and_nothing_is_lost_or_repeated(tmp_path, local_ray):
    store = tmp_path / "k.sqlite"
    report = run_sweep(TRIALS, store, progress=False, backend="ray", train_fn=_dies_once(str(tmp_path / "m")))
    assert (tmp_path / "m").exists()  # the worker did die once
    assert (report.trained, report.failed) == (12, 0)
    rows = sqlite3.connect(store).execute("SELECT key, status FROM trials").fetchall()
    assert len(rows) == 12 and {r[1] for r in rows} == {"done"}
    assert {r[0] for r in rows} == {trial_key(t) for t in TRIALS}


def test_a_task_that_keeps_dying_is_stored_as_failed_and_the_rest_completes(tmp_path, local_ray):
    store = tmp_path / "f.sqlite"
    report = run_sweep(TRIALS, store, progress=False, backend="ray", train_fn=_always_dies)
    assert (report.trained, report.failed) == (8, 4)
    with Store(store, create=False) as s:
        recs = s.records()
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(recs) == 12 and len(failed) == 4
    assert all(r["hidden"] == [7] and r["error"] for r in failed)


def test_missing_ray_is_a_clear_error(monkeypatch, tmp_path, capsys):
    import importlib.util

    from mlplab.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text("[base]\nepochs = 1\nhidden = [4]\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite"), "--backend", "ray"]) == 2
    assert "pip install 'mlplab[ray]'" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite"), "--backend", "spark"]) == 2
