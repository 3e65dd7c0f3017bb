"""Planning a sweep: group trials into populations that can train together and fit a memory budget.

Trials go to the same population when they share every field in `train.SHARED_FIELDS` (layer shapes,
activation, optimizer kind, schedule, batch size, epochs, data); everything else (learning rate, momentum,
weight decay, init scheme and scale, seeds) may differ per model. A group larger than the budget allows is split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mlplab.config import TrainConfig
from mlplab.train import SHARED_FIELDS

IN_DIM, N_CLASSES = 784, 10
EVAL_BYTES = 4 << 26  # evaluation works in chunks of at most 2**26 floats (see train.evaluate)


@dataclass(frozen=True)
class Population:
    configs: tuple[TrainConfig, ...]
    bytes_per_model: int

    @property
    def size(self) -> int:
        return len(self.configs)

    def describe(self) -> str:
        c = self.configs[0]
        layers = "-".join(str(s) for s in (IN_DIM, *c.hidden, N_CLASSES))
        extras = (" batch-norm" if c.batch_norm else "") + ("" if c.precision == "fp32" else f" {c.precision}")
        return f"{self.size} x {layers} {c.activation} {c.optimizer} b{c.batch_size}{extras}"


def bytes_per_model(config: TrainConfig, in_dim: int = IN_DIM, n_classes: int = N_CLASSES) -> int:
    """A generous estimate of one model's training memory: parameters, gradients, optimizer state and update
    temporaries (6 copies, 7 with a weight average), plus a step's activations and their gradients (4 copies;
    6 with dropout, noise or batch norm, which keep masks, noise and normalized copies), in float32. Input noise
    or dropout give every model its own copy of the batch, with its noise and mask (3 more)."""
    sizes = [in_dim, *config.hidden, n_classes]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    n_acts = config.batch_size * sum(sizes[1:])
    extra = config.dropout or config.noise or config.batch_norm
    n_input = 3 * config.batch_size * in_dim if config.noise or config.dropout_input else 0
    return 4 * ((7 if config.ema else 6) * n_params + (6 if extra else 4) * n_acts + n_input)


def memory_budget(device: torch.device, fraction: float = 0.5) -> int:
    """`fraction` of the memory free on `device` now (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return int(info["MemAvailable"] * fraction)
    except (OSError, KeyError, ValueError):
        return int((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")) * fraction)


def group_key(config: TrainConfig) -> tuple:
    return tuple(getattr(config, f) for f in SHARED_FIELDS)


def plan(configs: list[TrainConfig], budget_bytes: int, max_models: int = 4096) -> list[Population]:
    """Split `configs` into populations: compatible trials together, each within `budget_bytes`."""
    groups: dict[tuple, list[TrainConfig]] = {}
    for c in configs:
        groups.setdefault(group_key(c), []).append(c)
    out = []
    for members in groups.values():
        per = bytes_per_model(members[0])
        room = max(1, min(max_models, (budget_bytes - EVAL_BYTES) // per))
        n_chunks = -(-len(members) // room)
        base, extra = divmod(len(members), n_chunks)  # near-equal chunks rather than full ones and a tiny one
        start = 0
        for k in range(n_chunks):
            size = base + (1 if k < extra else 0)
            out.append(Population(tuple(members[start:start + size]), per))
            start += size
    return out


def sequential(configs: list[TrainConfig]) -> list[Population]:
    """One population per trial: the same trials trained one at a time."""
    return [Population((c,), bytes_per_model(c)) for c in configs]
