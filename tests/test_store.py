import signal
import sqlite3
import subprocess
import sys
import time

from mlplab import TrainConfig
from mlplab.runner import run_sweep
from mlplab.store import Store, trial_key

# Eight populations (one per width), each a second or so on the full MNIST.
SPEC = """
[base]
epochs = 1
batch_size = 256
lr = 0.1
init = "xavier_uniform"
hidden = [1]
[axes]
hidden = [1, 2, 3, 4, 5, 6, 7, 8]
[sweep]
seeds = 3
"""


def _spec(tmp_path, text=SPEC):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def _sweep(spec, store, *extra):
    return subprocess.Popen([sys.executable, "-m", "mlplab", "sweep", str(spec), "--store", str(store), "--quiet",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(store):
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT key, status, updated, history FROM trials").fetchall()
    except sqlite3.OperationalError:  # the sweep is still creating the store's tables
        return []
    finally:
        db.close()


def test_rerun_skips_finished_trials_and_records_everything(tmp_path, small_splits, monkeypatch):
    trials = [TrainConfig(hidden=(4,), epochs=1, lr=lr, seed=s) for lr in (0.05, 0.1) for s in (0, 1)]
    import mlplab.runner as runner

    monkeypatch.setattr(runner, "_splits", lambda cache, c: small_splits)
    store = tmp_path / "s.sqlite"
    first = run_sweep(trials, store, progress=False)
    assert (first.trained, first.skipped, first.populations) == (4, 0, 1)
    second = run_sweep(trials + [trials[0].replace(lr=0.2)], store, progress=False)
    assert (second.trained, second.skipped) == (1, 4)
    with Store(store) as s:
        recs = s.records()
        assert s.counts() == {"done": 5}
    assert len(recs) == 5 and len({r["key"] for r in recs}) == 5
    r = recs[0]
    assert r["version"] and r["status"] == "done" and 0 <= r["test_accuracy"] <= 1
    assert len(r["history"]) == 1 and r["history"][0]["epoch"] == 1
    assert TrainConfig.from_dict({k: r[k] for k in TrainConfig().to_dict()}) == trials[0]
    assert r["key"] == trial_key(trials[0])
    assert sqlite3.connect(store).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_diverged_and_failed_trials_are_stored(tmp_path, small_splits, monkeypatch):
    import mlplab.runner as runner

    real = runner.train_population

    def flaky(configs, **kw):
        if configs[0].hidden == (3,):
            raise RuntimeError("simulated worker crash")
        return real(configs, **kw)

    monkeypatch.setattr(runner, "train_population", flaky)
    monkeypatch.setattr(runner, "_splits", lambda cache, c: small_splits)
    base = TrainConfig(hidden=(4,), epochs=1, activation="identity", init="xavier_normal")
    trials = [base, base.replace(lr=1e3), base.replace(hidden=(3,))]
    report = run_sweep(trials, tmp_path / "s.sqlite", progress=False)
    assert (report.trained, report.failed) == (2, 1)
    with Store(tmp_path / "s.sqlite") as s:
        by_key = {r["key"]: r for r in s.records()}
    assert by_key[trial_key(trials[0])]["status"] == "done"
    assert by_key[trial_key(trials[1])]["status"] == "diverged"
    assert by_key[trial_key(trials[1])]["diverged_at"]["epoch"] == 1
    failed = by_key[trial_key(trials[2])]
    assert failed["status"] == "failed" and "simulated worker crash" in failed["error"]
    monkeypatch.setattr(runner, "train_population", real)  # a later sweep retries the failed trial
    again = run_sweep(trials, tmp_path / "s.sqlite", progress=False)
    assert (again.trained, again.skipped) == (1, 2)


def test_sigkill_mid_sweep_then_resume_loses_nothing_and_repeats_nothing(tmp_path):
    spec, store = _spec(tmp_path), tmp_path / "k.sqlite"
    p = _sweep(spec, store)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until at least one population has landed, then kill -9
            if store.exists() and any(r[1] == "done" for r in _rows(store)):
                break
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    before = {k: (st, up, h) for k, st, up, h in _rows(store)}
    done_before = {k: v for k, v in before.items() if v[0] == "done"}
    assert 0 < len(done_before) < 24, "the kill should land mid-sweep"
    assert all(v[0] in ("done", "running") for v in before.values())
    p = _sweep(spec, store)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    after = {k: (st, up, h) for k, st, up, h in _rows(store)}
    assert len(after) == 24 and all(v[0] == "done" for v in after.values())
    for k, v in done_before.items():  # finished rows were never rewritten
        assert after[k] == v


def test_two_sweeps_at_once_on_one_store(tmp_path):
    spec, store = _spec(tmp_path), tmp_path / "c.sqlite"
    a, b = _sweep(spec, store), _sweep(spec, store)
    errors = [p.communicate(timeout=600)[1] for p in (a, b)]
    assert (a.returncode, b.returncode) == (0, 0), errors
    rows = _rows(store)
    assert len(rows) == 24 and all(r[1] == "done" for r in rows)
    db = sqlite3.connect(store)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_results_command_prints_and_exports(tmp_path, small_splits, monkeypatch, capsys):
    import mlplab.runner as runner
    from mlplab.cli import main

    monkeypatch.setattr(runner, "_splits", lambda cache, c: small_splits)
    trials = [TrainConfig(hidden=(4,), epochs=1, lr=lr) for lr in (0.05, 0.1, 0.2)]
    run_sweep(trials, tmp_path / "s.sqlite", progress=False)
    assert main(["results", str(tmp_path / "s.sqlite")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["lr", "status", "val_accuracy", "test_accuracy", "train_loss", "seconds"]
    assert len(out) == 4
    vals = [float(line.split()[2]) for line in out[1:]]
    assert vals == sorted(vals, reverse=True)  # chosen on validation: the best validation accuracy first
    csv_path = tmp_path / "r.csv"
    assert main(["results", str(tmp_path / "s.sqlite"), "--csv", str(csv_path)]) == 0
    import csv

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {"hidden", "lr", "seed", "test_accuracy", "status"} <= set(rows[0])
    assert sorted(float(r["lr"]) for r in rows) == [0.05, 0.1, 0.2]


def test_reopening_an_existing_store(tmp_path):
    Store(tmp_path / "x.sqlite").close()
    with Store(tmp_path / "x.sqlite", create=False) as s:
        assert s.counts() == {}


def test_kept_weights_are_the_trained_ones_and_only_those_asked_for(tmp_path, small_splits, monkeypatch):
    """A sweep keeps the reported weights of the trials it is told to; they evaluate to the stored accuracy."""
    import torch

    import mlplab.runner as runner
    from mlplab.population import evaluate

    trials = [TrainConfig(hidden=(4,), epochs=2, lr=0.1, seed=s) for s in (0, 1)]
    monkeypatch.setattr(runner, "_splits", lambda cache, c: small_splits)
    store = tmp_path / "s.sqlite"
    run_sweep(trials, store, progress=False, keep_weights=frozenset({trial_key(trials[1])}))
    with Store(store, create=False) as s:
        assert s.weights(trial_key(trials[0])) is None
        w = s.weights(trial_key(trials[1]))
        rec = next(r for r in s.records() if r["key"] == trial_key(trials[1]))
    assert set(w) == {"w0", "b0", "w1", "b1"} and w["w0"].shape == (1, 784, 4)
    x = torch.from_numpy(small_splits.test_x).float() / 255
    y = torch.from_numpy(small_splits.test_y)
    assert evaluate(w, {"test": (x, y)}, "relu")["test_accuracy"][0] == rec["test_accuracy"]


def test_a_store_from_before_kept_weights_reads_as_none(tmp_path):
    """An older store has no weights table; opened read-only (nothing may be added), it answers None."""
    path = tmp_path / "old.sqlite"
    with Store(path):
        pass
    db = sqlite3.connect(path)
    db.execute("DROP TABLE weights")
    db.commit()
    db.close()
    with Store(path, create=False) as s:
        assert s.weights("anything") is None
