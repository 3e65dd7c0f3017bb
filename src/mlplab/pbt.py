"""Population-based training (Jaderberg et al. 2017) on a population: exploit is a row copy along the model axis M,
explore perturbs the copied hyperparameters.

    >>> moves = plan_exploit({0: 0.91, 1: 0.87, 2: 0.95, 3: 0.60}, fraction=0.25, rng=random.Random(0))  # [(3, 2)]
    >>> exploit(pop, dst=[3], src=[2])          # weights, optimizer state, statistics, EMA: exact copies of row 2
    >>> set_hyperparameters(pop, 3, {"lr": perturb(0.05, 1e-4, 1.0, log=True, integer=False, rng=rng)})

Everything a model carries moves with the copy except its identity: the member keeps its own random streams
(dropout, noise) and its own data order, as a PBT worker keeps its own data loader.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor

from mlplab.population import HYPERPARAMETERS, Population

PERTURB = (0.8, 1.2)  # explore: multiply by one of these (the paper's factors), then clip to the search range
# Per-model settings a member takes over from the member it copies (its weights came from there)
COPIED_FIELDS = (*HYPERPARAMETERS, "max_norm", "init", "init_scale", "bias_init")
SETTABLE = (*HYPERPARAMETERS, "max_norm")  # what set_hyperparameters can change in a training population


def plan_exploit(scores: dict, fraction: float, rng: random.Random) -> list[tuple]:
    """Which members copy which: the bottom `fraction` (lowest scores; ties: the larger key ranks lower) each
    take a member drawn from the top `fraction`. Returns [(dst, src), ...] of `scores`' keys; [] when the
    fraction of the members rounds down to none."""
    ranked = sorted(scores, key=lambda k: (scores[k], -k if isinstance(k, int) else 0))  # worst first
    q = int(len(ranked) * fraction)
    if q == 0:
        return []
    bottom, top = ranked[:q], ranked[-q:]
    return [(d, rng.choice(top)) for d in bottom]


def perturb(value: float, low: float, high: float, log: bool, integer: bool, rng: random.Random,
            factors: tuple[float, float] = PERTURB) -> float | int:
    """value times a factor drawn from `factors`, clipped to [low, high] (rounded for integers)."""
    new = min(high, max(low, value * rng.choice(factors)))
    if integer:
        new = int(min(high, max(low, round(new))))
    return new


@torch.no_grad()
def exploit(pop: Population, dst: list[int], src: list[int]) -> None:
    """Overwrite models `dst` with exact copies of models `src` (rows of the model axis; dst[i] <- src[i]):
    parameters, optimizer state, batch-norm statistics, weight average, best-epoch weights, hyperparameter
    tensors, max-norm caps, divergence bookkeeping, and the per-model fields of their configs."""
    assert len(dst) == len(src) and not set(dst) & set(src), f"dst {dst} and src {src} must be disjoint pairs"
    if not dst:
        return
    dev = pop.alive.device
    d = torch.tensor(dst, dtype=torch.long, device=dev)
    s = torch.tensor(src, dtype=torch.long, device=dev)

    def copy_rows(t: Tensor) -> None:
        t.index_copy_(0, d, t.index_select(0, s))  # the source rows are read out first: no aliasing

    for part in (pop.params, pop.stats, pop.ema or {}, pop.best or {},
                 *(v for v in pop.opt_state.values() if isinstance(v, dict))):
        for t in part.values():
            copy_rows(t)
    for t in (*(v for v in pop.hp.values() if isinstance(v, Tensor)), pop.cap, pop.alive, pop.died_at):
        if t is not None:
            copy_rows(t)
    for book in (pop.best_loss, pop.best_epoch, pop.bad_epochs):
        for i, j in zip(dst, src):
            book[i] = book[j]
    for i, j in zip(dst, src):
        pop.configs[i] = pop.configs[i].replace(**{f: getattr(pop.configs[j], f) for f in COPIED_FIELDS})


@torch.no_grad()
def set_hyperparameters(pop: Population, m: int, values: dict) -> None:
    """Give model m new per-model hyperparameters (HYPERPARAMETERS or max_norm): its row of the hyperparameter
    tensors and its config."""
    for name, v in values.items():
        if name in HYPERPARAMETERS:
            t = pop.hp[name]
            if isinstance(t, Tensor):
                t[m] = float(v)
            else:  # a term off in every model has no tensor (and, for dropout or noise, no random streams)
                assert float(v) == 0.0, f"{name} is off in every model of this population: it cannot be set to {v}"
        elif name == "max_norm":
            assert pop.cap is not None or float(v) == 0.0, "no model of this population caps its norms"
            if pop.cap is not None:
                pop.cap[m] = float(v) or math.inf
        else:
            raise AssertionError(f"{name} is not a per-model hyperparameter; choose from {HYPERPARAMETERS}")
    pop.configs[m] = pop.configs[m].replace(**values)


def plot_schedules(trials: list[dict], name: str, path) -> None:
    """Plot each PBT member's value of hyperparameter `name` over epochs (a step line per member, a dot where it
    copied another member) to `path` (PNG or PDF). `trials`: [{"number", "hp_schedule"}], as `tune.pbt_members`
    returns them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for t in trials:
        sched = t["hp_schedule"]
        xs = [s["epoch"] for s in sched]
        ys = [s["hp"].get(name) for s in sched]
        line, = ax.step(xs, ys, where="post", lw=1, alpha=0.8)
        ax.plot([s["epoch"] for s in sched if s.get("from") is not None],
                [s["hp"].get(name) for s in sched if s.get("from") is not None], "o", ms=3, color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    if all(s["hp"].get(name, 0) > 0 for t in trials for s in t["hp_schedule"]):
        ax.set_yscale("log")
    ax.set_title(f"PBT: {name} of each member (dots: copied a better member)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
