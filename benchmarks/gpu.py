"""mlplab on an accelerator: matmul ceilings, the population benchmark and the full study, in one compact table.

    python benchmarks/gpu.py                             # on a GPU (auto device): under 5 minutes on an H100
    python benchmarks/gpu.py --skip-study                # ceilings and populations only (~1 min)
    python benchmarks/gpu.py --device cpu --quick --skip-study   # a smoke run of the script itself on the CPU

Method, all in one process and one run:
1. Ceilings: the best time of an (N, N) @ (N, N) product (N = 8192 on a GPU, 1024 on the CPU) in float32 with TF32
   off, with TF32 on (CUDA only) and in bf16, as TFLOP/s.
2. Populations: M models 784-H-10 (ReLU, SGD, one epoch of MNIST's 50,000 training images, one shared data order,
   batch B) train as one population in each precision (fp32, tf32, bf16), after a warm-up epoch. TFLOP/s counts the
   matmul FLOPs of the epoch (forward, grad-input except the first layer's, grad-weight) over its training time
   (the device synchronized); "of ceiling" divides by the ceiling of the same precision.
3. The full study (`mlplab study`, 334 trials, fp32) into a fresh folder: training seconds, report seconds,
   trials per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import matmul_ceiling, mlp_flops_per_epoch

import mlplab
from mlplab import TrainConfig, study
from mlplab.data import load_mnist, make_splits
from mlplab.device import resolve_device
from mlplab.train import train_population

CASES = [(256, 256, 512), (32, 1024, 512), (8, 4096, 512)]  # (M, H, batch): models, hidden width, batch size
QUICK_CASES = [(8, 64, 256)]


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def precisions(dev: torch.device) -> list[str]:
    return ["fp32", "tf32", "bf16"] if dev.type == "cuda" else ["fp32", "bf16"]


def population_case(M: int, H: int, batch: int, precision: str, dev, splits) -> dict:
    lrs = np.geomspace(0.01, 0.5, M)
    configs = [TrainConfig(hidden=(H,), lr=float(lr), seed=m, data_seed=0, epochs=1, batch_size=batch,
                           precision=precision) for m, lr in enumerate(lrs)]
    train_population(configs, device=dev, splits=splits, progress=False)  # warm-up (kernels, allocator)
    rs = train_population(configs, device=dev, splits=splits, progress=False)
    seconds = rs[0].history[-1]["seconds"]
    flops = M * mlp_flops_per_epoch([784, H, 10], len(splits.train_x))
    return {"M": M, "H": H, "batch": batch, "precision": precision, "seconds": seconds, "trials_per_s": M / seconds,
            "tflops": flops / seconds / 1e12, "best_test_accuracy": max(r.test_accuracy for r in rs)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="small cases and a short ceiling (smoke runs)")
    p.add_argument("--skip-study", action="store_true", help="leave out the full study")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = p.parse_args()
    dev = resolve_device(args.device)
    t_all = time.perf_counter()
    name = device_name(dev)
    print(f"mlplab {mlplab.__version__}, torch {torch.__version__}, device {dev}: {name}", flush=True)

    n = 1024 if dev.type == "cpu" or args.quick else 8192
    ceilings = {pr: matmul_ceiling(n, n, n, 0.5 if args.quick else 2.0, dev, pr) / 1e3 for pr in precisions(dev)}
    print("matmul ceiling " + ", ".join(f"{pr} {v:.1f} TFLOP/s" for pr, v in ceilings.items()) + f" (N={n})")

    splits = make_splits(load_mnist(), 10_000)
    rows = []
    print(f"{'population':<22}{'precision':>10}{'seconds':>10}{'trials/s':>10}{'TFLOP/s':>10}{'of ceiling':>12}")
    for M, H, batch in QUICK_CASES if args.quick else CASES:
        for pr in precisions(dev):
            r = population_case(M, H, batch, pr, dev, splits)
            r["of_ceiling"] = r["tflops"] / ceilings[pr]
            rows.append(r)
            print(f"{f'{M} x 784-{H}-10 b{batch}':<22}{pr:>10}{r['seconds']:>10.2f}{r['trials_per_s']:>10.1f}"
                  f"{r['tflops']:>10.2f}{100 * r['of_ceiling']:>11.0f}%", flush=True)

    info = None
    if not args.skip_study:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            info = study.run_study(Path(tmp) / "study", device=str(dev), progress=False, log=lambda m: None)
            info["wall"] = time.perf_counter() - t
        print(f"full study: {info['trials']} trials, training {info['train_seconds']:.1f} s "
              f"({info['trials'] / info['train_seconds']:.1f} trials/s), report {info['report_seconds']:.1f} s, "
              f"{info['wall']:.1f} s in all")
    print(f"benchmark wall time {time.perf_counter() - t_all:.0f} s on {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "ceilings_tflops": ceilings, "populations": rows, "study": info}, f, indent=1)


if __name__ == "__main__":
    main()
