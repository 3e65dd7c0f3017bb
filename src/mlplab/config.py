"""The configuration of one training run: a frozen, validated dataclass that the command line maps onto.

    >>> TrainConfig(hidden=(256,), lr=0.1)                       # the course's MLP
    >>> TrainConfig.from_dict({"hidden": [512, 512], "init": "kaiming_normal", "optimizer": "adam", "lr": 1e-3})

Names are normalised (e.g. "glorot_uniform" -> "xavier_uniform", "linear" -> "identity") and a missing init scale
is filled in from the scheme, so the stored config is the resolved one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mlplab import activations, initializers, seeds
from mlplab.device import PRECISIONS
from mlplab.optim import OPTIMIZERS
from mlplab.schedules import SCHEDULES

MNIST_TRAIN_SIZE = 60_000
# Fields added after stores already existed: left out of a trial's key while at their default (see store.trial_key)
LATER_FIELDS = ("dropout_input", "dropout", "max_norm", "label_smoothing", "ema", "noise", "batch_norm", "precision",
                "patience", "min_delta")


@dataclass(frozen=True)
class TrainConfig:
    hidden: tuple[int, ...] = (256,)  # widths of the hidden layers; () is softmax regression
    activation: str = "relu"  # one of activations.ACTIVATIONS
    init: str = "uniform"  # weight init scheme, one of initializers.INITS
    init_scale: float | None = None  # uniform bound / normal std / gain multiplier; None: the scheme's default
    bias_init: str = "zeros"  # "zeros", or "same" to draw biases like the weights
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1  # base learning rate
    momentum: float = 0.0  # SGD momentum (0 = plain SGD)
    nesterov: bool = False  # Nesterov instead of heavy-ball momentum
    weight_decay: float = 0.0  # L2 for sgd/adam, decoupled for adamw
    beta1: float = 0.9  # Adam first-moment decay
    beta2: float = 0.999  # Adam second-moment decay
    eps: float = 1e-8  # Adam denominator epsilon
    schedule: str = "constant"  # constant | step | cosine | onecycle
    warmup_steps: int = 0  # linear learning-rate warm-up over this many steps
    step_size: int = 1  # epochs between decays (schedule "step")
    gamma: float = 0.1  # decay factor (schedule "step")
    epochs: int = 10  # passes over the training split: with patience, the budget (and the schedule's horizon)
    batch_size: int = 128  # examples per optimizer step
    seed: int = 0  # seed of the weight initialization
    data_seed: int | None = None  # seed of the shuffling order; None: the same as seed
    val_size: int = 10_000  # validation images carved from the end of the training set
    data: str = "mnist"  # "mnist" (bundled) or a folder with the four IDX files
    # Regularization (all off by default; each may differ between the models of a population)
    dropout_input: float = 0.0  # probability of dropping an input pixel during training (inverted dropout)
    dropout: float = 0.0  # probability of dropping a hidden unit during training
    max_norm: float = 0.0  # cap on the L2 norm of every unit's incoming weight vector; 0: no cap
    label_smoothing: float = 0.0  # weight of the uniform distribution mixed into the training targets
    ema: float = 0.0  # decay of an exponential moving average of the weights, used for evaluation; 0: off
    noise: float = 0.0  # std of Gaussian noise added while training to the inputs (and, with batch_norm, to
    #                     every normalized hidden pre-activation)
    batch_norm: bool = False  # batch normalization of every hidden layer (shared by a population)
    # Arithmetic: fp32; tf32 (TF32 matmuls on CUDA GPUs, fp32 elsewhere); bf16 (autocast, float32 master weights)
    precision: str = "fp32"
    # Early stopping (per model): stop once the validation loss has not improved by more than min_delta for
    # `patience` epochs in a row, and report the epoch with the lowest validation loss (its weights and metrics).
    patience: int = 0  # 0: off, train all `epochs` and report the last epoch
    min_delta: float = 0.0  # an epoch improves only if val_loss < best val_loss - min_delta

    def __post_init__(self):
        hidden = self.hidden
        if isinstance(hidden, str):
            hidden = parse_hidden(hidden)
        if isinstance(hidden, int) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if not isinstance(hidden, (list, tuple)) or not all(_is_int(h) for h in hidden):
            raise TypeError(f"hidden must be a list of positive integers, got {self.hidden!r}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(hidden)} (use [] for softmax regression)")
        _set(self, "hidden", tuple(int(h) for h in hidden))

        _set(self, "activation", _choice("activation", self.activation, activations.ACTIVATIONS, activations.ALIASES))
        _set(self, "init", _choice("init", self.init, initializers.INITS, initializers.ALIASES))
        _set(self, "optimizer", _choice("optimizer", self.optimizer, OPTIMIZERS, {}))
        _set(self, "schedule", _choice("schedule", self.schedule, SCHEDULES, {}))
        _set(self, "precision", _choice("precision", self.precision, PRECISIONS, {"float32": "fp32",
                                                                                   "bfloat16": "bf16"}))
        _set(self, "bias_init", _choice("bias_init", self.bias_init, ("zeros", "same"), {"zero": "zeros"}))

        if self.init_scale is None:
            _set(self, "init_scale", initializers.default_scale(self.init))
        _number(self, "init_scale", lo=0, lo_open=self.init != "zeros")
        _number(self, "lr", lo=0, lo_open=True)
        _number(self, "momentum", lo=0, hi=1, hi_open=True)
        _number(self, "weight_decay", lo=0)
        _number(self, "beta1", lo=0, hi=1, hi_open=True)
        _number(self, "beta2", lo=0, hi=1, hi_open=True)
        _number(self, "eps", lo=0, lo_open=True)
        _number(self, "gamma", lo=0, lo_open=True)
        _number(self, "dropout_input", lo=0, hi=1, hi_open=True)
        _number(self, "dropout", lo=0, hi=1, hi_open=True)
        _number(self, "max_norm", lo=0)
        _number(self, "label_smoothing", lo=0, hi=1, hi_open=True)
        _number(self, "ema", lo=0, hi=1, hi_open=True)
        _number(self, "noise", lo=0)
        if self.batch_norm not in (True, False):
            raise TypeError(f"batch_norm must be true or false, got {self.batch_norm!r}")
        if self.batch_norm and self.ema:
            raise ValueError("ema with batch_norm is not supported: the running statistics would belong to the raw "
                             "weights, not their average (drop one of --ema, --batch-norm)")
        if self.nesterov not in (True, False):
            raise TypeError(f"nesterov must be true or false, got {self.nesterov!r}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer sgd with momentum > 0 (e.g. --momentum 0.9)")
        _integer(self, "epochs", lo=1)
        _integer(self, "batch_size", lo=1)
        _integer(self, "warmup_steps", lo=0)
        _integer(self, "step_size", lo=1)
        seeds.check_seed(self.seed)
        if self.data_seed is not None:
            seeds.check_seed(self.data_seed, "data_seed")
        _integer(self, "patience", lo=0)
        _number(self, "min_delta", lo=0)
        if self.patience and self.val_size == 0:
            raise ValueError("patience (early stopping) watches the validation loss: it needs val_size > 0")
        _integer(self, "val_size", lo=0)
        if not isinstance(self.data, str) or not self.data:
            raise TypeError(f"data must be 'mnist' or a folder path, got {self.data!r}")
        if self.data == "mnist":
            if self.val_size >= MNIST_TRAIN_SIZE:
                raise ValueError(f"val_size must be < {MNIST_TRAIN_SIZE}, got {self.val_size}")
            n_train = MNIST_TRAIN_SIZE - self.val_size
            if self.batch_size > n_train:
                raise ValueError(f"batch_size must be <= the {n_train} training images, got {self.batch_size}")

    # -- conversions ---------------------------------------------------------------------------------------------
    @property
    def order_seed(self) -> int:
        """The seed of the data order (data_seed, or seed when that is unset)."""
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a plain dict (JSON/TOML); unknown keys are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}{did_you_mean(unknown[0], known)}; known: "
                             f"{', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        """A copy with `changes`. A new `init` without an `init_scale` takes the new scheme's default scale (a
        uniform bound of 0.01 means nothing as a Kaiming gain)."""
        d = self.to_dict()
        if "init" in changes and "init_scale" not in changes:
            d["init_scale"] = None
        return TrainConfig.from_dict({**d, **changes})


# -- parsing the command line's compact forms --------------------------------------------------------------------


def parse_hidden(text: str) -> tuple[int, ...]:
    """'256' -> (256,); '512,512' -> (512, 512); '' or 'none' -> () (softmax regression)."""
    text = text.strip()
    if text.lower() in ("", "none", "[]"):
        return ()
    parts = [p for p in text.replace(" ", ",").strip("[]").split(",") if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        msg = f"hidden must be comma-separated positive integers like 256 or 512,512, got {text!r}"
        raise ValueError(msg) from None
    if any(s < 1 for s in sizes):
        raise ValueError(f"hidden sizes must be >= 1, got {text!r} (use 'none' for softmax regression)")
    return sizes


def parse_init(text: str) -> tuple[str, float | None]:
    """'uniform:0.01' -> ('uniform', 0.01); 'kaiming_normal' -> ('kaiming_normal', None)."""
    name, _, scale = text.partition(":")
    if not scale:
        return name, None
    try:
        value = float(scale)
    except ValueError:
        raise ValueError(f"init must look like NAME or NAME:SCALE (e.g. uniform:0.01), got {text!r}") from None
    return name, value


# -- validation helpers ------------------------------------------------------------------------------------------


def _set(cfg, name, value):
    object.__setattr__(cfg, name, value)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _choice(what: str, value, allowed, aliases) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r}")
    key = value.strip().lower().replace("-", "_")
    key = aliases.get(key, key)
    if key not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
    return key


def _number(cfg, name, lo=None, hi=None, lo_open=False, hi_open=False):
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v}")
    _set(cfg, name, float(v))


def _integer(cfg, name, lo):
    v = getattr(cfg, name)
    if not _is_int(v):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")


def did_you_mean(name: str, known) -> str:
    """" (did you mean 'x'?)" for the known name closest to a misspelled `name` (difflib), or "" when none is."""
    import difflib

    close = difflib.get_close_matches(str(name).replace("-", "_"), sorted(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""
