"""Populations vs one at a time: seconds per epoch of M MLPs trained together as one population, and one by one.

    python benchmarks/population.py                   # 5 cases x 2 data orders, best of 3 repeats (~5 min, 2 cores)
    python benchmarks/population.py --quick           # 2 small cases, 1 repeat (~20 s)
    python benchmarks/population.py --order shared --repeats 5 --json population.json

Method: for each (M, H) the same M trials (784-H-10, ReLU, SGD, batch 128, 1 epoch on MNIST's 50,000 training
images; model m has seed m and lr geomspace(0.01, 0.5, M)[m]) train once as ONE population (`train_population`) and
once one at a time (`train` per config), side by side in each repeat after a warm-up run. Times are training only
(`history[-1]["seconds"]`, evaluation excluded); each column is the best over repeats, and the speedup range is the
min-max of the per-repeat ratios. For M > --sample, only --sample evenly spaced models are trained one at a time and
their total is scaled by M / sample (marked `*`). Data order "per-seed" is TrainConfig's default (model m shuffles
with its own seed m, so the population gathers M batches per step); "shared" sets data_seed = 0 for all, so every
model reads the same batch and the first layer is one product for all models (see `mlp.linear`). GFLOP/s counts the
matmul FLOPs of the population's epoch (`_common.mlp_flops_per_epoch`) over its training time; the ceiling is the
best observed (128, 784) @ (784, M*H) float32 product in the same run.

Measured on the 2-core CPU (torch 2.13, best of 3 repeats, BENCHMARKS.md): with a shared data order 27.6x, 12.6x
and 4.5x at H = 1, 8, 32 (M = 64) and 1.1x at M = 4, H = 1024; with per-seed orders 2.0-2.1x at H <= 32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from _common import busy_cpu_seconds, matmul_ceiling, mlp_flops_per_epoch

import mlplab
from mlplab import TrainConfig, train
from mlplab.data import load_mnist, make_splits
from mlplab.train import train_population

CASES = [(64, 1), (64, 8), (64, 32), (16, 256), (4, 1024)]  # (M, H)
QUICK_CASES = [(16, 8), (4, 256)]
ORDERS = ("per-seed", "shared")


def trial_configs(M: int, H: int, order: str, batch_size: int) -> list[TrainConfig]:
    """The M trials of one case: seed m, lr log-spaced over [0.01, 0.5], one epoch."""
    lrs = np.geomspace(0.01, 0.5, M) if M > 1 else [0.1]
    data_seed = 0 if order == "shared" else None  # None: each model shuffles with its own seed
    return [TrainConfig(hidden=(H,), lr=float(lr), seed=m, data_seed=data_seed, epochs=1, batch_size=batch_size)
            for m, lr in enumerate(lrs)]


def sample_indices(M: int, k: int) -> list[int]:
    """k evenly spaced model indices out of M (all of them when k >= M or k <= 0)."""
    if k <= 0 or k >= M:
        return list(range(M))
    return sorted({round(i * (M - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def time_population(configs: list[TrainConfig], splits) -> dict:
    """Train all configs as one population: training seconds, wall seconds (incl. evaluation), test accuracies."""
    rs = train_population(configs, splits=splits, device="cpu", progress=False)
    return {"train_s": rs[0].history[-1]["seconds"], "wall_s": rs[0].seconds, "acc": [r.test_accuracy for r in rs]}


def time_sequential(configs: list[TrainConfig], splits, idx: list[int]) -> dict:
    """Train configs[idx] one at a time; seconds are scaled by len(configs) / len(idx) to stand for all of them."""
    rs = [train(configs[i], splits=splits, device="cpu", progress=False) for i in idx]
    scale = len(configs) / len(idx)
    return {"train_s": scale * sum(r.history[-1]["seconds"] for r in rs),
            "wall_s": scale * sum(r.seconds for r in rs), "acc": [r.test_accuracy for r in rs]}


def run_case(M: int, H: int, order: str, splits, sample: int, batch_size: int) -> dict:
    """One repeat of one case: the population run, then the one-at-a-time runs, then the matmul ceiling.

    Also measures how many cores other processes kept busy meanwhile ("other"), since a second job on the same
    cores slows every small op by a scheduler time slice and makes the timings meaningless.
    """
    configs = trial_configs(M, H, order, batch_size)
    idx = sample_indices(M, sample)
    busy0, own0, t0 = busy_cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
    pop = time_population(configs, splits)
    seq = time_sequential(configs, splits, idx)
    busy1, own1, t1 = busy_cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
    other = None if busy0 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)
    acc_diff = max(abs(pop["acc"][i] - a) for i, a in zip(idx, seq["acc"]))
    return {"pop": pop, "seq": seq, "ceiling": matmul_ceiling(batch_size, 784, M * H, seconds=0.5),
            "sampled": len(idx), "acc_diff": acc_diff, "other_cores": other}


def summarize(M: int, H: int, order: str, runs: list[dict], n_train: int) -> dict:
    """Best-of-repeats row of one case; the speedup range is over the per-repeat (side by side) ratios."""
    pop_s = min(r["pop"]["train_s"] for r in runs)
    seq_s = min(r["seq"]["train_s"] for r in runs)
    ratios = [r["seq"]["train_s"] / r["pop"]["train_s"] for r in runs]
    flops = M * mlp_flops_per_epoch([784, H, 10], n_train)
    return {"M": M, "H": H, "order": order, "sampled": runs[0]["sampled"], "pop_s": pop_s, "seq_s": seq_s,
            "speedup": seq_s / pop_s, "speedup_min": min(ratios), "speedup_max": max(ratios),
            "pop_wall_s": min(r["pop"]["wall_s"] for r in runs), "seq_wall_s": min(r["seq"]["wall_s"] for r in runs),
            "gflops": flops / pop_s / 1e9, "ceiling_gflops": max(r["ceiling"] for r in runs),
            "max_test_acc_diff": max(r["acc_diff"] for r in runs),
            "other_cores_max": max((r["other_cores"] or 0.0) for r in runs),
            "pop_train_s_all": [r["pop"]["train_s"] for r in runs],
            "seq_train_s_all": [r["seq"]["train_s"] for r in runs]}


def print_table(rows: list[dict]) -> None:
    print(f"{'M':>4}{'H':>6}  {'order':<9}{'pop s/ep':>9}{'seq s/ep':>10}{'speedup':>9}{'range':>12}"
          f"{'pop wall':>10}{'seq wall':>10}{'GFLOP/s':>9}{'ceiling':>9}{'of ceil':>8}{'acc diff':>9}{'other':>7}")
    for r in rows:
        star = "*" if r["sampled"] < r["M"] else " "
        spread = f"{r['speedup_min']:.1f}-{r['speedup_max']:.1f}x"
        print(f"{r['M']:>4}{r['H']:>6}  {r['order']:<9}{r['pop_s']:>9.2f}{r['seq_s']:>9.2f}{star}{r['speedup']:>8.1f}x"
              f"{spread:>12}{r['pop_wall_s']:>10.2f}{r['seq_wall_s']:>9.2f}{star}{r['gflops']:>9.1f}"
              f"{r['ceiling_gflops']:>9.1f}{r['gflops'] / r['ceiling_gflops']:>8.0%}{r['max_test_acc_diff']:>9.4f}"
              f"{r['other_cores_max']:>7.2f}")


def git_commit() -> str | None:
    """The checkout's commit, with -dirty when the working tree has uncommitted changes."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"cases {QUICK_CASES}, sample 4, 1 repeat unless given")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 3, --quick 1)")
    p.add_argument("--sample", type=int, default=None,
                   help="models trained one at a time per case, scaled to M (default 16, --quick 4; 0: all)")
    p.add_argument("--order", choices=(*ORDERS, "both"), default="both", help="data order of the trials")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", metavar="PATH", help="also write the rows and what produced them as JSON")
    args = p.parse_args()
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    sample = args.sample if args.sample is not None else (4 if args.quick else 16)
    if repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {repeats}")
    cases = QUICK_CASES if args.quick else CASES
    orders = ORDERS if args.order == "both" else (args.order,)

    splits = make_splits(load_mnist())
    load_before = os.getloadavg()[0]
    # Warm-up: one small population and one single model, so one-time costs land in no timed run.
    train_population(trial_configs(4, cases[0][1], "per-seed", args.batch_size), splits=splits, device="cpu",
                     progress=False)
    train(trial_configs(1, cases[0][1], "per-seed", args.batch_size)[0], splits=splits, device="cpu", progress=False)

    # Repeats are the outer loop, so a burst of load from elsewhere hits one repeat of several cases, not one case.
    runs = {(M, H, order): [] for M, H in cases for order in orders}
    for rep in range(repeats):
        for (M, H, order), done in runs.items():
            done.append(run_case(M, H, order, splits, sample, args.batch_size))
            r = done[-1]
            print(f"  repeat {rep + 1}/{repeats}  M={M} H={H} {order}: population {r['pop']['train_s']:.2f} s, "
                  f"one at a time {r['seq']['train_s']:.2f} s", file=sys.stderr, flush=True)
    rows = [summarize(M, H, order, done, len(splits.train_x)) for (M, H, order), done in runs.items()]
    load_after = os.getloadavg()[0]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mlplab {mlplab.__version__} "
          f"(git {git_commit()}), batch {args.batch_size}, 1 epoch of {len(splits.train_x)} images, "
          f"best of {repeats} repeat(s); 1-min load average {load_before:.1f} before, {load_after:.1f} after")
    print_table(rows)
    if any(r["sampled"] < r["M"] for r in rows):
        print(f"* one-at-a-time figures from {sample} evenly spaced models of M, scaled linearly by M / {sample}")
    print("s/ep: training seconds per epoch, evaluation excluded; wall: training + evaluation; range: min-max of "
          "per-repeat speedups;\nacc diff: largest |test accuracy difference| between a model trained in the "
          "population and alone; other: most cores kept busy by other processes during a repeat")
    if max(r["other_cores_max"] for r in rows) > 0.2:
        print("WARNING: other processes used the CPU during the run; timings (and speedups) are not trustworthy")
    if args.json:
        meta = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "mlplab": mlplab.__version__, "git": git_commit(),
                "repeats": repeats, "sample": sample, "batch_size": args.batch_size,
                "loadavg_before": load_before, "loadavg_after": load_after}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
