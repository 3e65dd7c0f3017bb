"""Helpers shared by the benchmark scripts: a float32 matmul ceiling and the matmul FLOPs of an MLP epoch."""

from __future__ import annotations

import time

import torch


def matmul_ceiling(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Best observed GFLOP/s of float32 (m, k) @ (k, n) on the CPU."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    best = float("inf")
    end = time.perf_counter() + seconds
    reps = max(1, int(2e8 / (2 * m * k * n)))
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - t) / reps)
    return 2 * m * k * n / best / 1e9


def mlp_flops_per_epoch(sizes: list[int], n: int) -> float:
    """Matmul FLOPs of one epoch over n examples: forward, grad-input and grad-weight per layer (2 * fan_in *
    fan_out each), except the first layer's grad-input, which is not needed."""
    f = 0.0
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        f += 2 * n * fi * fo * (2 if i == 0 else 3)
    return f
