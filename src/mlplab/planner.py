"""Planning a sweep: group trials into populations that can train together and fit a memory budget.

Trials go to the same population when they share every field in `train.SHARED_FIELDS` (layer shapes,
activation, optimizer kind, schedule, batch size, epochs, data); everything else (learning rate, momentum,
weight decay, init scheme and scale, seeds) may differ per model. A group larger than the budget allows is split.

Memory of a population = a fixed part (the dataset copied to the device as float32, evaluation's chunks) + one
stream part per distinct data-order seed (its shuffled order, gathered batch and labels) + the models' own part
(`bytes_per_model`). tests/test_planner.py measures peak memory over shapes and data orders against it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mlplab.config import TrainConfig
from mlplab.train import SHARED_FIELDS

IN_DIM, N_CLASSES = 784, 10
N_EXAMPLES, N_TRAIN = 70_000, 60_000  # MNIST: every image (training, validation, test) and the training part
EVAL_BYTES = 3 * (4 << 26)  # evaluation works in chunks of at most 2**26 floats: a layer's input, output, logits
MAX_MODELS = 4096  # models per population
# On a CPU a population step reads and writes every parameter about 40 bytes' worth (bf16 casts, gradient, finiteness
# check, momentum, update), so it runs at the speed of memory once its parameters outgrow the caches: 194 models of
# 784-128-10 (20 M parameters) train 1.4x slower per model-epoch than the same models in 3 populations of ~65
# (2-core CPU, BENCHMARKS.md). Populations on a CPU therefore hold at most this many parameters in all.
CPU_MAX_PARAMS = 8_000_000


@dataclass(frozen=True)
class Population:
    configs: tuple[TrainConfig, ...]
    bytes_per_model: int  # the largest model's own part
    bytes: int = 0  # estimated peak memory of training the whole population (population_bytes)

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


def stream_bytes(config: TrainConfig, n_train: int = N_TRAIN, in_dim: int = IN_DIM) -> int:
    """One data-order stream: its epoch order (int64), a gathered batch (float32, and its int64 index and labels)."""
    return 8 * n_train + 4 * config.batch_size * in_dim + 24 * config.batch_size


def stacked_bytes(config: TrainConfig, in_dim: int = IN_DIM) -> int:
    """One stream's batch once more, when a population reads several: mlp.forward_streams stacks the streams'
    batches (M, B, D) for the first layer's batched product."""
    return 4 * config.batch_size * in_dim


def fixed_bytes(n_examples: int = N_EXAMPLES, in_dim: int = IN_DIM, M: int = MAX_MODELS,
                widest: int = 1 << 20) -> int:
    """What a population needs beside its models and streams: the dataset as float32 (and int64 labels) on the
    device, plus a transient copy while it is converted, and evaluation's chunks (at most EVAL_BYTES; less for
    few models or little data). The defaults give the most it can be."""
    return 2 * 4 * n_examples * in_dim + 8 * n_examples + min(EVAL_BYTES, 3 * 4 * M * widest * n_examples)


def population_bytes(configs, n_examples: int = N_EXAMPLES) -> int:
    """Estimated peak memory of training `configs` as one population: fixed + streams + models. With several
    streams, their batches are also stacked into one tensor for the first layer's batched product (one more copy
    of every stream's batch: mlp.forward_streams)."""
    streams = {c.order_seed for c in configs}
    c0 = configs[0]
    stacked = len(streams) * stacked_bytes(c0) if len(streams) > 1 else 0
    return (fixed_bytes(n_examples, M=len(configs), widest=max((N_CLASSES, *c0.hidden)))
            + len(streams) * stream_bytes(c0, n_train=n_examples) + stacked
            + sum(bytes_per_model(c) for c in configs))


def check_fits(configs: list[TrainConfig], budget_bytes: int, what: str = "memory budget") -> None:
    """A ValueError naming the setting when even one model of `configs` (alone, as its own population) does not
    fit `budget_bytes`. Checked before anything is built or allocated."""
    seen = set()
    for c in configs:
        key = group_key(c)
        if key in seen:
            continue
        seen.add(key)
        need = population_bytes([c])
        if need > budget_bytes:
            layers = "-".join(str(s) for s in (IN_DIM, *c.hidden, N_CLASSES))
            raise ValueError(f"hidden {list(c.hidden)} (a {layers} MLP, batch_size {c.batch_size}) needs ~"
                             f"{_gib(need)} for one model, more than the {what} of {_gib(budget_bytes)}; use "
                             "smaller widths or batches")


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n < 2**90 else f"2^{n.bit_length() - 1} bytes"


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


def n_params(config: TrainConfig, in_dim: int = IN_DIM, n_classes: int = N_CLASSES) -> int:
    """Trainable numbers of one model (weights, biases, batch norm's scales)."""
    sizes = [in_dim, *config.hidden, n_classes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])) + (sum(config.hidden) if config.batch_norm else 0)


def max_params(device: torch.device) -> int | None:
    """The most parameters one population should hold on `device` (CPU_MAX_PARAMS on a CPU; no limit elsewhere)."""
    return CPU_MAX_PARAMS if torch.device(device).type == "cpu" else None


def plan(configs: list[TrainConfig], budget_bytes: int, max_models: int = MAX_MODELS,
         params_cap: int | None = None) -> list[Population]:
    """Split `configs` into populations: compatible trials together, each within `budget_bytes` (one model per
    population at least; `check_fits` refuses a model that does not fit alone) and, given `params_cap`, holding
    at most that many parameters in all. A split group is cut into near-equal chunks, in the given order, whose
    sizes are multiples of its number of data-order seeds where they can be (a sweep lists each setting's seeds
    together, so every chunk then has as many models per data order)."""
    groups: dict[tuple, list[TrainConfig]] = {}
    for c in configs:
        groups.setdefault(group_key(c), []).append(c)
    out = []
    for members in groups.values():
        c0 = members[0]
        per = max(bytes_per_model(c) for c in members)
        if len({c.order_seed for c in members}) > 1:  # each model may bring its own stream, stacked once more
            per += stream_bytes(c0) + stacked_bytes(c0)  # for the first layer
        room = max(1, min(max_models, (budget_bytes - fixed_bytes() - stream_bytes(c0)) // per))
        if params_cap is not None:
            room = max(1, min(room, params_cap // max(n_params(c) for c in members)))
        for chunk in _chunks(members, room, len({c.order_seed for c in members})):
            out.append(Population(chunk, per, population_bytes(chunk)))
    return out


def _chunks(members: list, room: int, streams: int) -> list[tuple]:
    """`members` in order, cut into the fewest chunks of at most `room`, near-equal (not full ones and a tiny
    one), each a multiple of `streams` long where room allows."""
    n_chunks = -(-len(members) // room)
    if n_chunks == 1:
        return [tuple(members)]
    unit = streams if 1 < streams <= room else 1
    units = -(-len(members) // unit)
    n_chunks = max(n_chunks, -(-units // (room // unit)))
    base, extra = divmod(units, n_chunks)
    out, start = [], 0
    for k in range(n_chunks):
        size = (base + (1 if k < extra else 0)) * unit
        out.append(tuple(members[start:start + size]))
        start += size
    return [c for c in out if c]


def sequential(configs: list[TrainConfig]) -> list[Population]:
    """One population per trial: the same trials trained one at a time."""
    return [Population((c,), bytes_per_model(c), population_bytes([c])) for c in configs]
