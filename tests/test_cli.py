import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_idx

from mlplab.cli import main


def run(*args, timeout=300):
    """The real command in a subprocess (as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "mlplab", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "error"})


BAD = [
    (["--activation", "swish"], "unknown activation 'swish'; choose one of: relu"),
    (["--hidden", "0"], "hidden sizes must be >= 1"),
    (["--hidden", "-5"], "hidden sizes must be >= 1"),
    (["--hidden", "12,abc"], "hidden must be comma-separated positive integers"),
    (["--init", "orthogonal"], "unknown init 'orthogonal'"),
    (["--init", "uniform:big"], "init must look like NAME or NAME:SCALE"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'; choose one of: sgd, adam, adamw"),
    (["--schedule", "sometimes"], "unknown schedule 'sometimes'"),
    (["--lr", "0"], "lr must be > 0, got 0"),
    (["--lr", "-0.1"], "lr must be > 0, got -0.1"),
    (["--lr", "nan"], "lr must be finite"),
    (["--lr", "inf"], "lr must be finite"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
    (["--batch-size", "50001"], "batch_size must be <= the 50000 training images, got 50001"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--epochs", "1.5"], "argument --epochs: invalid int value"),
    (["--data", "/no/such/folder"], "/no/such/folder: no such folder"),
    (["--data", "/no/such/folder"], "run python -c \"import mlplab.idx; mlplab.idx.download_idx(NAME, "
                                    "'/no/such/folder')\" with NAME one of 'mnist', 'fashion-mnist', 'kmnist'"),
    (["--save", "/no/such/folder/m.pt"], "folder /no/such/folder does not exist"),
    (["--device", "quantum"], "unknown device 'quantum'; choose one of: auto, cpu, cuda, mps"),
    (["--frobnicate"], "train: unrecognized arguments: --frobnicate (mlplab train --help lists the options)"),
    (["--hiden", "256"], "train: unrecognized arguments: --hiden 256; did you mean --hidden? (mlplab train --help"),
    (["--bias_init=same"], "unrecognized arguments: --bias_init=same; did you mean --bias-init?"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(["train", *args]))
    assert e.value.code == 2
    out = capsys.readouterr()
    err = out.err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert out.out == ""


def test_bad_input_through_the_real_command():
    p = run("train", "--activation", "swish")
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "mlplab train: unknown activation 'swish'; choose one of: relu, leaky_relu, elu, gelu, tanh, sigmoid, "
        "softplus, sin, identity")
    p = run("train", "--hidden", "x")
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_json_output_and_save(tmp_path):
    path = tmp_path / "m.pt"
    p = run("train", "--hidden", "32", "--epochs", "1", "--lr", "0.1", "--init", "xavier_uniform", "--json",
            "--save", str(path))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)  # exactly one JSON object on stdout
    for key in ("test_accuracy", "val_accuracy", "train_loss", "epochs", "seconds", "diverged", "config"):
        assert key in out
    assert out["epochs"] == 1 and out["diverged"] is False and out["test_accuracy"] > 0.85
    assert out["config"]["hidden"] == [32] and out["config"]["init"] == "xavier_uniform"
    from mlplab import checkpoint

    params, cfg, metrics = checkpoint.load(path)
    assert cfg.hidden == (32,) and params["w0"].shape == (1, 784, 32)
    assert metrics["test_accuracy"] == out["test_accuracy"]


def test_table_and_diverged_message(capsys):
    assert main(["train", "--hidden", "16", "--activation", "identity", "--init", "xavier_normal", "--lr", "10",
                 "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "diverged: the loss or a gradient became non-finite at epoch 1" in out
    assert main(["train", "--hidden", "none", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "784-10" in out and "test acc" in out and "test accuracy" in out


def test_trains_on_an_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    # A learnable toy task: the label is encoded in which row is bright.
    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 40, (n, 28, 28))
        for i, label in enumerate(y):
            x[i, 2 * label + 3] = 250
        return x, y
    (trx, try_), (tex, tey) = make(600), make(200)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", trx, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", try_, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", tex)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", tey)
    p = run("train", "--data", str(tmp_path), "--val-size", "100", "--hidden", "16", "--init", "xavier_uniform",
            "--epochs", "3", "--batch-size", "50", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["test_accuracy"] > 0.9
    p = run("train", "--data", str(tmp_path), "--val-size", "100", "--batch-size", "501")
    assert p.returncode == 2 and "batch_size must be <= the 500 training images" in p.stderr


def test_a_mistyped_option_names_the_subcommand_and_the_closest_options(tmp_path):
    p = run("results", str(tmp_path / "s.sqlite"), "--sortt", "lr")
    assert p.returncode == 2
    assert p.stderr.strip() == ("mlplab results: unrecognized arguments: --sortt lr; did you mean --sort? "
                                "(mlplab results --help lists the options)")
    p = run("sweep", "a.toml", "b.toml", "--store", str(tmp_path / "s.sqlite"))  # nothing close: no suggestion
    assert p.returncode == 2
    assert p.stderr.strip() == "mlplab sweep: unrecognized arguments: b.toml (mlplab sweep --help lists the options)"
    assert not (tmp_path / "s.sqlite").exists()


def test_the_run_header_shows_bias_init_when_not_the_default():
    from mlplab.cli import _describe, build_parser, config_from_args

    def header(*flags):
        return _describe(config_from_args(build_parser().parse_args(["train", *flags])), "cpu")

    assert "init uniform:0.01, bias init same, sgd" in header("--bias-init", "same")
    assert "bias init" not in header() and "bias init" not in header("--bias-init", "zeros")


def test_the_download_hint_names_the_real_function():
    """The hint for a missing IDX folder calls download_idx(NAME, DIR) with names it knows."""
    import inspect

    from mlplab import idx

    assert list(inspect.signature(idx.download_idx).parameters)[:2] == ["name", "directory"]
    hint = idx.how_to_get(idx.Path("data"))
    assert "mlplab.idx.download_idx(NAME, 'data')" in hint
    assert all(repr(name) in hint for name in idx.KNOWN_MD5)


def test_results_given_a_folder_lists_the_stores_it_holds(tmp_path, capsys):
    from mlplab.store import Store

    folder = tmp_path / "runs"
    folder.mkdir()
    assert main(["results", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mlplab results: {folder} is a folder; it holds no *.sqlite store; give a store's file (one that "
                   "`mlplab sweep` or `mlplab study` wrote)")
    Store(folder / "lr.sqlite").close()
    Store(folder / "width.sqlite").close()
    (folder / "notes.sqlite").write_text("not a database")
    assert main(["results", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mlplab results: {folder} is a folder; give one of the stores it holds: {folder / 'lr.sqlite'}, "
                   f"{folder / 'width.sqlite'}")
    assert main(["results", str(folder / "notes.sqlite")]) == 2  # results only reads: no "new path" to suggest
    err = capsys.readouterr().err.strip()
    assert err.endswith("is not an mlplab store (not an SQLite file); give an existing store"), err


def test_results_into_a_closed_pipe_stops_quietly(tmp_path):
    """`mlplab results S | head -1`: the reader leaves after one line; mlplab must end without a traceback. 3,000
    claimed trials print far more than a pipe holds, so the write after the reader left does fail."""
    from mlplab import TrainConfig
    from mlplab.store import Store

    with Store(tmp_path / "s.sqlite") as store:
        store.claim([TrainConfig(hidden=(8,), lr=0.001 * (i + 1), epochs=1) for i in range(3000)])
    proc = subprocess.Popen([sys.executable, "-m", "mlplab", "results", str(tmp_path / "s.sqlite"), "--limit", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().split()[0] == b"lr"
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
