"""Learning-rate schedules: the factor that multiplies the base learning rate at each optimizer step.

    lr(step) = base_lr * warmup(step) * schedule(step)

`step` counts optimizer steps from 0; `total` is the number of steps in the whole run.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine", "onecycle")


def constant(step: int, total: int, steps_per_epoch: int, step_size: int, gamma: float) -> float:
    return 1.0


def step_decay(step: int, total: int, steps_per_epoch: int, step_size: int, gamma: float) -> float:
    """Multiply by gamma every `step_size` epochs."""
    return gamma ** (step // (step_size * steps_per_epoch))


def cosine(step: int, total: int, steps_per_epoch: int, step_size: int, gamma: float) -> float:
    """Half a cosine from 1 down to 0 over the run."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def onecycle(step: int, total: int, steps_per_epoch: int, step_size: int, gamma: float,
             pct_up: float = 0.3, div: float = 25.0, final_div: float = 1e4) -> float:
    """Cosine up from 1/div to 1 over the first 30% of steps, then cosine down to 1/(div*final_div)."""
    up = max(1, int(pct_up * total))
    lo, hi, end = 1.0 / div, 1.0, 1.0 / (div * final_div)
    if step < up:
        return _cos_between(lo, hi, step / up)
    return _cos_between(hi, end, min(1.0, (step - up) / max(1, total - up)))


def _cos_between(a: float, b: float, frac: float) -> float:
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * frac))


def warmup(step: int, warmup_steps: int) -> float:
    """Linear warm-up from 1/warmup_steps to 1 over the first `warmup_steps` steps."""
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps


_BY_NAME = {"constant": constant, "step": step_decay, "cosine": cosine, "onecycle": onecycle}


def lr_factor(name: str, step: int, total: int, steps_per_epoch: int, step_size: int = 1, gamma: float = 0.1,
              warmup_steps: int = 0) -> float:
    """The multiplier of the base learning rate at `step` under schedule `name`, warm-up included."""
    return _BY_NAME[name](step, total, steps_per_epoch, step_size, gamma) * warmup(step, warmup_steps)
