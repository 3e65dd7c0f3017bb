"""What a set of trials will cost, before it runs: model-epochs, matmul FLOPs and a predicted time.

    >>> est = estimate(trials)                       # every model trained to its full epoch budget
    >>> est.model_epochs, est.flops, est.seconds

The prediction is a model, not a measurement: FLOPs / an assumed throughput, plus every optimizer step of every
population times an assumed per-step overhead (Python, kernel launches, the optimizer's per-tensor loops), which
dominates narrow models. The assumptions are the constants below, for the 2-core CPU mlplab is developed on; with
early stopping most models stop before their budget, so the estimate is an upper bound on the work.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlplab.config import MNIST_TRAIN_SIZE, TrainConfig

IN_DIM, N_CLASSES, N_TEST = 784, 10, 10_000
# Assumed matmul throughput, FLOP/s. fp32: the low end of the 150-220 GFLOP/s measured on the development CPU (2
# cores; BENCHMARKS.md); bf16 autocast: 2.2x that (measured 2.24x for 784-1024-10, batch 256). tf32 is fp32 here.
ASSUMED_FLOPS = {"fp32": 150e9, "tf32": 150e9, "bf16": 330e9}
STEP_SECONDS = 1.0e-3  # assumed fixed cost of one optimizer step of a population with one hidden layer
LAYER_STEP_SECONDS = 0.3e-3  # ... plus this per further hidden layer
STREAM_STEP_SECONDS = 0.2e-3  # ... plus this per further data-order stream (its batch gather and matmul)


def macs(config: TrainConfig) -> int:
    """Multiply-adds of one example's forward pass: the sum of the weight matrices' sizes."""
    sizes = [IN_DIM, *config.hidden, N_CLASSES]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def n_train(config: TrainConfig) -> int:
    return MNIST_TRAIN_SIZE - config.val_size


def epoch_flops(config: TrainConfig) -> float:
    """Matmul FLOPs of one model-epoch: training (forward, weight gradients, input gradients except the first
    layer's) on the training split, then evaluation (forward) on the validation and test sets."""
    first = IN_DIM * (config.hidden[0] if config.hidden else N_CLASSES)
    train = 2 * n_train(config) * (3 * macs(config) - first)
    evaluate = 2 * (config.val_size + N_TEST) * macs(config)
    return float(train + evaluate)


def steps_per_epoch(config: TrainConfig) -> int:
    return -(-n_train(config) // config.batch_size)


@dataclass(frozen=True)
class Estimate:
    model_epochs: int  # models x epochs, every model to its budget
    flops: float  # matmul FLOPs of those model-epochs
    seconds: float  # predicted: flops / ASSUMED_FLOPS + steps x the per-step overheads

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.model_epochs + other.model_epochs, self.flops + other.flops,
                        self.seconds + other.seconds)


NOTHING = Estimate(0, 0.0, 0.0)


def population_estimate(configs: list[TrainConfig]) -> Estimate:
    """One population (configs that share their shapes, batch size and epochs) trained to its epoch budget."""
    c0 = configs[0]
    model_epochs = sum(c.epochs for c in configs)
    flops = sum(epoch_flops(c) * c.epochs for c in configs)
    streams = len({c.order_seed for c in configs})
    per_step = STEP_SECONDS + LAYER_STEP_SECONDS * max(0, len(c0.hidden) - 1) + STREAM_STEP_SECONDS * (streams - 1)
    steps = steps_per_epoch(c0) * max(c.epochs for c in configs)
    return Estimate(model_epochs, flops, flops / ASSUMED_FLOPS[c0.precision] + steps * per_step)


def estimate(trials: list[TrainConfig]) -> Estimate:
    """All `trials`, grouped into populations as the planner groups them (by their shared fields)."""
    from mlplab.planner import group_key

    groups: dict = {}
    for t in trials:
        groups.setdefault(group_key(t), []).append(t)
    total = NOTHING
    for members in groups.values():
        total = total + population_estimate(members)
    return total


def shares(trials: list[TrainConfig], part: list[TrainConfig]) -> Estimate:
    """The part of `estimate(trials)` that belongs to the trials in `part`: their own FLOPs, and a share of each
    population's step overhead in proportion to their number of models in it."""
    from mlplab.planner import group_key

    groups: dict = {}
    for t in trials:
        groups.setdefault(group_key(t), []).append(t)
    mine = set(part)
    total = NOTHING
    for members in groups.values():
        own = [c for c in members if c in mine]
        if not own:
            continue
        whole = population_estimate(members)
        flops = sum(epoch_flops(c) * c.epochs for c in own)
        overhead = whole.seconds - whole.flops / ASSUMED_FLOPS[members[0].precision]
        seconds = flops / ASSUMED_FLOPS[members[0].precision] + overhead * len(own) / len(members)
        total = total + Estimate(sum(c.epochs for c in own), flops, seconds)
    return total
