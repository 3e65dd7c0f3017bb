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
    (["--save", "/no/such/folder/m.pt"], "folder /no/such/folder does not exist"),
    (["--device", "quantum"], "unknown device 'quantum'; choose one of: auto, cpu, cuda, mps"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
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
