"""Training: minibatch epochs, evaluation after each epoch, and divergence detection, for one model or many.

    >>> from mlplab import TrainConfig, train
    >>> result = train(TrainConfig(hidden=(256,), lr=0.1, epochs=10))
    >>> result.test_accuracy                                  # ~0.97 for the course's MLP

`train_population` trains M configs that share their layer shapes, activation, optimizer kind, schedule, batch
size and epochs as ONE population (every parameter stacked along the model axis M); `train` is M = 1. Models
that share a data-order seed share one minibatch stream (and one wide first-layer matmul); models with distinct
order seeds each get their own gathered batch, (M, B, D). A model whose loss or gradients turn non-finite is
frozen at that step and marked diverged; the others continue undisturbed.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mlplab import batchnorm as bn
from mlplab import data as data_mod
from mlplab import optim
from mlplab import regularization as reg
from mlplab.config import TrainConfig
from mlplab.device import (
    arithmetic,
    autocast,
    deterministic_mode,
    keep_freed_memory,
    matmul_precision,
    resolve_device,
    synchronize,
)
from mlplab.losses import correct, cross_entropy
from mlplab.mlp import Params, forward, forward_streams, init_mlp, layer_sizes, select
from mlplab.schedules import lr_factor

# Fields that must agree across a population; everything else may differ per model.
SHARED_FIELDS = ("hidden", "activation", "optimizer", "nesterov", "schedule", "warmup_steps", "step_size", "gamma",
                 "epochs", "batch_size", "val_size", "data", "precision", "batch_norm")
CHECK_EVERY = 50  # steps between host checks for "every model diverged" (the only per-step host sync)


@dataclass
class TrainResult:
    """Everything one training run produced, with the config that produced it."""

    config: TrainConfig
    history: list[dict]  # one dict per epoch: train_loss, val_loss, val_accuracy, test_loss, test_accuracy, seconds
    params: Params  # final parameters, model axis of size 1
    diverged: bool = False
    diverged_at: dict | None = None  # {"epoch": e, "step": s}: where the loss or a gradient turned non-finite
    seconds: float = 0.0  # wall time of training and evaluation (data loading excluded)
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def _last(self, key):
        return self.history[-1].get(key) if self.history else None

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
    configs = [configs[i] for i in order]
    position = {orig: m for m, orig in enumerate(order)}  # caller's index -> index in the population
    c0 = configs[0]
    if dev.type == "cpu":
        keep_freed_memory()
    if splits is None:
        splits = data_mod.make_splits(data_mod.load_dataset(c0.data), c0.val_size)
    data_mod.check_batch_size(c0.batch_size, splits)
    n_train = len(splits.train_x)

    X, Y = data_mod.to_tensors(splits.train_x, splits.train_y, dev)  # (N, D), (N,)
    evals = {"val": data_mod.to_tensors(splits.val_x, splits.val_y, dev),
             "test": data_mod.to_tensors(splits.test_x, splits.test_y, dev)}
    n_classes = int(max(splits.train_y.max(), splits.test_y.max())) + 1
    M = len(configs)
    sizes = layer_sizes(X.shape[1], c0.hidden, n_classes)

    params = init_mlp(sizes, [c.init for c in configs], [c.init_scale for c in configs], [c.seed for c in configs],
                      [c.bias_init for c in configs], batch_norm=c0.batch_norm)
    params = {k: v.to(dev).requires_grad_(True) for k, v in params.items()}
    stats = bn.init_stats(sizes, M, dev) if c0.batch_norm else {}  # running statistics: evaluated, not trained
    hp = _hyperparameters(configs, dev)
    state = optim.init_state(params, c0.optimizer)
    # Regularization: each part is skipped entirely when it is off for every model.
    seeds = [c.seed for c in configs]
    input_gens = reg.stream_generators(seeds, dev, "input_dropout") if any(c.dropout_input for c in configs) else None
    hidden_gens = reg.stream_generators(seeds, dev, "hidden_dropout") if any(c.dropout for c in configs) else None
    drop = None if hidden_gens is None else (lambda h: reg.dropout(h, hp["dropout"], hidden_gens))
    noise_gens = reg.stream_generators(seeds, dev, "noise") if any(c.noise for c in configs) else None
    norm = None
    batch_stats: dict[int, tuple[Tensor, Tensor]] = {}  # this step's batch statistics, per normalized layer
    if c0.batch_norm:
        def norm(i, z):  # training-time batch norm of hidden layer i, with the noise when there is noise
            n = None if noise_gens is None else reg.gaussian_noise(z, hp["noise"], noise_gens)
            out, mean, var = bn.batch_norm_train(z, params[f"g{i}"], params[f"b{i}"], n)
            batch_stats[i] = (mean, var)
            return out
    smoothing = hp["label_smoothing"] if isinstance(hp["label_smoothing"], float) else hp["label_smoothing"].view(M)
    cap = torch.tensor([c.max_norm or math.inf for c in configs], device=dev).view(M, 1, 1) if any(
        c.max_norm for c in configs) else None
    ema = {k: v.detach().clone() for k, v in params.items()} if any(c.ema for c in configs) else None

    def evaluated() -> Params:  # what evaluation sees and the results return: weights (or their average) and stats
        return {**(params if ema is None else ema), **stats}

    # Data order: one stream per distinct order seed, read by a contiguous group of models.
    order_seeds = sorted({c.order_seed for c in configs})
    seeds_of = [c.order_seed for c in configs]
    groups = [slice(seeds_of.index(s), len(seeds_of) - seeds_of[::-1].index(s)) for s in order_seeds]
    gens = [torch.Generator().manual_seed(s) for s in order_seeds]
    slices = data_mod.batch_slices(n_train, c0.batch_size)
    if c0.batch_norm and slices[-1].stop - slices[-1].start == 1 and len(slices) > 1:
        slices = slices[:-1]  # batch statistics of one example are meaningless (torch refuses them): skip it
    steps_per_epoch, total_steps = len(slices), len(slices) * c0.epochs

    alive = torch.ones(M, dtype=torch.bool, device=dev)  # (M,)
    died_at = torch.full((M,), -1, dtype=torch.long, device=dev)  # (M,) global step of divergence, -1: never
    histories: list[list[dict]] = [[] for _ in configs]
    host_checks = dev.type == "cpu"
    bar = _progress_bar(total_steps, progress, M)
    t_start = time.perf_counter()
    train_seconds = 0.0
    step = 0
    stopped = False
    for epoch in range(1, c0.epochs + 1):
        t_epoch = time.perf_counter()
        orders = torch.stack([data_mod.epoch_order(n_train, g) for g in gens]).to(dev)  # (S, N)
        loss_sum = torch.zeros(M, device=dev)
        loss_steps = torch.zeros(M, device=dev)
        for sl in slices:
            idx = orders[:, sl]  # (S, B)
            xs = [X[i] for i in idx]  # S batches (B, D)
            if len(groups) == 1:
                yb = Y[idx[0]]  # (B,): shared by all models
            else:
                yb = torch.cat([Y[i].expand(g.stop - g.start, -1) for i, g in zip(idx, groups)])  # (M, B)
            with autocast(dev, c0.precision):
                if input_gens is not None or noise_gens is not None:  # the input differs per model now
                    x = torch.cat([x.expand(g.stop - g.start, -1, -1) for x, g in zip(xs, groups)])  # (M, B, D)
                    if noise_gens is not None:
                        x = x + reg.gaussian_noise(x, hp["noise"], noise_gens)
                    if input_gens is not None:
                        x = reg.dropout(x, hp["dropout_input"], input_gens)
                    logits = forward(params, x, c0.activation, drop, norm)
                else:
                    logits = forward_streams(params, xs, groups, c0.activation, drop, norm)  # (M, B, C)
            losses = cross_entropy(logits.float(), yb, smoothing)  # (M,)
            grads = torch.autograd.grad(losses.sum(), list(params.values()))
            grads = dict(zip(params, grads))
            ok = _finite_per_model(losses, grads)  # (M,)
            died_at = torch.where(alive & ~ok, step, died_at)
            alive &= ok
            # Frozen models keep their parameters and optimizer state. On the CPU a host check is free, so the
            # usual all-alive case takes the fused in-place update; elsewhere the masked update avoids a sync.
            keep = None if host_checks and bool(alive.all()) else alive.view(M, 1, 1)
            lr = hp["lr"] * lr_factor(c0.schedule, step, total_steps, steps_per_epoch, c0.step_size, c0.gamma,
                                      c0.warmup_steps)
            if c0.optimizer == "sgd":
                optim.sgd_step(params, grads, state, lr, hp["momentum"], hp["weight_decay"], c0.nesterov, keep)
            else:
                optim.adam_step(params, grads, state, lr, (hp["beta1"], hp["beta2"]), hp["eps"],
                                hp["weight_decay"], decoupled=c0.optimizer == "adamw", keep=keep)
            for i, (mean, var) in batch_stats.items():  # after the finiteness check: a diverging model's stay
                bn.update_running_(stats[f"mean{i}"], stats[f"var{i}"], mean, var, keep)
            if cap is not None:
                reg.clip_max_norm_(params, cap)
            if ema is not None:
                reg.ema_update_(ema, params, hp["ema"], step)
            loss_sum += torch.where(ok, losses.detach(), 0.0)
            loss_steps += ok
            step += 1
            bar.update(1)
            if step % CHECK_EVERY == 0 and not bool(alive.any()):
                stopped = True
                break
        synchronize(dev)  # a GPU runs ahead of the host: count the epoch's kernels, not just their launches
        train_seconds += time.perf_counter() - t_epoch
        with arithmetic(dev, c0.precision):
            metrics = evaluate(evaluated(), evals, c0.activation)
        train_loss = (loss_sum / loss_steps.clamp_min(1)).tolist()
        n_steps = loss_steps.tolist()
        for m in range(M):
            histories[m].append({
                "epoch": epoch,
                "train_loss": train_loss[m] if n_steps[m] > 0 else float("nan"),
                **{k: v[m] for k, v in metrics.items()},
                "seconds": train_seconds,
            })
        if on_epoch is not None:
            on_epoch(epoch, [histories[position[i]][-1] for i in range(M)])  # in the caller's order
        if stopped or not bool(alive.any()):
            break
    bar.close()
    wall = time.perf_counter() - t_start

    died = died_at.tolist()
    results = [None] * M
    for m, c in enumerate(configs):
        at = None
        if died[m] >= 0:
            at = {"epoch": died[m] // steps_per_epoch + 1, "step": died[m] % steps_per_epoch}
        results[order[m]] = TrainResult(
            config=c,
            history=histories[m],
            params={k: v.detach() for k, v in select(evaluated(), m).items()},
            diverged=died[m] >= 0,
            diverged_at=at,
            seconds=wall,
            device=str(dev),
            extra={"population_size": M, "steps": step},
        )
    return results


@torch.no_grad()
def evaluate(params: Params, evals: dict[str, tuple[Tensor, Tensor]], activation: str,
             max_elements: int = 1 << 26) -> dict[str, list[float]]:
    """Loss and accuracy of every model on each named split, as lists over models: {"val_loss": [...], ...}."""
    M = next(iter(params.values())).shape[0]
    widest = max(v.shape[-1] for v in params.values())
    out = {}
    for name, (x, y) in evals.items():
        if len(x) == 0:
            continue
        chunk = max(1, min(len(x), max_elements // (M * widest)))
        loss = torch.zeros(M, device=x.device, dtype=torch.float64)
        hits = torch.zeros(M, device=x.device, dtype=torch.long)
        for i in range(0, len(x), chunk):
            logits = forward(params, x[i:i + chunk], activation).float()  # (M, b, C)
            loss += cross_entropy(logits, y[i:i + chunk]).double() * logits.shape[1]
            hits += correct(logits, y[i:i + chunk])
        out[f"{name}_loss"] = (loss / len(x)).tolist()
        out[f"{name}_accuracy"] = (hits.double() / len(x)).tolist()
    return out


def _finite_per_model(losses: Tensor, grads: Params) -> Tensor:
    """(M,) True where the loss and every gradient entry of that model are finite (one reduction per tensor)."""
    total = losses.detach().clone()  # (M,)
    for g in grads.values():
        total += g.flatten(1).sum(dim=1)  # a NaN or inf anywhere makes the model's sum non-finite
    return torch.isfinite(total)


def check_compatible(configs: list[TrainConfig]) -> None:
    """Raise ValueError unless all configs can train as one population (same SHARED_FIELDS)."""
    c0 = configs[0]
    for c in configs[1:]:
        for f in SHARED_FIELDS:
            if getattr(c, f) != getattr(c0, f):
                raise ValueError(f"configs of one population must share {f}: {getattr(c0, f)!r} vs {getattr(c, f)!r}")


def _hyperparameters(configs: list[TrainConfig], dev) -> dict:
    """Per-model hyperparameters as (M, 1, 1) tensors; a term that is 0 for every model becomes the float 0.0."""
    out = {}
    for name in ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps", "dropout_input", "dropout",
                 "label_smoothing", "ema", "noise"):
        values = [float(getattr(c, name)) for c in configs]
        if name not in ("lr", "beta1", "beta2", "eps") and not any(values):
            out[name] = 0.0
        else:
            out[name] = torch.tensor(values, device=dev).view(-1, 1, 1)
    return out


def _progress_bar(total: int, progress: bool | None, M: int):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if progress is None else progress
    desc = "training" if M == 1 else f"training {M} models"
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x
