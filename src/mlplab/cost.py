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
# The model: matmul FLOPs / ASSUMED_FLOPS, plus per parameter and optimizer step PARAM_STEP_SECONDS (a population
# step on a CPU is bound by memory traffic over its parameters: casts, gradient, finiteness check, momentum, update),
# plus per population step the overheads below. ASSUMED_FLOPS: what products of the study's shapes reach on the
# development CPU (2 cores; 2048^3 products peak at 296 fp32, 599 bf16). The other constants are a non-negative
# least-squares fit to the wall times of the 28 populations of the full study at commit b270b13 that held at most
# planner.CPU_MAX_PARAMS parameters (median error 29%; the fit put the per-step constant at 0, kept here at the
# 0.3 ms one small model's step measures). Faster engines or machines make it an overestimate.
ASSUMED_FLOPS = {"fp32": 250e9, "tf32": 250e9, "bf16": 450e9}
PARAM_STEP_SECONDS = 5.0e-9  # per parameter of every model, per optimizer step
STEP_SECONDS = 0.3e-3  # fixed cost of one optimizer step of a population with one hidden layer
LAYER_STEP_SECONDS = 1.2e-3  # ... plus this per further hidden layer
STREAM_STEP_SECONDS = 0.7e-3  # ... plus this per further data-order stream (its batch gather and product)
# The share of the predicted bound a full study's training takes: early stopping ends most models before their
# budget (it trained 79% of the budgets' model-epochs at b270b13, 1a777cc and 59000bd), and the bound's per-step
# terms are generous. Measured on the 2-core development CPU in a fresh clone: 1,428.9 s of a 2,370 s bound at
# 04c9d70 (600 trials, 0.60); with the earlier 504 trials, 1,154-1,202 s of 2,130 s (0.54-0.56).
TIME_SHARE = 0.6


def macs(config: TrainConfig) -> int:
    """Multiply-adds of one example's forward pass: the sum of the weight matrices' sizes."""
    sizes = [IN_DIM, *config.hidden, N_CLASSES]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def n_params(config: TrainConfig) -> int:
    from mlplab.planner import n_params

    return n_params(config)


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
    param_steps = steps_per_epoch(c0) * sum(c.epochs * n_params(c) for c in configs)
    seconds = flops / ASSUMED_FLOPS[c0.precision] + steps * per_step + param_steps * PARAM_STEP_SECONDS
    return Estimate(model_epochs, flops, seconds)


def populations(trials: list[TrainConfig]) -> list[list[TrainConfig]]:
    """`trials` grouped into populations as a sweep on a CPU groups them (by their shared fields, each population
    within planner.CPU_MAX_PARAMS parameters; memory is assumed ample)."""
    from mlplab import planner

    return [list(p.configs) for p in planner.plan(trials, 1 << 62, params_cap=planner.CPU_MAX_PARAMS)]


def estimate(trials: list[TrainConfig]) -> Estimate:
    """All `trials`, grouped into populations as the planner groups them on a CPU."""
    total = NOTHING
    for members in populations(trials):
        total = total + population_estimate(members)
    return total


def shares(trials: list[TrainConfig], part: list[TrainConfig]) -> Estimate:
    """The part of `estimate(trials)` that belongs to the trials in `part`: their own FLOPs and parameter steps, and
    a share of each population's step overhead in proportion to their number of models in it."""
    mine = set(part)
    total = NOTHING
    for members in populations(trials):
        own = [c for c in members if c in mine]
        if not own:
            continue
        whole, alone = population_estimate(members), population_estimate(own)
        rate = ASSUMED_FLOPS[members[0].precision]
        per_model = alone.flops / rate + steps_per_epoch(own[0]) * sum(c.epochs * n_params(c) for c in own) \
            * PARAM_STEP_SECONDS
        overhead = whole.seconds - whole.flops / rate - steps_per_epoch(members[0]) * PARAM_STEP_SECONDS \
            * sum(c.epochs * n_params(c) for c in members)
        total = total + Estimate(alone.model_epochs, alone.flops, per_model + overhead * len(own) / len(members))
    return total
