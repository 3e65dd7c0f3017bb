"""A population: M models of one shape trained together, held as ONE value.

Everything a run carries from step to step lives here, each per-model tensor with the model axis M first:
parameters, optimizer state, batch-norm running statistics, the weight average (EMA), the hyperparameter tensors,
each model's random generators, and the bookkeeping (alive, where it diverged, early stopping, its best weights).
Its operations:

    >>> pop = Population.create(configs, sizes, device)    # configs share SHARED_FIELDS, sorted by order seed
    >>> loss, steps = pop.train_epoch(X, Y, plan)          # one pass over the training split
    >>> metrics = pop.evaluate(evals)                     # {"val_loss": [M floats], ...}
    >>> ended = pop.record(epoch, metrics)                # early stopping: the models that stop after this epoch
    >>> pop = pop.take([0, 2])                            # keep models 0 and 2, compacted along M

`take` compacts every per-model tensor along M, so a model that stopped (converged, diverged, or collapsed) costs
nothing afterwards. The survivors' numbers match a population built without the removed models to float32
rounding (tested at rtol 1e-5), and evaluation is computed per model, so it does not depend on M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from mlplab import batchnorm as bn
from mlplab import data as data_mod
from mlplab import optim
from mlplab import regularization as reg
from mlplab.config import TrainConfig
from mlplab.device import autocast
from mlplab.losses import correct, cross_entropy, one_hot
from mlplab.mlp import Params, forward, forward_streams, init_mlp, n_layers
from mlplab.schedules import lr_factor
from mlplab.seeds import generator

# Fields that must agree across a population; everything else may differ per model.
SHARED_FIELDS = ("hidden", "activation", "optimizer", "nesterov", "schedule", "warmup_steps", "step_size", "gamma",
                 "epochs", "batch_size", "val_size", "data", "precision", "batch_norm")
HYPERPARAMETERS = ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps", "dropout_input", "dropout",
                   "label_smoothing", "ema", "noise")
RANDOM_STREAMS = {"input_dropout": "dropout_input", "hidden_dropout": "dropout", "noise": "noise"}  # stream: field
CHECK_EVERY = 50  # steps between host checks for "every model diverged" (the only per-step host sync off the CPU)


@dataclass
class EpochPlan:
    """What every epoch of a population shares: its minibatch slices and the schedule's horizon."""

    slices: list[slice]  # minibatches of one epoch, over positions of the shuffled order
    total_steps: int  # the schedule's horizon: steps in `epochs` (the budget), whether or not a model stops early

    @classmethod
    def of(cls, c0: TrainConfig, n_train: int) -> EpochPlan:
        slices = data_mod.batch_slices(n_train, c0.batch_size)
        if c0.batch_norm and slices[-1].stop - slices[-1].start == 1 and len(slices) > 1:
            slices = slices[:-1]  # batch statistics of one example are meaningless (torch refuses them): skip it
        return cls(slices, len(slices) * c0.epochs)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.slices)


@dataclass
class Population:
    configs: list[TrainConfig]  # M configs, sorted by data-order seed (models of one order seed are contiguous)
    ids: list[int]  # the caller's index of each model
    params: Params  # trainable leaves (M, ...), requires_grad
    opt_state: dict  # optimizer state: per-model tensors (M, ...) and Adam's shared step count t
    stats: Params  # batch-norm running statistics (M, 1, H); {} without batch norm
    ema: Params | None  # weight average evaluated instead of params; None when no model averages
    hp: dict  # per-model hyperparameters (M, 1, 1), or the float 0.0 for a term off in every model
    cap: Tensor | None  # (M, 1, 1) max-norm caps (inf: none); None when no model caps
    gens: dict[str, list[torch.Generator] | None]  # per-model generators of each random stream, None when unused
    order_gens: dict[int, torch.Generator]  # one CPU generator per data-order seed (shared by that seed's models)
    alive: Tensor  # (M,) bool: False once a model's loss or gradients turned non-finite (frozen from then on)
    died_at: Tensor  # (M,) long: global step of divergence, -1 for never
    step: int = 0  # optimizer steps taken (shared by the population)
    # Early stopping, per model: the lowest validation loss so far, its epoch, epochs since, and its weights.
    best_loss: list[float] = field(default_factory=list)
    best_epoch: list[int] = field(default_factory=list)
    bad_epochs: list[int] = field(default_factory=list)
    best: Params | None = None  # evaluated parameters at each model's best epoch; None when no model stops early
    all_alive: bool = True  # a cached "alive.all()" (False is always safe: it only means the masked update is used)

    # -- building and compacting ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, configs: list[TrainConfig], sizes: list[int], dev: torch.device,
               ids: list[int] | None = None) -> Population:
        """Fresh models for `configs` (which must share SHARED_FIELDS and be sorted by order seed)."""
        check_compatible(configs)
        assert all(a.order_seed <= b.order_seed for a, b in zip(configs, configs[1:])), "sort configs by order seed"
        c0, M = configs[0], len(configs)
        params = init_mlp(sizes, [c.init for c in configs], [c.init_scale for c in configs],
                          [c.seed for c in configs], [c.bias_init for c in configs], batch_norm=c0.batch_norm)
        params = {k: v.to(dev).requires_grad_(True) for k, v in params.items()}
        hp = {}
        for name in HYPERPARAMETERS:
            values = [float(getattr(c, name)) for c in configs]
            always = name in ("lr", "beta1", "beta2", "eps")
            hp[name] = torch.tensor(values, device=dev).view(M, 1, 1) if always or any(values) else 0.0
        gens = {stream: reg.stream_generators([c.seed for c in configs], dev, stream)
                if any(getattr(c, f) for c in configs) else None for stream, f in RANDOM_STREAMS.items()}
        pop = cls(
            configs=list(configs),
            ids=list(range(M)) if ids is None else list(ids),
            params=params,
            opt_state=optim.init_state(params, c0.optimizer),
            stats=bn.init_stats(sizes, M, dev) if c0.batch_norm else {},
            ema={k: v.detach().clone() for k, v in params.items()} if any(c.ema for c in configs) else None,
            hp=hp,
            cap=torch.tensor([c.max_norm or math.inf for c in configs], device=dev).view(M, 1, 1)
            if any(c.max_norm for c in configs) else None,
            gens=gens,
            order_gens={s: generator(s, "order") for s in sorted({c.order_seed for c in configs})},
            alive=torch.ones(M, dtype=torch.bool, device=dev),
            died_at=torch.full((M,), -1, dtype=torch.long, device=dev),
            best_loss=[math.inf] * M,
            best_epoch=[0] * M,
            bad_epochs=[0] * M,
        )
        if any(c.patience for c in configs):
            pop.best = {k: v.detach().clone() for k, v in pop.evaluated().items()}
        return pop

    def take(self, indices: list[int]) -> Population:
        """The population of models `indices` only (kept in their order), every per-model tensor compacted along M.

        Parameters become new leaves; generators move over as they are (they keep their place in their streams)."""
        idx = sorted(indices)
        assert len(set(idx)) == len(idx) and all(0 <= i < self.size for i in idx), f"bad indices {indices}"
        return self._rows(idx)

    def join(self, other: Population) -> Population:
        """This population with `other`'s models added (a refill: fresh models join one that has trained a while).

        Both must share SHARED_FIELDS. The result keeps the models sorted by data-order seed, and this population's
        step count and data-order generators: a joining model whose order seed is here already reads that stream
        from where it is, not from its start. A per-model part only one side uses is filled in for the other side
        with what leaves its models' numbers unchanged (a dropout or noise rate of 0, no max-norm cap, an average
        equal to the weights). Adam's step count is shared by a population, so models that have taken different
        numbers of Adam steps cannot join (ValueError)."""
        configs = self.configs + other.configs
        check_compatible(configs)
        if "t" in self.opt_state and self.opt_state["t"] != other.opt_state["t"]:
            raise ValueError(f"models that took {other.opt_state['t']} Adam steps cannot join a population that took "
                             f"{self.opt_state['t']}: Adam's step count t is shared by a population")
        dev, pops = self.alive.device, (self, other)

        def cat(parts):  # {name: (M_i, ...)} per side -> {name: (M, ...)}
            return {k: torch.cat([p[k].detach() for p in parts]) for k in parts[0]}

        def both(get, fill):  # a per-model dict that one side may lack (None): fill that side in
            if all(get(p) is None for p in pops):
                return None
            return cat([get(p) if get(p) is not None else fill(p) for p in pops])

        def column(values):  # per side an (M_i, 1, 1) tensor, or one number for all its models -> (M, 1, 1)
            return torch.cat([v if isinstance(v, Tensor) else torch.full((p.size, 1, 1), float(v), device=dev)
                              for v, p in zip(values, pops)])

        def hp(name):
            a, b = self.hp[name], other.hp[name]
            if not isinstance(a, Tensor) and not isinstance(b, Tensor) and a == b:
                return a  # a term off (0.0) in every model stays a plain float
            return column((a, b))

        state = {k: (cat([p.opt_state[k] for p in pops]) if isinstance(v, dict) else v)
                 for k, v in self.opt_state.items()}
        gens = {stream: None if all(p.gens[stream] is None for p in pops) else
                [g for p in pops for g in (p.gens[stream] if p.gens[stream] is not None else
                                           reg.stream_generators([c.seed for c in p.configs], dev, stream))]
                for stream in self.gens}
        joined = replace(
            self,
            configs=configs,
            ids=self.ids + other.ids,
            params={k: v.requires_grad_(True) for k, v in cat([p.params for p in pops]).items()},
            opt_state=state,
            stats=cat([p.stats for p in pops]) if self.stats else {},
            ema=both(lambda p: p.ema, lambda p: {k: v.detach().clone() for k, v in p.params.items()}),
            hp={name: hp(name) for name in self.hp},
            cap=None if self.cap is None and other.cap is None else column(
                [math.inf if p.cap is None else p.cap for p in pops]),
            gens=gens,
            order_gens=dict(sorted({**other.order_gens, **self.order_gens}.items())),
            alive=torch.cat([self.alive, other.alive]),
            all_alive=self.all_alive and other.all_alive,
            died_at=torch.cat([self.died_at, other.died_at]),
            best_loss=self.best_loss + other.best_loss,
            best_epoch=self.best_epoch + other.best_epoch,
            bad_epochs=self.bad_epochs + other.bad_epochs,
            best=both(lambda p: p.best, lambda p: {k: v.detach().clone() for k, v in p.evaluated().items()}),
        )
        order = sorted(range(joined.size), key=lambda i: configs[i].order_seed)  # stable: a stream's models stay
        return joined if order == list(range(joined.size)) else joined._rows(order)  # in their order

    def _rows(self, idx: list[int]) -> Population:
        """The population of models idx, in that order (every per-model tensor indexed along M)."""
        dev = self.alive.device
        at = torch.tensor(idx, dtype=torch.long, device=dev)
        alive = self.alive.index_select(0, at)

        def rows(d):
            return None if d is None else {k: v.detach().index_select(0, at) for k, v in d.items()}

        state = {k: (rows(v) if isinstance(v, dict) else v) for k, v in self.opt_state.items()}
        configs = [self.configs[i] for i in idx]
        return replace(
            self,
            configs=configs,
            ids=[self.ids[i] for i in idx],
            params={k: v.requires_grad_(True) for k, v in rows(self.params).items()},
            opt_state=state,
            stats=rows(self.stats),
            ema=rows(self.ema),
            hp={k: v.index_select(0, at) if isinstance(v, Tensor) else v for k, v in self.hp.items()},
            cap=None if self.cap is None else self.cap.index_select(0, at),
            gens={k: None if g is None else [g[i] for i in idx] for k, g in self.gens.items()},
            order_gens={s: g for s, g in self.order_gens.items() if any(c.order_seed == s for c in configs)},
            alive=alive,
            all_alive=bool(alive.all()),
            died_at=self.died_at.index_select(0, at),
            best_loss=[self.best_loss[i] for i in idx],
            best_epoch=[self.best_epoch[i] for i in idx],
            bad_epochs=[self.bad_epochs[i] for i in idx],
            best=rows(self.best),
        )

    @property
    def size(self) -> int:
        return len(self.configs)

    def evaluated(self) -> Params:
        """What evaluation sees: the weights (or their average) and the running statistics, (M, ...)."""
        return {**(self.params if self.ema is None else self.ema), **self.stats}

    def reported(self, m: int) -> Params:
        """Model m's reported parameters (model axis of size 1): its best epoch's under early stopping, else (and
        for a diverged model, frozen before the step that broke it) the current ones."""
        use_best = self.best is not None and self.configs[m].patience and int(self.died_at[m]) < 0
        source = self.best if use_best else self.evaluated()
        return {k: v[m:m + 1].detach().clone() for k, v in source.items()}

    # -- training ------------------------------------------------------------------------------------------------
    def groups(self) -> list[slice]:
        """The contiguous slice of the model axis that reads each data-order stream, in order-seed order."""
        seeds = [c.order_seed for c in self.configs]
        return [slice(seeds.index(s), len(seeds) - seeds[::-1].index(s)) for s in self.order_gens]

    def train_epoch(self, X: Tensor, Y: Tensor, plan: EpochPlan, on_step=None) -> tuple[Tensor, Tensor]:
        """One pass over the training split (X (N, D), Y (N,)). Returns each model's summed finite training loss
        and its count of finite steps, both (M,). A model whose loss or gradients turn non-finite is frozen at
        that step (alive False); `on_step()` is called after every step."""
        M, dev = self.size, self.alive.device
        groups = self.groups()
        orders = torch.stack([data_mod.epoch_order(len(X), g) for g in self.order_gens.values()]).to(dev)  # (S, N)
        hot = one_hot(Y, self.n_classes()).float()  # (N, C): each step picks its batch's rows
        host_checks = dev.type == "cpu"
        step_losses, step_ok = [], []  # per step (M,): summed once at the end, not with two operations per step
        for sl in plan.slices:
            losses, ok = self._step(X, hot, orders[:, sl], groups, plan, host_checks)
            step_losses.append(losses)
            step_ok.append(ok)
            if on_step is not None:
                on_step()
            if self.step % CHECK_EVERY == 0 and not bool(self.alive.any()):
                break
        if not step_losses:
            return torch.zeros(M, device=dev), torch.zeros(M, device=dev)
        ok = torch.stack(step_ok)  # (steps, M)
        return torch.where(ok, torch.stack(step_losses), 0.0).sum(0), ok.sum(0, dtype=torch.float32)

    def n_classes(self) -> int:
        return self.params[f"w{n_layers(self.params) - 1}"].shape[-1]

    def _step(self, X, hot, idx: Tensor, groups: list[slice], plan: EpochPlan, host_checks: bool):
        """One optimizer step of every model on the batch rows idx (S, B); hot (N, C) the one-hot labels of X.
        Returns (losses (M,), finite (M,)). On the CPU with every model alive, this is a short, fixed list of
        operations (a single small model's step time is mostly per-operation overhead, not arithmetic)."""
        c0, M, hp, params = self.configs[0], self.size, self.hp, self.params
        if len(groups) == 1:
            xs = [X.index_select(0, idx[0])]  # (B, D); index_select: a quarter of X[i]'s time for a batch
            hb = hot.index_select(0, idx[0])  # (B, C): shared by all models
        else:
            xs = [X[i] for i in idx]  # S batches (B, D)
            hb = torch.cat([hot[i].expand(g.stop - g.start, -1, -1) for i, g in zip(idx, groups)])  # (M, B, C)
        hidden_gens, noise_gens = self.gens["hidden_dropout"], self.gens["noise"]
        input_gens = self.gens["input_dropout"]
        drop = None if hidden_gens is None else (lambda h: reg.dropout(h, hp["dropout"], hidden_gens))
        batch_stats: dict[int, tuple[Tensor, Tensor]] = {}  # this step's batch statistics, per normalized layer
        norm = None
        if c0.batch_norm:
            def norm(i, z):  # training-time batch norm of hidden layer i, with the noise when there is noise
                n = None if noise_gens is None else reg.gaussian_noise(z, hp["noise"], noise_gens)
                out, mean, var = bn.batch_norm_train(z, params[f"g{i}"], params[f"b{i}"], n)
                batch_stats[i] = (mean, var)
                return out
        dev = self.alive.device
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
        smoothing = hp["label_smoothing"] if isinstance(hp["label_smoothing"], float) else hp["label_smoothing"].view(M)
        losses = cross_entropy(logits.float(), None, smoothing, hot=hb)  # (M,)
        grads = dict(zip(params, torch.autograd.grad(losses.sum(), list(params.values()))))
        ok = _finite_per_model(losses, grads)  # (M,)
        # Frozen models keep their parameters and optimizer state; the masked update gives the others the same
        # bits as the unmasked one. On the CPU a host check is free, so the all-alive case skips the mask (and the
        # bookkeeping of who died when).
        clean = host_checks and self.all_alive and bool(ok.all())
        if not clean:
            self.died_at = torch.where(self.alive & ~ok, self.step, self.died_at)
            self.alive &= ok
            self.all_alive = host_checks and bool(self.alive.all())
        keep = None if clean or self.all_alive else self.alive.view(M, 1, 1)
        factor = lr_factor(c0.schedule, self.step, plan.total_steps, plan.steps_per_epoch, c0.step_size, c0.gamma,
                           c0.warmup_steps)
        lr = hp["lr"] if factor == 1.0 else hp["lr"] * factor  # (M, 1, 1)
        if c0.optimizer == "sgd":
            optim.sgd_step(params, grads, self.opt_state, lr, hp["momentum"], hp["weight_decay"], c0.nesterov, keep)
        else:
            optim.adam_step(params, grads, self.opt_state, lr, (hp["beta1"], hp["beta2"]), hp["eps"],
                            hp["weight_decay"], decoupled=c0.optimizer == "adamw", keep=keep)
        for i, (mean, var) in batch_stats.items():  # after the finiteness check: a diverging model's stay
            bn.update_running_(self.stats[f"mean{i}"], self.stats[f"var{i}"], mean, var, keep)
        if self.cap is not None:
            reg.clip_max_norm_(params, self.cap)
        if self.ema is not None:
            reg.ema_update_(self.ema, params, hp["ema"], self.step)
        self.step += 1
        return losses.detach(), ok

    # -- evaluation and early stopping ---------------------------------------------------------------------------
    def evaluate(self, evals: dict[str, tuple[Tensor, Tensor]]) -> dict[str, list[float]]:
        """Loss and accuracy of every model on each named split, as lists over models: {"val_loss": [...], ...}."""
        return evaluate(self.evaluated(), evals, self.configs[0].activation)

    def record(self, epoch: int, metrics: dict[str, list[float]]) -> list[str | None]:
        """Update early stopping with this epoch's metrics; return per model why it stops now, or None to go on:
        "diverged", "converged" (no val-loss improvement > min_delta for `patience` epochs) or "budget"."""
        c0 = self.configs[0]
        alive = self.alive.tolist()
        improved = []
        for m, c in enumerate(self.configs):
            loss = metrics.get("val_loss", [math.nan] * self.size)[m]
            better = alive[m] and (c.patience == 0 or loss < self.best_loss[m] - c.min_delta)
            improved.append(better)
            if better:
                self.best_loss[m], self.best_epoch[m], self.bad_epochs[m] = loss, epoch, 0
            else:
                self.bad_epochs[m] += 1
        if self.best is not None and any(improved):
            now = self.evaluated()
            mask = torch.tensor(improved, device=self.alive.device)
            for k, v in self.best.items():
                v.copy_(torch.where(mask.view(-1, *[1] * (v.dim() - 1)), now[k].detach(), v))
        ends = []
        for m, c in enumerate(self.configs):
            if not alive[m]:
                ends.append("diverged")
            elif c.patience and self.bad_epochs[m] >= c.patience:
                ends.append("converged")
            elif epoch >= c0.epochs:
                ends.append("budget")
            else:
                ends.append(None)
        return ends


@torch.no_grad()
def evaluate(params: Params, evals: dict[str, tuple[Tensor, Tensor]], activation: str,
             chunk: int = 2000, max_elements: int = 1 << 26) -> dict[str, list[float]]:
    """Loss and accuracy of every model on each named split, as lists over models: {"val_loss": [...], ...}.

    Images go through in chunks of `chunk` and the models in blocks of at most `max_elements` activations, each
    model on its own input copy (M, b, D), so a model's numbers are the same whatever the population around it."""
    M = next(iter(params.values())).shape[0]
    widest = max(v.shape[-1] for v in params.values())
    block = max(1, max_elements // (chunk * widest))
    out = {}
    for name, (x, y) in evals.items():
        if len(x) == 0:
            continue
        loss = torch.zeros(M, device=x.device, dtype=torch.float64)
        hits = torch.zeros(M, device=x.device, dtype=torch.long)
        for a in range(0, M, block):
            part = {k: v[a:a + block] for k, v in params.items()}
            mb = min(block, M - a)
            for i in range(0, len(x), chunk):
                xb = x[i:i + chunk].expand(mb, -1, -1)  # (mb, b, D): a view; one batched product per model
                logits = forward(part, xb, activation).float()  # (mb, b, C)
                loss[a:a + mb] += cross_entropy(logits, y[i:i + chunk]).double() * logits.shape[1]
                hits[a:a + mb] += correct(logits, y[i:i + chunk])
        out[f"{name}_loss"] = (loss / len(x)).tolist()
        out[f"{name}_accuracy"] = (hits.double() / len(x)).tolist()
    return out


def _finite_per_model(losses: Tensor, grads: Params) -> Tensor:
    """(M,) True where the loss and every gradient entry of that model are finite (one reduction per tensor)."""
    sums = torch.stack([g.sum(dim=tuple(range(1, g.dim()))) for g in grads.values()])  # (tensors, M)
    return torch.isfinite(losses.detach() + sums.sum(0))  # a NaN or inf anywhere makes the model's sum non-finite


def check_compatible(configs: list[TrainConfig]) -> None:
    """Raise ValueError unless all configs can train as one population (same SHARED_FIELDS)."""
    c0 = configs[0]
    for c in configs[1:]:
        for f in SHARED_FIELDS:
            if getattr(c, f) != getattr(c0, f):
                raise ValueError(f"configs of one population must share {f}: {getattr(c0, f)!r} vs {getattr(c, f)!r}")
