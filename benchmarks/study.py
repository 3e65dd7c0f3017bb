"""Wall time of the whole case study against its predicted time, and the matmul rate it achieved, in one run.

    python benchmarks/study.py                 # the full study (what `mlplab study` runs), into a fresh store
    python benchmarks/study.py --quick         # the reduced study
    python benchmarks/study.py --store study/study.sqlite   # the table for a study already run (e.g. by the
                                               # README's command), against the ceiling measured now

Method: the study's plan (model-epochs at the budget, FLOPs, predicted seconds: mlplab/cost.py) is printed first;
then the study runs end to end (training through the population engine, then the notebook and HTML) into a fresh
temporary folder, timed. Afterwards, per experiment, the model-epochs actually trained (early stopping ends most
models before their budget) and their matmul FLOPs are read from the store, divided by the experiment's share of
the training time (each trial's share of its population's wall time), and set against the assumed throughput of
its precision, and against the matmul ceiling measured in the same run (a 2048^3 product in fp32 and in bf16,
best of 2 s, before and after the study; the higher of the two readings is used). The last row is the whole study,
FLOP-weighted. Peak memory is the largest resident set of this process and of its children (the notebook kernel).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from _common import matmul_ceiling

from mlplab import cost, study
from mlplab.data import load_mnist
from mlplab.store import Store, trial_key


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--store", help="read this study store instead of running the study (measure it on the same "
                                   "machine, in the same session)")
    args = p.parse_args()

    exps = study.experiments(args.quick)
    print("\n".join(study.plan_lines(exps)))
    load_mnist()  # build the cache outside the timed region
    ceiling = {p: matmul_ceiling(2048, 2048, 2048, seconds=2.0, precision=p) * 1e9 for p in ("fp32", "bf16")}
    info = wall = None
    if args.store:
        with Store(args.store, create=False) as s:
            by_key = {r["key"]: r for r in s.records()}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            info = study.run_study(Path(tmp) / "study", quick=args.quick, device=args.device, progress=False,
                                   log=lambda m: None)
            wall = time.perf_counter() - t0
            with Store(info["store"], create=False) as s:
                by_key = {r["key"]: r for r in s.records()}
    for p in ceiling:  # the same product again, now that the machine is warm: the better reading counts
        ceiling[p] = max(ceiling[p], matmul_ceiling(2048, 2048, 2048, seconds=2.0, precision=p) * 1e9)
    usage = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    peak = max(u.ru_maxrss for u in usage)  # KiB on Linux

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print("matmul ceiling (2048^3, measured in this run): " + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s"
                                                                     for p, v in ceiling.items()))
    print(f"{'experiment':<18} {'model-epochs':>12} {'TFLOP':>7} {'seconds':>8} {'GFLOP/s':>8} {'of assumed':>10} "
          f"{'of ceiling':>10}")
    all_t = study.all_trials(exps)
    for e in exps.values():
        recs = [by_key[trial_key(t)] for t in e.trials() if trial_key(t) in by_key]
        _row(e.name, recs, ceiling)
    _row("all", [by_key[trial_key(t)] for t in all_t if trial_key(t) in by_key], ceiling)
    predicted = cost.estimate(all_t).seconds
    if info is None:
        print(f"predicted training at most {predicted:.0f} s (every model to its budget)")
        return
    print(f"training {info['train_seconds']:.1f} s (predicted at most {predicted:.0f} s), notebook + HTML "
          f"{info['report_seconds']:.1f} s, whole study {wall:.1f} s, peak memory {peak / 2**20:.2f} GiB")


def _row(name, recs, ceiling):
    """One table row: model-epochs trained, their matmul FLOPs, the seconds they took (each trial's share of its
    population's wall time), the rate, and the share of the ceiling: the time the FLOPs would take at the measured
    ceiling of each trial's precision, over the time they took (for one precision, rate / ceiling)."""
    from mlplab.config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    epochs = flops = seconds = at_ceiling = at_assumed = 0.0
    for r in recs:
        config = TrainConfig.from_dict({k: r[k] for k in fields if k in r})
        f = cost.epoch_flops(config) * len(r["history"])
        epochs += len(r["history"])
        flops += f
        seconds += (r["seconds"] or 0) / (r["population"] or 1)
        at_ceiling += f / ceiling[config.precision]
        at_assumed += f / cost.ASSUMED_FLOPS[config.precision]
    rate = flops / seconds if seconds else float("nan")
    print(f"{name:<18} {epochs:>12.0f} {flops / 1e12:>7.2f} {seconds:>8.1f} {rate / 1e9:>8.1f} "
          f"{at_assumed / seconds:>9.0%} {at_ceiling / seconds:>10.0%}")


if __name__ == "__main__":
    main()
