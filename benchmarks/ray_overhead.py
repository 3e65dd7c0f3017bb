"""The Ray backend against the local backend on the same sweep, measured in one run.

    python benchmarks/ray_overhead.py              # 200 trials: 25 learning rates x 4 widths x 2 seeds, 1 epoch

Method: the sweep runs first with the local backend (this process, 2 torch threads), then with a local Ray instance
of two workers (one CPU and one torch thread per task, so two populations train at once), each into a fresh store.
Wall time includes planning, data transfer (the dataset goes into Ray's object store once) and storing results;
Ray's own start-up is timed separately. Overhead per task = (ray - local) / tasks; per trial = (ray - local) / trials.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mlplab.data import load_mnist
from mlplab.runner import run_sweep
from mlplab.sweep import SweepSpec


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="4,8,16,32")
    p.add_argument("--lrs", type=int, default=25)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    import ray

    widths = [int(w) for w in args.widths.split(",")]
    spec = SweepSpec(base={"epochs": 1, "init": "kaiming_uniform"}, grid=True, seeds=args.seeds,
                     axes={"lr": {"logspace": [-3, 0, args.lrs]}, "hidden": widths})
    trials = spec.trials()
    load_mnist()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        local = run_sweep(trials, Path(tmp) / "local.sqlite", progress=False, device="cpu")
        t_local = time.perf_counter() - t
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
        t_start = time.perf_counter() - t
        t = time.perf_counter()
        remote = run_sweep(trials, Path(tmp) / "ray.sqlite", progress=False, device="cpu", backend="ray")
        t_ray = time.perf_counter() - t
        ray.shutdown()
    tasks = remote.populations
    print(f"torch {torch.__version__}, ray {ray.__version__}; {len(trials)} trials in {tasks} populations")
    print(f"{'backend':<28}{'seconds':>9}")
    print(f"{'local (2 threads)':<28}{t_local:>9.1f}")
    print(f"{'ray, 2 workers x 1 thread':<28}{t_ray:>9.1f}   (+ {t_start:.1f} s to start Ray)")
    print(f"ray / local: {t_ray / t_local:.2f}x; overhead per task {(t_ray - t_local) / tasks:+.2f} s, "
          f"per trial {(t_ray - t_local) / len(trials) * 1000:+.0f} ms")
    assert local.trained == remote.trained == len(trials)


if __name__ == "__main__":
    main()
