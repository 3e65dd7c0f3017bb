import math

import pytest

from mlplab.cli import main
from mlplab.sweep import SweepSpec, expand_axis

SPEC = """
[base]
hidden = [8]
epochs = 1
batch_size = 128
[axes]
lr = { logspace = [-3, 0.5, 32] }
activation = ["relu", "tanh"]
[sweep]
seeds = 2
grid = false
"""


def test_the_documented_spec(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    spec = SweepSpec.from_toml(path)
    lrs = spec.axes["lr"]
    assert len(lrs) == 32 and lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(10**0.5)
    assert all(b / a == pytest.approx(lrs[1] / lrs[0]) for a, b in zip(lrs, lrs[1:]))
    trials = spec.trials()  # one at a time: the base point, 32 lrs + 2 activations (relu is the base), x 2 seeds
    assert len(spec.points()) == 35 and spec.points()[0] == {}
    assert len(trials) == len(set(trials)) == 68
    assert {t.seed for t in trials} == {0, 1}
    assert all(t.hidden == (8,) and t.epochs == 1 for t in trials)


def test_one_at_a_time_drops_duplicate_configs():
    # activation relu at the base lr is the same config as lr 0.1 with the base activation
    spec = SweepSpec(base={"lr": 0.1}, axes={"lr": [0.1, 0.2], "activation": ["relu", "tanh"]})
    assert [(t.lr, t.activation) for t in spec.trials()] == [(0.1, "relu"), (0.2, "relu"), (0.1, "tanh")]


def test_grid_and_ranges():
    spec = SweepSpec(base={"epochs": 1}, axes={"lr": [0.1, 0.2], "hidden": {"pow2": [0, 3]}}, grid=True, seeds=3)
    assert spec.axes["hidden"] == [1, 2, 4, 8]
    assert len(spec.trials()) == 2 * 4 * 3
    assert expand_axis("x", {"linspace": [0, 1, 5]}) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert expand_axis("x", {"logspace": [-4, 1, 6]})[0] == 1e-4


def test_derived_depth_and_width_axes():
    spec = SweepSpec(base={"hidden": [64]}, axes={"depth": [0, 1, 3]})  # the base point first, then the axis
    assert [t.hidden for t in spec.trials()] == [(64,), (), (64, 64, 64)]
    spec = SweepSpec(base={"hidden": [64, 64]}, axes={"width": [1, 4096]})
    assert [t.hidden for t in spec.trials()] == [(64, 64), (1, 1), (4096, 4096)]


def test_init_axis_brings_its_scale():
    spec = SweepSpec(base={"init": "uniform:0.05"}, axes={"init": ["normal:0.1", "kaiming_normal", "zeros"]})
    got = [(t.init, t.init_scale) for t in spec.trials()]
    assert got == [("uniform", 0.05), ("normal", 0.1), ("kaiming_normal", 1.0), ("zeros", 0.0)]
    assert SweepSpec(base={"init": "uniform:0.05"}).trials()[0].init_scale == 0.05


BAD = [
    ("[base]\nlearning_rate = 0.1\n", "unknown key 'learning_rate' in [base]"),
    ("[axes]\nwidthh = [1, 2]\n", "unknown axis 'widthh' (did you mean 'width'?)"),
    ("[axes]\nlr = []\n", "axis lr has no values"),
    ("[axes]\nlr = { linspace = [0.1, 1, 0] }\n", "count >= 1"),
    ("[axes]\nlr = { geomspace = [1, 2, 3] }\n", "unknown range 'geomspace'"),
    ("[axes]\nlr = [0.1, \"fast\"]\n", "lr must be a number, got 'fast'"),
    ("[axes]\nlr = [0.1, -1.0]\n", "lr must be > 0, got -1.0"),
    ("[axes]\nhidden = [8, 0]\n", "hidden sizes must be >= 1"),
    ("[base]\nactivation = \"swish\"\n", "unknown activation 'swish'"),
    ("[sweep]\nseeds = 0\n", "seeds must be an integer >= 1, got 0"),
    ("[sweep]\nsedes = 2\n", "unknown key(s) ['sedes'] in [sweep]"),
    ("[sweeps]\nseeds = 2\n", "unknown section(s) ['sweeps']"),
    ("[axes\nlr = 1\n", "not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m for _, m in BAD])
def test_bad_specs_are_one_line_errors_and_write_nothing(tmp_path, capsys, text, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    store = tmp_path / "runs" / "s.sqlite"
    assert main(["sweep", str(spec), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(spec) in err, err
    assert len(err.splitlines()) == 1
    assert not store.exists() and not store.parent.exists()


def test_a_file_that_is_not_a_store_is_refused_untouched(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("[base]\nepochs = 1\nhidden = [4]\n")
    other = tmp_path / "notes.txt"
    other.write_text("my notes")
    assert main(["sweep", str(spec), "--store", str(other)]) == 2
    assert "is not an mlplab store" in capsys.readouterr().err
    assert other.read_text() == "my notes"
    import sqlite3

    foreign = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    before = foreign.read_bytes()
    assert main(["results", str(foreign)]) == 2
    assert "SQLite file but not an mlplab store" in capsys.readouterr().err
    assert foreign.read_bytes() == before
    assert main(["results", str(tmp_path / "missing.sqlite")]) == 2


def test_logspace_values_are_clean_decimals():
    vals = expand_axis("lr", {"logspace": [-4, 1, 6]})
    assert vals == [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]
    assert all(math.isfinite(v) for v in vals)
