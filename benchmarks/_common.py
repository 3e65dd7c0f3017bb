"""Helpers shared by the benchmark scripts: a matmul ceiling and the matmul FLOPs of an MLP epoch."""

from __future__ import annotations

import os
import time

import torch

from mlplab.device import arithmetic, synchronize


def matmul_ceiling(m: int, k: int, n: int, seconds: float = 1.0, device: str | torch.device = "cpu",
                   precision: str = "fp32") -> float:
    """Best observed GFLOP/s of (m, k) @ (k, n) in `precision` (fp32, tf32, bf16) on `device` (default: float32
    on the CPU), the device synchronized around each timed batch of products."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g).to(dev), torch.randn(k, n, generator=g).to(dev)
    reps = max(1, int((2e8 if dev.type == "cpu" else 2e12) / (2 * m * k * n)))
    best = float("inf")
    with arithmetic(dev, precision):
        a @ b  # warm-up
        synchronize(dev)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            synchronize(dev)
            best = min(best, (time.perf_counter() - t) / reps)
    return 2 * m * k * n / best / 1e9


def mlp_flops_per_epoch(sizes: list[int], n: int) -> float:
    """Matmul FLOPs of one epoch over n examples: forward, grad-input and grad-weight per layer (2 * fan_in *
    fan_out each), except the first layer's grad-input, which is not needed."""
    f = 0.0
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        f += 2 * n * fi * fo * (2 if i == 0 else 3)
    return f


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes on this machine have run so far (from /proc/stat; None where there is none)."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
