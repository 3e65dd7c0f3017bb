import csv
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mlplab import TrainConfig
from mlplab.cli import main
from mlplab.runner import run_sweep
from mlplab.store import Store, trial_key
from mlplab.train import TrainResult

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

    monkeypatch.setattr(runner, "_splits", lambda cache, c: small_splits)
    trials = [TrainConfig(hidden=(4,), epochs=1, lr=lr) for lr in (0.05, 0.1, 0.2)]
    run_sweep(trials, tmp_path / "s.sqlite", progress=False)
    assert main(["results", str(tmp_path / "s.sqlite")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["lr", "status", "outcome", "best_epoch", "stopped_epoch", "val_accuracy",
                              "test_accuracy", "train_loss", "seconds"]
    assert len(out) == 4
    for line in out[1:]:  # 1 epoch without early stopping: ran its budget, unless it stayed near chance
        status, outcome, best, stopped, val = line.split()[1:6]
        assert (status, best, stopped) == ("done", "1", "1")
        assert outcome == ("collapsed" if float(val) < 0.2 else "budget")
    vals = [float(line.split()[5]) for line in out[1:]]
    assert vals == sorted(vals, reverse=True)  # chosen on validation: the best validation accuracy first
    csv_path = tmp_path / "r.csv"
    assert main(["results", str(tmp_path / "s.sqlite"), "--csv", str(csv_path)]) == 0
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {"hidden", "lr", "seed", "test_accuracy", "status", "outcome", "best_epoch",
                               "stopped_epoch"} <= set(rows[0])
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


# -- what `mlplab results` shows, and what it leaves behind -----------------------------------------------------


def _table(capsys) -> list[dict]:
    """The rows of the table `mlplab results` printed, as dicts keyed by its header."""
    lines = capsys.readouterr().out.splitlines()
    return [dict(zip(lines[0].split(), line.split())) for line in lines[1:]]


def _planted_store(path, configs_and_results) -> None:
    """A store holding the given (config, TrainResult) pairs, finished as a sweep would finish them."""
    with Store(path) as s:
        s.claim([c for c, _ in configs_and_results])
        assert s.finish([r for _, r in configs_and_results]) == len(configs_and_results)


def _history(val_losses, val_accuracy):
    return [{"epoch": e, "train_loss": 0.5, "val_loss": v, "val_accuracy": val_accuracy, "test_loss": v,
             "test_accuracy": val_accuracy, "seconds": float(e)} for e, v in enumerate(val_losses, 1)]


def test_results_says_how_each_trial_ended(tmp_path, capsys):
    """A collapsed run is `done` in the store; the results table and CSV tell it from a good one (analysis.outcome)
    and give the epoch each run reports and the last it trained."""
    converged = TrainConfig(hidden=(4,), lr=0.01, epochs=10, patience=2)  # best at epoch 2, stopped after 4
    budget = TrainConfig(hidden=(4,), lr=0.02, epochs=3)
    collapsed = TrainConfig(hidden=(4,), lr=0.03, epochs=2)
    diverged = TrainConfig(hidden=(4,), lr=0.04, epochs=3)
    path = tmp_path / "s.sqlite"
    _planted_store(path, [
        (converged, TrainResult(converged, _history([1.0, 0.5, 0.6, 0.7], 0.9), {}, best_epoch=2,
                                outcome="converged")),
        (budget, TrainResult(budget, _history([1.0, 0.8, 0.7], 0.95), {})),
        (collapsed, TrainResult(collapsed, _history([2.3, 2.3], 0.11), {}, outcome="collapsed")),
        (diverged, TrainResult(diverged, _history([float("nan")], float("nan")), {}, diverged=True,
                               diverged_at={"epoch": 1, "step": 7}, outcome="diverged")),
    ])
    assert main(["results", str(path), "--sort", "lr"]) == 0
    rows = _table(capsys)
    assert [(r["status"], r["outcome"], r["best_epoch"], r["stopped_epoch"]) for r in rows] == [
        ("done", "converged", "2", "4"), ("done", "budget", "3", "3"), ("done", "collapsed", "2", "2"),
        ("diverged", "diverged", "-", "1")]
    assert main(["results", str(path), "--sort", "outcome"]) == 0
    assert [r["outcome"] for r in _table(capsys)] == ["budget", "collapsed", "converged", "diverged"]
    assert main(["results", str(path), "--csv", str(tmp_path / "r.csv")]) == 0
    with open(tmp_path / "r.csv") as f:
        by_lr = {float(r["lr"]): r for r in csv.DictReader(f)}
    assert [(by_lr[c.lr]["outcome"], by_lr[c.lr]["best_epoch"], by_lr[c.lr]["stopped_epoch"])
            for c in (converged, budget, collapsed, diverged)] == [
        ("converged", "2", "4"), ("budget", "3", "3"), ("collapsed", "2", "2"), ("diverged", "", "1")]


def _ended_process() -> str:
    """The lease-holder string ("machine:pid:start") of a process on this machine that has ended."""
    import mlplab.store as store_mod

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    start = store_mod._start_time(p.pid)
    p.kill()
    p.wait()
    return f"{store_mod._machine()}:{p.pid}:{start}"


def test_results_shows_trials_of_a_gone_holder_as_stale(tmp_path, capsys):
    """After kill -9 of a sweep, its trials are `stale`, not `running`: the holder has ended or its lease expired
    (the same check that lets the next sweep take them over); a live holder's trials stay `running`."""
    live, dead, expired = (TrainConfig(hidden=(4,), lr=lr) for lr in (0.01, 0.02, 0.03))
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.claim([live, dead, expired])  # held by this (live) process, lease 5 minutes
        s.db.execute("UPDATE trials SET owner_process=? WHERE key=?", (_ended_process(), trial_key(dead)))
        s.db.execute("UPDATE trials SET lease_until=? WHERE key=?", (time.time() - 1, trial_key(expired)))
        assert main(["results", str(path), "--sort", "lr"]) == 0
        assert [r["status"] for r in _table(capsys)] == ["running", "stale", "stale"]
        assert main(["results", str(path), "--csv", str(tmp_path / "r.csv")]) == 0
        with open(tmp_path / "r.csv") as f:
            assert sorted(r["status"] for r in csv.DictReader(f)) == ["running", "stale", "stale"]
        assert s.counts() == {"running": 3}  # shown so; the store itself is unchanged
        assert s.claim([live, dead, expired]) == [live, dead, expired]  # ours and the dead: a sweep takes them


def test_results_leaves_the_folder_as_it_was(tmp_path, capsys):
    """A store copied into a new folder and read by `mlplab results` (table or CSV elsewhere): the folder gains no
    -wal or -shm file and the store's bytes do not change; the read-only connection refuses writes."""
    made = tmp_path / "made" / "s.sqlite"
    with Store(made) as s:
        s.claim([TrainConfig(hidden=(4,), lr=lr) for lr in (0.01, 0.02)])
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "s.sqlite").write_bytes(made.read_bytes())
    before = (folder / "s.sqlite").read_bytes()
    assert main(["results", str(folder / "s.sqlite")]) == 0
    assert len(_table(capsys)) == 2
    assert main(["results", str(folder / "s.sqlite"), "--csv", str(tmp_path / "r.csv")]) == 0
    assert sorted(x.name for x in folder.iterdir()) == ["s.sqlite"]
    assert (folder / "s.sqlite").read_bytes() == before
    with Store(folder / "s.sqlite", create=False) as s, pytest.raises(sqlite3.OperationalError, match="readonly"):
        s.db.execute("DELETE FROM trials")
    assert sorted(x.name for x in folder.iterdir()) == ["s.sqlite"]


def test_results_leaves_the_side_files_of_an_open_store_to_their_owner(tmp_path, capsys):
    """While a sweep has the store open, `mlplab results` reads it and leaves its -wal and -shm alone."""
    path = tmp_path / "s.sqlite"
    writer = Store(path)
    writer.claim([TrainConfig(hidden=(4,))])
    side = sorted(x.name for x in tmp_path.iterdir())
    assert side == ["s.sqlite", "s.sqlite-shm", "s.sqlite-wal"]
    assert main(["results", str(path)]) == 0
    assert [r["status"] for r in _table(capsys)] == ["running"]
    assert sorted(x.name for x in tmp_path.iterdir()) == side
    writer.close()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.sqlite"]
