"""The accuracy and speed frontier: mlplab's presets `fast` and `best` over 3 seeds, on the real MNIST test set.

    python benchmarks/frontier.py                      # both presets, seeds 0-2 (~18 min on 2 CPU cores)
    python benchmarks/frontier.py --presets fast       # fast only (~20 s)
    python benchmarks/frontier.py --epochs 1           # a shortened smoke run (changes the presets: not a result)

Method: the data is loaded from mlplab's cache once (timed: "load"). Each seed trains `preset(name, seed=s)` in
this process, one after another, on the CPU unless --device says otherwise. "train s" is training time only
(`history[-1]["seconds"]`: the epochs' steps, evaluation excluded); "to 98%" is the training time at the end of the
first epoch whose test accuracy reached 98.0% ("-" if none did); "total s" adds the per-epoch evaluations. Test
accuracy is read once per epoch; the presets were chosen on the validation split. "fresh process" runs
`mlplab train --preset fast` as a new user would, timing the whole command: Python start-up, import, loading the
cached data, training and evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

import mlplab
from mlplab import PRESETS, preset, train
from mlplab.data import load_mnist, make_splits

TARGET = 0.98


def time_to(history: list[dict], target: float) -> float | None:
    """Training seconds at the end of the first epoch whose test accuracy reached `target`."""
    for h in history:
        if h["test_accuracy"] >= target:
            return h["seconds"]
    return None


def run_preset(name: str, seeds: list[int], device: str, overrides: dict, splits_of) -> list[dict]:
    rows = []
    for s in seeds:
        config = preset(name, seed=s, **overrides)
        t = time.perf_counter()
        r = train(config, device=device, splits=splits_of(config.val_size), progress=False)
        rows.append({"preset": name, "seed": s, "test_accuracy": r.test_accuracy, "train_s": r.history[-1]["seconds"],
                     "to_98_s": time_to(r.history, TARGET), "total_s": time.perf_counter() - t,
                     "epochs": len(r.history), "config": config.to_dict()})
        print(f"  {name} seed {s}: test {100 * r.test_accuracy:.2f}%, train {rows[-1]['train_s']:.2f} s, "
              f"total {rows[-1]['total_s']:.2f} s", file=sys.stderr, flush=True)
    return rows


def fresh_process(name: str, overrides: dict) -> dict:
    """Wall time of `mlplab train --preset NAME --json --quiet` in a new Python process."""
    cmd = [sys.executable, "-m", "mlplab", "train", "--preset", name, "--json", "--quiet"]
    for k, v in overrides.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    s = json.loads(p.stdout)
    return {"wall_s": wall, "train_s": s["history"][-1]["seconds"], "test_accuracy": s["test_accuracy"]}


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="fast,best", help="comma-separated presets (default fast,best)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, help="override every preset's epochs (smoke runs; not a result)")
    p.add_argument("--json", metavar="PATH", help="also write every run as JSON here")
    args = p.parse_args()
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    for n in names:
        if n not in PRESETS:
            p.error(f"unknown preset {n!r}; choose from {', '.join(PRESETS)}")
    overrides = {"epochs": args.epochs} if args.epochs else {}

    t = time.perf_counter()
    ds = load_mnist()
    load_s = time.perf_counter() - t
    cache: dict = {}

    def splits_of(val_size):
        if val_size not in cache:
            cache[val_size] = make_splits(ds, val_size)
        return cache[val_size]

    print(f"mlplab {mlplab.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device}; data load from the cache {load_s:.2f} s", flush=True)
    rows = []
    for n in names:
        rows += run_preset(n, list(range(args.seeds)), args.device, overrides, splits_of)
    fresh = fresh_process("fast", overrides) if "fast" in names else None

    print(f"{'preset':<8}{'test accuracy':>18}{'error':>8}{'to 98%':>10}{'train s':>10}{'total s':>10}")
    for n in names:
        rs = [r for r in rows if r["preset"] == n]
        acc, sd = mean_std([r["test_accuracy"] for r in rs])
        reached = [r["to_98_s"] for r in rs if r["to_98_s"] is not None]
        to98 = f"{statistics.fmean(reached):.2f}" if len(reached) == len(rs) else f"{len(reached)}/{len(rs)}"
        print(f"{n:<8}{100 * acc:>11.2f} ± {100 * sd:.2f}%{100 * (1 - acc):>7.2f}%{to98:>10}"
              f"{statistics.fmean(r['train_s'] for r in rs):>10.2f}{statistics.fmean(r['total_s'] for r in rs):>10.2f}")
    if fresh:
        print(f"fresh process `mlplab train --preset fast`: {fresh['wall_s']:.2f} s wall (training "
              f"{fresh['train_s']:.2f} s), test {100 * fresh['test_accuracy']:.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_s": load_s, "runs": rows, "fresh_process": fresh, "torch": torch.__version__}, f,
                      indent=1)


if __name__ == "__main__":
    main()
