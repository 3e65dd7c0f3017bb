"""The planner's memory estimate bounds the peak memory that training a population really takes, measured in a
fresh process (peak resident set size, reset with /proc/self/clear_refs just before training; Linux only)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

MEASURE = r"""
import json, sys
import numpy as np
from mlplab import TrainConfig
from mlplab.data import Splits, load_mnist
from mlplab.planner import population_bytes
from mlplab.train import train_population

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

case = json.loads(sys.argv[1])
ds = load_mnist()
n_train, n_val, n_test = case.pop("n")
splits = Splits("mnist", ds.train_images[:n_train], ds.train_labels[:n_train], ds.train_images[-n_val:],
                ds.train_labels[-n_val:], ds.test_images[:n_test], ds.test_labels[:n_test])
M = case.pop("M")
per_seed = case.pop("per_seed")
configs = [TrainConfig(epochs=1, val_size=n_val, lr=0.01 * (1 + m % 3), seed=m if per_seed else 0, **case)
           for m in range(M)]
train_population(configs[:1], device="cpu", splits=splits, progress=False)  # warm-up: imports, allocator, kernels
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
train_population(configs, device="cpu", splits=splits, progress=False)
peak = status("VmHWM") - before
print(json.dumps({"peak": peak, "estimate": population_bytes(configs, n_examples=n_train + n_val + n_test)}))
"""

FULL = [10_000, 50_000, 10_000]  # all 70,000 images on the device (the dataset copy dominates), few steps
WIDE = [4_000, 50_000, 10_000]  # nearly all of it, but few training steps
SMALL = [2_000, 500, 500]  # the models, their batches and streams dominate
CASES = [
    dict(n=FULL, M=1, per_seed=False, hidden=[64]),
    dict(n=WIDE, M=24, per_seed=True, hidden=[8], batch_size=256),
    dict(n=SMALL, M=64, per_seed=True, hidden=[32], batch_size=512),
    dict(n=SMALL, M=64, per_seed=False, hidden=[32], batch_size=512),
    dict(n=SMALL, M=8, per_seed=False, hidden=[512, 512], batch_size=256, optimizer="adam"),
    dict(n=SMALL, M=16, per_seed=True, hidden=[128], batch_size=256, dropout_input=0.2, noise=0.1, dropout=0.3),
    dict(n=SMALL, M=8, per_seed=True, hidden=[256, 256], batch_size=128, batch_norm=True, optimizer="adamw"),
    dict(n=SMALL, M=8, per_seed=False, hidden=[256], batch_size=128, ema=0.99, max_norm=3.0),
]


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _clear_refs_works(),
                    reason="peak memory is read from /proc (Linux)")
@pytest.mark.parametrize("case", CASES, ids=[f"{c['M']}x{c['hidden']}{'-per-seed' if c['per_seed'] else ''}"
                                             f"-{sum(c['n'])}" for c in CASES])
def test_the_estimate_bounds_measured_peak_memory(case):
    p = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(case)], capture_output=True, text=True,
                       timeout=600, cwd=Path(__file__).parent)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["peak"] <= got["estimate"], (
        f"peak {got['peak'] / 2**20:.0f} MiB > estimate {got['estimate'] / 2**20:.0f} MiB")
    assert got["estimate"] <= 8 * got["peak"] + (64 << 20), "the estimate should stay within reach of the truth"
