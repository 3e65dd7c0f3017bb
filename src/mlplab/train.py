"""Training: minibatch epochs, evaluation after each epoch, and divergence detection, for one model or many.

    >>> from mlplab import TrainConfig, train
    >>> result = train(TrainConfig(hidden=(256,), lr=0.1, epochs=10))
    >>> result.test_accuracy                                  # ~0.97 for the course's MLP

`train_population` trains M configs that share their layer shapes, activation, optimizer kind, schedule, batch
size and epochs as ONE population (every parameter stacked along the model axis M); `train` is M = 1. Models
that share a data-order seed share one minibatch stream (and one wide first-layer matmul); models with distinct
order seeds each get their own gathered batch, (M, B, D). A model whose loss or gradients turn non-finite is
frozen at that step and marked diverged; the others continue undisturbed, bit for bit.

The loop below drives a `population.Population` (the value holding everything the models carry): train an epoch,
evaluate, record early stopping, and `take` the survivors, so a model that stopped (diverged, or converged under
`patience`) leaves the population at the end of that epoch and costs nothing afterwards.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mlplab import data as data_mod
from mlplab.config import TrainConfig
from mlplab.device import (
    arithmetic,
    deterministic_mode,
    keep_freed_memory,
    matmul_precision,
    resolve_device,
    synchronize,
)
from mlplab.mlp import Params, layer_sizes
from mlplab.outcomes import COLLAPSE_FACTOR
from mlplab.population import SHARED_FIELDS, EpochPlan, Population, check_compatible, evaluate  # noqa: F401


@dataclass
class TrainResult:
    """Everything one training run produced, with the config that produced it."""

    config: TrainConfig
    history: list[dict]  # one dict per epoch: train_loss, val_loss, val_accuracy, test_loss, test_accuracy, seconds
    params: Params  # reported parameters (the best epoch's with early stopping, else the last), model axis of 1
    diverged: bool = False
    diverged_at: dict | None = None  # {"epoch": e, "step": s}: where the loss or a gradient turned non-finite
    seconds: float = 0.0  # wall time of training and evaluation (data loading excluded)
    device: str = "cpu"
    extra: dict = field(default_factory=dict)
    best_epoch: int | None = None  # with early stopping: the epoch reported (lowest val loss); None: the last
    # Why training ended: "converged" (early stopping: no val-loss improvement for `patience` epochs), "budget"
    # (ran all `epochs`), "collapsed" (finite, but its reported val accuracy is below COLLAPSE_FACTOR x chance),
    # "diverged" (a loss or gradient turned non-finite)
    outcome: str = "budget"

    @property
    def reported(self) -> dict:
        """The epoch whose metrics are reported: the best with early stopping, else the last ({} if none)."""
        if not self.history:
            return {}
        return self.history[(self.best_epoch or len(self.history)) - 1]

    def _last(self, key):
        return self.reported.get(key)

    @property
    def stopped_epoch(self) -> int:
        """The last epoch trained."""
        return len(self.history)

    @property
    def test_accuracy(self) -> float | None:
        return self._last("test_accuracy")

    @property
    def val_accuracy(self) -> float | None:
        return self._last("val_accuracy")

    @property
    def train_loss(self) -> float | None:
        return self._last("train_loss")

    def summary(self) -> dict:
        """A JSON-ready dict: final metrics, divergence, timing and the resolved config (no NaN, no tensors)."""
        return _json_safe({
            "test_accuracy": self.test_accuracy,
            "val_accuracy": self.val_accuracy,
            "train_loss": self.train_loss,
            "test_loss": self._last("test_loss"),
            "val_loss": self._last("val_loss"),
            "epochs": len(self.history),
            "best_epoch": self.best_epoch,
            "outcome": self.outcome,
            "seconds": self.seconds,
            "diverged": self.diverged,
            "diverged_at": self.diverged_at,
            "device": self.device,
            "history": self.history,
            "config": self.config.to_dict(),
        })


def train(config: TrainConfig | dict | None = None, *, device: str | torch.device = "auto", splits=None,
          progress: bool | None = None, on_epoch: Callable[[int, list[dict]], None] | None = None,
          deterministic: bool = False) -> TrainResult:
    """Train one model from scratch. `config` may be a TrainConfig, a dict of its fields, or None (defaults)."""
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    return train_population([config], device=device, splits=splits, progress=progress, on_epoch=on_epoch,
                            deterministic=deterministic)[0]


def train_population(configs: list[TrainConfig], *, device: str | torch.device = "auto", splits=None,
                     progress: bool | None = None, on_epoch: Callable[[int, list[dict]], None] | None = None,
                     deterministic: bool = False) -> list[TrainResult]:
    """Train M configs together as one population; returns one TrainResult per config, in order.

    `deterministic` turns on PyTorch's deterministic algorithms for the run (see device.deterministic)."""
    assert configs, "need at least one config"
    dev = resolve_device(device)
    with deterministic_mode(deterministic), matmul_precision(dev, configs[0].precision):
        return _train_population(configs, dev, splits, progress, on_epoch)


def _train_population(configs, dev: torch.device, splits, progress, on_epoch) -> list[TrainResult]:
    check_compatible(configs)
    # Models that share a data-order seed read one minibatch stream; sort them into contiguous groups.
    order = sorted(range(len(configs)), key=lambda i: configs[i].order_seed)
    c0 = configs[0]
    if dev.type == "cpu":
        keep_freed_memory()
    if splits is None:
        splits = data_mod.make_splits(data_mod.load_dataset(c0.data), c0.val_size)
    data_mod.check_batch_size(c0.batch_size, splits)
    X, Y = data_mod.to_tensors(splits.train_x, splits.train_y, dev)  # (N, D), (N,)
    evals = {"val": data_mod.to_tensors(splits.val_x, splits.val_y, dev),
             "test": data_mod.to_tensors(splits.test_x, splits.test_y, dev)}
    n_classes = int(max(splits.train_y.max(), splits.test_y.max())) + 1
    sizes = layer_sizes(X.shape[1], c0.hidden, n_classes)
    plan = EpochPlan.of(c0, len(X))

    pop = Population.create([configs[i] for i in order], sizes, dev, ids=order)
    histories: list[list[dict]] = [[] for _ in configs]  # in the caller's order
    results: list[TrainResult | None] = [None] * len(configs)
    M = len(configs)
    bar = progress_bar(plan.total_steps, progress, "training" if M == 1 else f"training {M} models", "step")
    t_start = time.perf_counter()
    train_seconds = 0.0
    for epoch in range(1, c0.epochs + 1):
        t_epoch = time.perf_counter()
        loss_sum, loss_steps = pop.train_epoch(X, Y, plan, on_step=lambda: bar.update(1))
        synchronize(dev)  # a GPU runs ahead of the host: count the epoch's kernels, not just their launches
        train_seconds += time.perf_counter() - t_epoch
        with arithmetic(dev, c0.precision):
            metrics = pop.evaluate(evals)
        train_loss, n_steps = (loss_sum / loss_steps.clamp_min(1)).tolist(), loss_steps.tolist()
        for m, i in enumerate(pop.ids):
            histories[i].append({"epoch": epoch, "train_loss": train_loss[m] if n_steps[m] > 0 else float("nan"),
                                 **{k: v[m] for k, v in metrics.items()}, "seconds": train_seconds})
        if on_epoch is not None:
            rows = [None] * len(configs)
            for i in pop.ids:
                rows[i] = histories[i][-1]
            on_epoch(epoch, rows)  # in the caller's order; None for models that stopped before this epoch
        ends = pop.record(epoch, metrics)
        for m, why in enumerate(ends):
            if why is not None:
                results[pop.ids[m]] = _result(pop, m, why, histories[pop.ids[m]], plan, n_classes, dev)
        survivors = [m for m, why in enumerate(ends) if why is None]
        if not survivors:
            break
        if len(survivors) < pop.size:
            pop = pop.take(survivors)  # the stopped models leave: they cost nothing from here on
        bar.total = bar.n + plan.steps_per_epoch * (c0.epochs - epoch)  # fewer steps remain if all stop early
    bar.close()
    wall = time.perf_counter() - t_start
    for r in results:
        r.seconds = wall
        r.extra.update(population_size=len(configs), steps=pop.step)
    return results


def _result(pop: Population, m: int, why: str, history: list[dict], plan: EpochPlan, n_classes: int,
            dev) -> TrainResult:
    """Model m's TrainResult as it leaves the population: its reported weights, where it stopped and why."""
    died = int(pop.died_at[m])
    diverged = died >= 0
    best = None if diverged or pop.configs[m].patience == 0 else pop.best_epoch[m]
    outcome = why
    if not diverged:
        reported = history[(best or len(history)) - 1]
        if reported.get("val_accuracy", 1.0) < COLLAPSE_FACTOR / n_classes:
            outcome = "collapsed"
    return TrainResult(
        config=pop.configs[m],
        history=history,
        params=pop.reported(m),
        diverged=diverged,
        diverged_at={"epoch": died // plan.steps_per_epoch + 1, "step": died % plan.steps_per_epoch}
        if diverged else None,
        device=str(dev),
        best_epoch=best,
        outcome=outcome,
    )


def progress_bar(total: int, progress: bool | None, desc: str, unit: str):
    """A bar on stderr that disappears when closed; progress None: only when stderr is a terminal."""
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x
