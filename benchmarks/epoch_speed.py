"""Seconds per epoch of the default MLP next to a float32 matmul ceiling measured in the same run.

    python benchmarks/epoch_speed.py                # default MLP: 784-256-10, batch 128, 3 epochs after warm-up
    python benchmarks/epoch_speed.py --hidden 1024 --batch-size 256 --epochs 2
    python benchmarks/epoch_speed.py --hidden 1024 --batch-size 256 --precision fp32,bf16   # side by side

The ceiling is the best of several timed (B, 784) @ (784, H) float32 products at the sizes of the first layer, as
GFLOP/s; the MLP's achieved rate counts the matmul FLOPs of forward and backward (3 products per layer and step:
forward, grad-input, grad-weight; grad-input of the first layer is not needed and not counted). With several
--precision values, each trains the same config (after its own warm-up) in the same run, and the last line gives
their speed relative to the first; "of ceiling" is always against the float32 ceiling.
"""

from __future__ import annotations

import argparse

import torch
from _common import matmul_ceiling, mlp_flops_per_epoch

from mlplab import TrainConfig, train
from mlplab.data import load_mnist, make_splits


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16 (default fp32)")
    args = p.parse_args()

    splits = make_splits(load_mnist())
    ceiling = matmul_ceiling(args.batch_size, 784, args.hidden)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<28}{'s/epoch':>9}{'GFLOP/s':>9}{'ceiling':>9}{'of ceiling':>11}{'test acc':>10}")
    times = {}
    for precision in [x.strip() for x in args.precision.split(",") if x.strip()]:
        cfg = TrainConfig(hidden=(args.hidden,), batch_size=args.batch_size, epochs=args.epochs, precision=precision)
        train(cfg.replace(epochs=1), splits=splits, progress=False, device="cpu")  # warm-up
        r = train(cfg, splits=splits, progress=False, device="cpu")
        times[precision] = per_epoch = r.history[-1]["seconds"] / len(r.history)
        achieved = mlp_flops_per_epoch([784, args.hidden, 10], len(splits.train_x)) / per_epoch / 1e9
        name = f"784-{args.hidden}-10 b{args.batch_size} {precision}"
        print(f"{name:<28}{per_epoch:>9.3f}{achieved:>9.1f}{ceiling:>9.1f}{achieved / ceiling:>11.0%}"
              f"{r.test_accuracy:>10.4f}")
    if len(times) > 1:
        first, *rest = times
        print("speed relative to " + first + ": " + ", ".join(f"{p} {times[first] / times[p]:.2f}x" for p in rest))


if __name__ == "__main__":
    main()
