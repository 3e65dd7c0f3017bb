"""Hardening (issue 11): bad and hostile input, hosts that come and go, and results that must not drift. Each test
names the class of the issue it covers."""

import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mlplab.runner as runner
from mlplab import TrainConfig
from mlplab import store as store_mod
from mlplab.cli import main, sort_rows
from mlplab.files import atomic_write, check_regular_target
from mlplab.store import Store, trial_key


def _run(*args, timeout=300, env=None, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "mlplab", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})})


def _one_line_exit_2(code, capsys, *needles):
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def local_splits(small_splits, monkeypatch):
    """Sweeps in these tests train on 2,000 real MNIST images instead of 50,000 (what is tested is the store)."""
    monkeypatch.setattr(runner, "_splits", lambda cache, c, put=None: small_splits)
    return small_splits


TINY = [TrainConfig(hidden=(4,), epochs=1, lr=lr, seed=s, init="xavier_uniform") for lr in (0.05, 0.1) for s in (0, 1)]


# -- 1. unbounded plans -------------------------------------------------------------------------------------------

HUGE_SPECS = [
    ("[base]\nepochs = 1\n[sweep]\nseeds = 1000000000\n", "seeds = 1000000000 is more than the 50000 trials"),
    ("[base]\nepochs = 1\n[axes]\nlr = { logspace = [-3, 0, 1000] }\nseed = { linspace = [0, 999, 1000] }\n"
     "[sweep]\ngrid = true\n", "plans 1000000 trials (1000 lr x 1000 seed"),
    ("[axes]\nlr = { linspace = [0.1, 1, 1000000000] }\n", "axis lr: linspace count 1000000000 is more than"),
    ("[axes]\nhidden = { pow2 = [0, 20000] }\n", "axis hidden: pow2 = [first, last] needs"),
    ("[axes]\nlr = { logspace = [0, 400, 3] }\n", "axis lr: non-finite value"),
    ("[axes]\ndepth = [1000000000]\n", "depth must be an integer in [0, 1000]"),
    ("[axes]\nhidden = { pow2 = [40, 41] }\n", "hidden [1099511627776] (a 784-1099511627776-10 MLP"),
]


@pytest.mark.parametrize("text, message", HUGE_SPECS, ids=[m for _, m in HUGE_SPECS])
def test_unbounded_plans_are_refused_at_once_naming_the_setting(tmp_path, capsys, text, message):
    spec = tmp_path / "huge.toml"
    spec.write_text(text)
    t = time.perf_counter()
    code = main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite")])
    assert time.perf_counter() - t < 20
    _one_line_exit_2(code, capsys, message)
    assert not (tmp_path / "s.sqlite").exists()


def test_a_model_larger_than_memory_is_refused_before_allocating(capsys):
    t = time.perf_counter()
    err = _one_line_exit_2(main(["train", "--hidden", "100000,100000"]), capsys, "hidden [100000, 100000]",
                           "for one model, more than the memory available")
    assert time.perf_counter() - t < 10, err


def test_a_model_larger_than_the_memory_budget_is_refused(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("[base]\nepochs = 1\nhidden = [4096, 4096]\n")
    _one_line_exit_2(main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite"), "--memory-budget", "0.01"]),
                     capsys, "more than the memory budget of 0.01 GiB")


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_memory_budget_must_be_finite_and_positive(tmp_path, capsys, value):
    spec = tmp_path / "s.toml"
    spec.write_text("[base]\nepochs = 1\nhidden = [4]\n")
    _one_line_exit_2(main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite"), "--memory-budget", value]),
                     capsys, "--memory-budget must be a number of GB > 0")


# -- 2. claims are leases -----------------------------------------------------------------------------------------


def test_a_live_lease_is_respected_and_an_expired_one_taken_over(tmp_path):
    path = tmp_path / "s.sqlite"
    a, b = Store(path, lease_seconds=1.0), Store(path)
    assert a.claim(TINY) == TINY
    assert b.claim(TINY) == []  # a's lease is live (and a, this very process, still runs)
    time.sleep(1.2)
    assert b.claim(TINY) == TINY  # expired: taken over
    from mlplab.train import train_population

    results = train_population(TINY[:1], device="cpu", splits=_small())
    assert a.finish(results) == 0  # a lost its lease: its late result is not written
    assert b.finish(results, threads=1) == 1
    assert a.fail(TINY[1:2], "x") == 0 and b.fail(TINY[1:2], "boom") == 1
    row = b.records(("done",))[0]
    assert row["threads"] == 1 and row["numerics"] == store_mod.NUMERICS_VERSION and row["owner"] is None


def _small():
    from mlplab.data import load_mnist, make_splits

    ds = load_mnist()
    s = make_splits(ds)
    from mlplab.data import Splits

    return Splits("small", s.train_x[:1000], s.train_y[:1000], s.val_x[:200], s.val_y[:200], s.test_x[:200],
                  s.test_y[:200])


def test_a_claim_from_another_host_expires_instead_of_living_forever(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.claim(TINY)
    db = sqlite3.connect(path)
    # Another host's sweep (the old owner format had no lease: it was "alive forever")
    db.execute("UPDATE trials SET owner='otherhost:4242:feed', owner_process='0000000000000000:4242:77', "
               "lease_until=?", (time.time() + 3600,))
    db.commit()
    with Store(path) as s:
        assert s.claim(TINY) == []  # a live lease on another machine is never judged by its PID
        assert s.held_elsewhere(TINY) == TINY
    db.execute("UPDATE trials SET lease_until=?", (time.time() - 1,))
    db.commit()
    with Store(path) as s:
        assert s.claim(TINY) == TINY


def test_a_reused_pid_does_not_keep_a_dead_owner_alive(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.claim(TINY)
        machine = s.process.split(":")[0]
    db = sqlite3.connect(path)
    # Our own PID, but a process that started at another time: the PID was reused, the owner is gone.
    db.execute("UPDATE trials SET owner='host:1:dead', owner_process=?, lease_until=?",
               (f"{machine}:{os.getpid()}:1", time.time() + 3600))
    db.commit()
    with Store(path) as s:
        assert s.claim(TINY) == TINY


def test_the_heartbeat_keeps_a_lease_alive(tmp_path):
    path = tmp_path / "s.sqlite"
    a, b = Store(path, lease_seconds=0.6), Store(path)
    a.claim(TINY)
    with a.heartbeat(every=0.1):
        time.sleep(1.2)
        assert b.claim(TINY) == []  # renewed all along
    time.sleep(0.8)
    assert b.claim(TINY) == TINY


def test_a_sweep_waits_for_trials_held_elsewhere_then_takes_them_over(tmp_path, local_splits, monkeypatch):
    monkeypatch.setattr(runner, "POLL_SECONDS", 0.1)
    path = tmp_path / "s.sqlite"
    other = Store(path, lease_seconds=5)  # a sweep that claimed two trials, then stopped renewing (no heartbeat)
    other.claim(TINY[:2])
    report = runner.run_sweep(TINY, path, progress=False)
    assert (report.trained, report.failed, report.waited) == (4, 0, 2)
    with Store(path, create=False) as s:
        assert s.counts() == {"done": 4}


# -- 3 and 8. the study's kernel: a private folder, the process environment untouched -----------------------------


def test_the_kernelspec_is_private_followed_nowhere_and_the_environment_is_restored(tmp_path):
    import nbformat.v4 as nbf

    from mlplab import study

    planted = Path(tempfile.gettempdir()) / f"mlplab-kernels-{os.getuid()}"  # the old predictable path
    made = not planted.exists() and not planted.is_symlink()
    if made:
        planted.symlink_to(tmp_path)
    try:
        env = dict(os.environ)
        with study._private_kernelspec() as (root, name):
            mode = stat.S_IMODE(os.stat(root).st_mode)
            assert mode == 0o700 and Path(root, name, "kernel.json").is_file()
            assert not Path(root).is_symlink() and Path(root) != planted
        assert not Path(root).exists()
        nb = study.execute(nbf.new_notebook(cells=[nbf.new_code_cell("import sys; print(sys.executable)")]),
                           cwd=tmp_path)
        assert nb.cells[0].outputs[0]["text"].strip() == sys.executable  # this very interpreter
        assert dict(os.environ) == env  # JUPYTER_PATH and everything else as before
        assert list(tmp_path.iterdir()) == []  # nothing written through the planted link
    finally:
        if made:
            planted.unlink()


def test_a_ray_runtime_started_by_a_sweep_is_shut_down(tmp_path, local_splits):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray runtime is already up in this process")
    report = runner.run_sweep(TINY[:2], tmp_path / "s.sqlite", progress=False, backend="ray", threads=1)
    assert report.trained == 2
    assert not ray.is_initialized()


def test_process_wide_settings_are_restored_or_documented(tmp_path, local_splits):
    from mlplab.device import deterministic_mode

    before = torch.get_num_threads()
    runner.run_sweep(TINY[:1], tmp_path / "s.sqlite", progress=False, threads=1)
    assert torch.get_num_threads() == before
    had = os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    try:
        with deterministic_mode():
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    finally:
        if had is not None:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = had
    code = "from mlplab.device import keep_freed_memory; print(keep_freed_memory())"
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MLPLAB_KEEP_FREED_MEMORY": "0"})
    assert off.stdout.strip() == "False"  # the one documented change can be turned off


# -- 4. writing onto things that are not regular files ------------------------------------------------------------


def test_save_onto_a_fifo_or_device_is_refused_and_left_alone(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _one_line_exit_2(main(["train", "--hidden", "4", "--epochs", "1", "--save", str(fifo)]), capsys,
                     "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(ValueError, match="not a regular file"):
        check_regular_target(os.devnull)
    with pytest.raises(ValueError, match="not a regular file"), atomic_write(fifo) as f:
        f.write(b"x")


def test_atomic_writes_keep_umask_permissions_and_symlinks(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("a")
        assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o640  # not mkstemp's 0600
    finally:
        os.umask(old)
    (tmp_path / "kept.txt").write_text("old")
    os.chmod(tmp_path / "kept.txt", 0o604)
    (tmp_path / "link.txt").symlink_to(tmp_path / "kept.txt")
    with atomic_write(tmp_path / "link.txt", "w") as f:
        f.write("new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "kept.txt").read_text() == "new"
    assert stat.S_IMODE(os.stat(tmp_path / "kept.txt").st_mode) == 0o604


def test_results_csv_to_a_missing_folder_or_a_folder_is_one_line(tmp_path, local_splits, capsys):
    runner.run_sweep(TINY[:1], tmp_path / "s.sqlite", progress=False)
    _one_line_exit_2(main(["results", str(tmp_path / "s.sqlite"), "--csv", str(tmp_path / "no" / "r.csv")]),
                     capsys, "does not exist")
    _one_line_exit_2(main(["results", str(tmp_path / "s.sqlite"), "--csv", str(tmp_path)]), capsys, "is a folder")
    assert main(["results", str(tmp_path / "s.sqlite"), "--csv", str(tmp_path / "r.csv")]) == 0
    assert "threads" in (tmp_path / "r.csv").read_text().splitlines()[0]


# -- 5. stores that cannot be read the normal way -----------------------------------------------------------------


def _reader_prefix():
    """Run a command without root's power to ignore file permissions (as an ordinary user would be)."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop the right to ignore permissions")
    caps = "-dac_override,-dac_read_search"
    return ("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}")


def test_a_read_only_store_in_a_read_only_folder_is_read_and_left_untouched(tmp_path, local_splits):
    folder = tmp_path / "ro"
    folder.mkdir()
    runner.run_sweep(TINY, folder / "s.sqlite", progress=False)
    before = (folder / "s.sqlite").read_bytes()
    os.chmod(folder / "s.sqlite", 0o444)
    os.chmod(folder, 0o555)
    try:
        p = _run("results", str(folder / "s.sqlite"), prefix=_reader_prefix())
        assert p.returncode == 0, p.stderr
        assert len(p.stdout.strip().splitlines()) == 1 + len(TINY)
        spec = tmp_path / "s.toml"
        spec.write_text("[base]\nepochs = 1\nhidden = [4]\n")
        p = _run("sweep", str(spec), "--store", str(folder / "s.sqlite"), prefix=_reader_prefix())
        assert p.returncode == 2 and "not writable" in p.stderr and "not an mlplab store" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    finally:
        os.chmod(folder, 0o755)
    assert (folder / "s.sqlite").read_bytes() == before
    assert sorted(x.name for x in folder.iterdir()) == ["s.sqlite"]


def test_a_damaged_store_is_one_true_sentence(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.claim([TrainConfig(hidden=(4,), lr=0.001 * (i + 1)) for i in range(300)])
    with open(path, "r+b") as f:
        f.seek(3 * 4096)
        f.write(b"\xff" * 4096)
    _one_line_exit_2(main(["results", str(path)]), capsys, "is damaged", ".recover")


# -- 6. other tracebacks and hangs --------------------------------------------------------------------------------


def test_a_fifo_as_the_cache_file_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "mnist-v1.npz")
    code = "from mlplab.data import load_mnist; ds = load_mnist(); print(int(ds.train_labels[0]))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MLPLAB_CACHE": str(tmp_path)})
    assert p.returncode == 0 and p.stdout.strip() == "5", p.stderr
    assert stat.S_ISFIFO(os.stat(tmp_path / "mnist-v1.npz").st_mode)  # left alone, not replaced


def test_ray_address_where_nothing_listens_fails_at_once(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "s.toml"
    spec.write_text("[base]\nepochs = 1\nhidden = [4]\n")
    t = time.perf_counter()
    code = main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite"), "--backend", "ray", "--address",
                 f"127.0.0.1:{port}"])
    assert time.perf_counter() - t < 15
    _one_line_exit_2(code, capsys, "nothing answers there")
    assert not (tmp_path / "s.sqlite").exists()


def test_two_studies_on_one_out_folder(tmp_path):
    from mlplab.study import out_lock

    with out_lock(tmp_path):
        t = time.perf_counter()
        p = _run("study", "--quick", "--out", str(tmp_path), "--device", "cpu")
        assert time.perf_counter() - t < 60
    assert p.returncode == 2 and "another mlplab study is writing to" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["study", "--seeds", "100000000"], "seeds = 100000000 is more than"),
    (["train", "--threads", "0"], "--threads must be between 1 and"),
    (["train", "--threads", "many"], "--threads must be a count"),
    (["sweep", "SPEC", "--store", "STORE", "--threads", "-2"], "--threads must be between 1 and"),
])
def test_more_bad_input_is_one_line(tmp_path, capsys, args, message):
    spec = tmp_path / "s.toml"
    spec.write_text("[base]\nepochs = 1\nhidden = [4]\n")
    args = [str(spec) if a == "SPEC" else str(tmp_path / "s.sqlite") if a == "STORE" else a for a in args]
    if args[0] == "study":
        args += ["--out", str(tmp_path / "out")]
    _one_line_exit_2(main(args), capsys, message)
    assert not (tmp_path / "s.sqlite").exists()


# -- 7. numeric drift: cache fingerprint, numerics version, git commit --------------------------------------------


@pytest.mark.parametrize("damage", ["shifted labels", "reordered images"])
def test_a_relabelled_or_reordered_cache_is_rebuilt(tmp_path, mnist, capsys, damage):
    from mlplab import data

    tr_x, tr_y = mnist.train_images.copy(), mnist.train_labels.copy()
    if damage == "shifted labels":
        tr_y = np.roll(tr_y, 1)  # same label counts, every image relabelled
    else:
        tr_x[[0, 1]], tr_y[[0, 1]] = tr_x[[1, 0]], tr_y[[1, 0]]  # same sums, same pairs, other order
    bad = data.Dataset("mnist", tr_x, tr_y, mnist.test_images, mnist.test_labels)
    data._write_cache(bad, data._cache_path(tmp_path))
    ds = data.load_mnist(cache=tmp_path)
    assert "rebuilding the MNIST cache" in capsys.readouterr().err
    np.testing.assert_array_equal(ds.train_labels, mnist.train_labels)
    np.testing.assert_array_equal(ds.train_images, mnist.train_images)
    np.testing.assert_array_equal(data.load_mnist(cache=tmp_path).train_labels, mnist.train_labels)  # fixed


def test_results_of_other_numerics_are_not_mixed_in(tmp_path, local_splits, monkeypatch):
    path = tmp_path / "s.sqlite"
    first = runner.run_sweep(TINY, path, progress=False)
    assert first.trained == 4
    keys_v1 = {trial_key(t) for t in TINY}
    v = store_mod.NUMERICS_VERSION
    monkeypatch.setattr(store_mod, "NUMERICS_VERSION", v + 1)
    assert {trial_key(t) for t in TINY}.isdisjoint(keys_v1)  # a bumped version is a new trial
    again = runner.run_sweep(TINY, path, progress=False)
    assert (again.trained, again.skipped) == (4, 0)
    with Store(path, create=False) as s:
        assert sorted(r["numerics"] for r in s.records()) == [v] * 4 + [v + 1] * 4


def test_git_commit_is_mlplabs_own_checkout_only(tmp_path):
    here = Path(store_mod.__file__).resolve().parent
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True)
    if top.returncode == 0 and (Path(top.stdout.strip()) / "src" / "mlplab").resolve() == here:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
        assert store_mod.git_commit() == head
    # An installed copy inside some other repository records no commit (it used to record that repository's).
    other = tmp_path / "project"
    shutil.copytree(here, other / "lib" / "mlplab", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "other"], cwd=other, check=True)
    p = subprocess.run([sys.executable, "-c", "import mlplab.store as s; print(s.git_commit())"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(other / "lib")}, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "None"


# -- 10. threads --------------------------------------------------------------------------------------------------


def test_threads_are_set_stored_and_auto_counts_free_cores(tmp_path, local_splits):
    from mlplab.device import parse_threads, usable_cores

    assert 1 <= parse_threads("auto") <= usable_cores()
    assert parse_threads("1") == 1
    runner.run_sweep(TINY[:2], tmp_path / "s.sqlite", progress=False, threads=1)
    with Store(tmp_path / "s.sqlite", create=False) as s:
        assert [r["threads"] for r in s.records()] == [1, 1]
    p = _run("train", "--hidden", "4", "--epochs", "1", "--threads", "1", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["threads"] == 1


# -- 11. smaller ----------------------------------------------------------------------------------------------------


def test_results_sort_any_column():
    rows = [{"seed": s, "hidden": h, "test_accuracy": a, "activation": act}
            for s, h, a, act in [(2, [128], 0.5, "tanh"), (0, [16], None, "relu"), (1, [16, 16], 0.9, "elu")]]
    assert [r["seed"] for r in sort_rows(rows, "seed", descending=False)] == [0, 1, 2]
    assert [r["hidden"] for r in sort_rows(rows, "hidden", descending=False)] == [[16], [128], [16, 16]]
    assert [r["test_accuracy"] for r in sort_rows(rows, "test_accuracy", descending=True)] == [0.9, 0.5, None]
    assert [r["activation"] for r in sort_rows(rows, "activation", descending=False)] == ["elu", "relu", "tanh"]


def test_results_sort_through_the_command(tmp_path, local_splits, capsys):
    trials = [TrainConfig(hidden=(h,), epochs=1, seed=s) for h in (16, 4) for s in (1, 0)]
    runner.run_sweep(trials, tmp_path / "s.sqlite", progress=False)
    capsys.readouterr()
    assert main(["results", str(tmp_path / "s.sqlite"), "--sort", "seed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    seed_col = lines[0].split().index("seed")
    assert [int(x.split()[seed_col]) for x in lines[1:]] == [0, 0, 1, 1]
    assert main(["results", str(tmp_path / "s.sqlite"), "--sort", "hidden", "--reverse"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(x.split()[0]) for x in lines[1:]] == [16, 16, 4, 4]


def test_one_at_a_time_sweeps_train_their_base_point():
    from mlplab.sweep import SweepSpec

    spec = SweepSpec(base={"lr": 0.1, "epochs": 1}, axes={"lr": [0.2, 0.3], "hidden": [[8]]})
    assert [(t.lr, t.hidden) for t in spec.trials()] == [(0.1, (256,)), (0.2, (256,)), (0.3, (256,)), (0.1, (8,))]


@pytest.mark.parametrize("text", ["", "[sweep]\nseeds = 2\n", "[base]\n[axes]\n"])
def test_an_empty_spec_is_refused(tmp_path, capsys, text):
    spec = tmp_path / "empty.toml"
    spec.write_text(text)
    _one_line_exit_2(main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite")]), capsys,
                     "no [base] settings and no [axes]")


# -- 12. progress when piped --------------------------------------------------------------------------------------


def test_a_progress_line_per_population_when_not_a_terminal(tmp_path, local_splits):
    lines = []
    trials = [TrainConfig(hidden=(h,), epochs=1) for h in (2, 3, 4)]
    runner.run_sweep(trials, tmp_path / "s.sqlite", progress=None, log=lines.append)  # pytest's stderr: no tty
    progress = [x for x in lines if x.startswith("[")]
    assert [x.split(",")[0] for x in progress] == ["[1/3 trials", "[2/3 trials", "[3/3 trials"]
    assert all("elapsed, ~" in x and " left" in x for x in progress)
    quiet = []
    runner.run_sweep(trials, tmp_path / "t.sqlite", progress=False, log=quiet.append)
    assert not [x for x in quiet if x.startswith("[")]


# -- 2 and 6. the study: partial results listed, Ctrl-C while the notebook runs -----------------------------------


def test_a_study_with_missing_trials_lists_them_loudly(tmp_path, monkeypatch, capsys):
    from mlplab import study

    def crash(configs, **kw):  # every worker dies: every trial ends up failed
        raise RuntimeError("simulated worker crash")

    monkeypatch.setattr(runner, "train_population", crash)
    monkeypatch.setattr(study, "execute", lambda nb, cwd: nb)  # the notebook's cells are not what is tested here
    info = study.run_study(tmp_path / "out", quick=True, device="cpu", progress=False, log=lambda m: None)
    n = len(study.all_trials(study.experiments(quick=True)))
    assert len(info["missing"]) == n
    err = capsys.readouterr().err
    assert f"WARNING: {n} of {n} trials are missing" in err
    cells = json.loads((tmp_path / "out" / "study.ipynb").read_text())["cells"]
    warning = "".join(cells[1]["source"])
    assert "this report is incomplete" in warning and all(k in warning for k in info["missing"])
    assert "this report is incomplete" in (tmp_path / "out" / "study.html").read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".figures-")]


def test_ctrl_c_while_the_notebook_executes_is_a_clean_interrupt(tmp_path):
    import signal

    marker = tmp_path / "started"
    script = f"""
import sys
from pathlib import Path
import nbformat.v4 as nbf
from mlplab import study
nb = nbf.new_notebook(cells=[nbf.new_code_cell("open({str(marker)!r}, 'w').close(); import time; time.sleep(120)")])
try:
    study.execute(nb, cwd=Path({str(tmp_path)!r}))
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""
    p = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), "the kernel never started"
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and err.strip() == "interrupted", err


def test_an_unreachable_ray_cluster_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """--backend ray --address auto with no cluster running: Ray's ConnectionError becomes one line and exit 2 (sweep
    and tune), not a traceback."""
    ray = pytest.importorskip("ray", reason="the ray extra is part of .[test]")
    if ray.is_initialized():
        pytest.skip("a Ray instance is running in this process")
    from ray._private.services import find_gcs_addresses
    if find_gcs_addresses():  # "auto" falls back to any Ray cluster it finds running on this machine
        pytest.skip("another process runs a Ray cluster on this machine, which --address auto would join")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))  # no record of a cluster started on this machine
    spec = tmp_path / "s.toml"
    spec.write_text("[base]\nepochs = 1\nhidden = [4]\n")
    _one_line_exit_2(main(["sweep", str(spec), "--store", str(tmp_path / "s.sqlite"), "--backend", "ray", "--address",
                           "auto", "--quiet"]), capsys, "could not reach a Ray cluster", "ray start --head")
    tune_spec = tmp_path / "t.toml"
    tune_spec.write_text('[base]\nhidden = [4]\n[search]\nlr = { loguniform = [0.01, 0.1] }\n[tune]\ntrials = 2\n')
    _one_line_exit_2(main(["tune", str(tune_spec), "--storage", f"sqlite:///{tmp_path / 't.db'}", "--backend", "ray",
                           "--address", "auto", "--quiet"]), capsys, "could not reach a Ray cluster")


@pytest.mark.parametrize("argv, needle", [
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum is SGD's"),
    (["--beta1", "0.8"], "--beta1 is Adam's; this run uses --optimizer sgd"),
    (["--gamma", "0.5"], "--gamma is for --schedule step"),
    (["--schedule", "cosine", "--step-size", "2"], "remove --step-size or set --schedule step"),
])
def test_a_flag_the_run_would_ignore_is_refused(capsys, argv, needle):
    """A flag that the chosen optimizer or schedule does not read is an error before training, not silently ignored."""
    _one_line_exit_2(main(["train", "--epochs", "1", *argv]), capsys, needle)
