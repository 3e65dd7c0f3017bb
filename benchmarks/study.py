"""Wall time of the whole case study, and of the same trials trained one at a time, measured in one run.

    python benchmarks/study.py                 # the full study (what `mlplab study` runs), into a fresh store
    python benchmarks/study.py --quick         # the reduced study

Method: the study runs end to end (training through the population engine, then the notebook and HTML) into a
fresh temporary folder, timed. The one-at-a-time figure is extrapolated from a measured sample: for every
population the planner made, one of its trials is trained alone (`mlplab.train`), and that time is multiplied by the
population's size (its members share every shape-determining setting, so they cost the same alone). Peak memory is
the largest resident set of this process and of its children (the notebook kernel), from getrusage.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from mlplab import planner, study
from mlplab.data import load_mnist, make_splits
from mlplab.device import resolve_device
from mlplab.train import train


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    load_mnist()  # build the cache outside the timed region
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = study.run_study(Path(tmp) / "study", quick=args.quick, device=args.device, progress=False,
                               log=lambda m: None)
        wall = time.perf_counter() - t0

    dev = resolve_device(args.device)
    trials = study.all_trials(study.experiments(args.quick))
    pops = planner.plan(trials, planner.memory_budget(dev))
    splits = make_splits(load_mnist())
    seq = 0.0
    for pop in pops:
        t = time.perf_counter()
        train(pop.configs[0], splits=splits, device=dev, progress=False)
        seq += (time.perf_counter() - t) * pop.size
    usage = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    peak = max(u.ru_maxrss for u in usage)  # KiB on Linux

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}")
    print(f"study ({'quick' if args.quick else 'full'}): {info['trials']} trials in {len(pops)} populations")
    print(f"  training (populations)        {info['train_seconds']:8.1f} s")
    print(f"  notebook + HTML               {info['report_seconds']:8.1f} s")
    print(f"  whole study, wall             {wall:8.1f} s")
    print(f"  same trials one at a time     {seq:8.1f} s  (extrapolated: one trial per population, x its size)")
    print(f"  speedup of training           {seq / info['train_seconds']:8.1f} x")
    print(f"  speedup, whole study          {(seq + info['report_seconds']) / wall:8.1f} x")
    print(f"  peak memory (max RSS)         {peak / 2**20:8.2f} GiB")


if __name__ == "__main__":
    main()
