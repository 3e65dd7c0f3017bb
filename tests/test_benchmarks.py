"""The benchmark scripts still run (smoke runs with tiny settings; their timings are not checked here)."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script, *args, tmp_path):
    out = tmp_path / "out.json"
    p = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout, json.loads(out.read_text())


def test_gpu_benchmark_smoke_on_the_cpu(tmp_path):
    stdout, data = _run("gpu.py", "--device", "cpu", "--quick", "--skip-study", tmp_path=tmp_path)
    assert "CPU" in data["device"] and set(data["ceilings_tflops"]) == {"fp32", "bf16"}
    assert all(v > 0 for v in data["ceilings_tflops"].values())
    assert [r["precision"] for r in data["populations"]] == ["fp32", "bf16"]
    assert all(r["tflops"] > 0 and 0 < r["best_test_accuracy"] <= 1 for r in data["populations"])
    assert "of ceiling" in stdout


def test_frontier_benchmark_smoke(tmp_path):
    stdout, data = _run("frontier.py", "--presets", "fast", "--seeds", "2", "--epochs", "1", tmp_path=tmp_path)
    runs = data["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and all(r["config"]["epochs"] == 1 for r in runs)
    assert all(r["test_accuracy"] > 0.9 for r in runs)
    assert data["fresh_process"]["test_accuracy"] > 0.9
    assert "fast" in stdout and "±" in stdout


def test_tune_benchmark_smoke(tmp_path):
    stdout, data = _run("tune.py", "--quick", "--threads", "1", "--repeats", "2", "--refit", "2", "--per-round", "3",
                        "--startup-trials", "2", tmp_path=tmp_path)
    assert data["settings"]["per_round"] == 3 and data["settings"]["startup_trials"] == 2
    assert "rounds of 3, no pruning before 2 trials completed" in stdout
    for space in ("fixed", "width"):
        runs = data["optuna"][space]["runs"]
        assert [r["seed"] for r in runs] == [0, 1]
        for r in runs:
            for how in ("mlplab", "optuna_nn"):
                # 6 trials of 2 epochs of 10 steps on 2,000 images (Optuna's side draws its init unseeded): the
                # best can stay below 50%; above twice chance (10 classes) it learned something
                assert 0.2 < r[how]["best_val_accuracy"] <= 1 and r[how]["model_epochs"] > 0
                assert r[how]["complete"] + r[how]["pruned"] == data["settings"]["trials"]
                refit = r[how]["refit"]  # the chosen setting retrained with 2 fresh seeds
                assert refit["seeds"] == 2 and len(refit["val"]) == 2 and all(0 < v <= 1 for v in refit["val"])
                assert min(refit["val"]) <= refit["val_mean"] <= max(refit["val"])
        assert data["optuna"][space]["median_mlplab_seconds"] > 0
    h = data["halving"]
    assert h["halving"]["model_epochs"] < h["grid"]["model_epochs"] == h["grid"]["trials"] * data["settings"][
        "grid_epochs"]
    assert set(data["pbt"]) >= {"fixed", "pbt", "difference_points"}
    assert "median of 2:" in stdout and "chosen settings retrained (2 fresh seeds each" in stdout
    assert "mlplab tune vs Optuna + torch.nn" in stdout and "PBT vs the best fixed member" in stdout


def test_tune_benchmark_precisions(tmp_path):
    """--precision is mlplab's [base] precision (every trial's config says bf16); --optuna-precision the torch.nn
    side's; both are recorded and printed."""
    import optuna

    stdout, data = _run("tune.py", "--quick", "--threads", "1", "--only", "optuna", "--space", "fixed", "--refill",
                        "--precision", "bf16", "--optuna-precision", "bf16", "--out", str(tmp_path / "storages"),
                        tmp_path=tmp_path)
    assert (data["settings"]["precision"], data["settings"]["optuna_precision"]) == ("bf16", "bf16")
    assert "precision: mlplab bf16, torch.nn bf16" in stdout
    run = data["optuna"]["fixed"]["runs"][0]
    assert all(0.2 < run[side]["best_val_accuracy"] <= 1 for side in ("mlplab", "optuna_nn"))
    url = f"sqlite:///{tmp_path / 'storages' / 'optuna' / 'mlplab-fixed-0.sqlite3'}"
    trials = optuna.load_study(study_name="mlplab-fixed", storage=url).trials
    assert trials and all(t.user_attrs["config"]["precision"] == "bf16" for t in trials)


def test_threads_benchmark_smoke(tmp_path):
    stdout, data = _run("threads.py", "--quick", tmp_path=tmp_path)
    rows = data["rows"]
    assert [(r["busy"], r["threads"]) for r in rows] == [(b, t) for b in (0, 1) for t in ("1", "auto")]
    assert all(r["seconds"] > 0 and r["used_threads"] >= 1 for r in rows)
    assert [r["used_threads"] for r in rows if r["threads"] != "auto"] == [1, 1]
    assert "vs 1 alone" in stdout
