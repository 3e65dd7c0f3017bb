"""Sweep specs: a base config, axes to vary (one at a time or crossed), and seeds -> the list of trials.

    >>> spec = SweepSpec.from_toml("lr.toml")
    >>> spec = SweepSpec(base={"hidden": [8], "epochs": 1}, axes={"lr": {"logspace": [-3, 0.5, 32]}}, seeds=2)
    >>> trials = spec.trials()                       # list[TrainConfig], 64 of them

The TOML form:

    [base]                               # any `mlplab train` option, same names as the flags
    hidden = [8]
    epochs = 1
    [axes]                               # varied one at a time around base, unless [sweep] grid = true
    lr = { logspace = [-3, 0.5, 32] }    # 32 values from 1e-3 to 10**0.5; also linspace, pow2 = [0, 12], or a list
    activation = ["relu", "tanh"]
    [sweep]
    seeds = 2                            # each trial runs with seeds 0..seeds-1
    grid = false

Besides the TrainConfig fields, two derived axes are understood: `width` (every hidden layer's width, keeping the
depth) and `depth` (the number of hidden layers, keeping the width; 0 = softmax regression). `init` accepts the
`NAME:SCALE` form of the command line.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mlplab.config import TrainConfig, did_you_mean, parse_hidden, parse_init

DERIVED_AXES = ("width", "depth")
SWEEP_KEYS = ("seeds", "grid", "name")
MAX_TRIALS = 50_000  # trials in one spec: a plan is refused above this before anything is built (split the spec)
MAX_AXIS_VALUES = 10_000  # values of one axis (a linspace/logspace count, a pow2 range)
MAX_POW2 = 62  # |exponent| of a pow2 range
MAX_DEPTH = 1_000  # hidden layers from the derived depth axis


def read_spec(path: Path, kind: str) -> dict:
    """The TOML document of a `kind` ("sweep", "tune") spec at `path`, with one-line errors for the usual mistakes."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {kind} spec") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path} is a folder; give the {kind} spec, a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid TOML ({e})") from None


@dataclass(frozen=True)
class SweepSpec:
    base: dict = field(default_factory=dict)  # TrainConfig fields (flag names with - or _)
    axes: dict = field(default_factory=dict)  # name -> list of values or {logspace|linspace|pow2: [...]}
    seeds: int = 1  # each trial runs with seeds 0..seeds-1
    grid: bool = False  # cross all axes (True) or vary one at a time around base (False)
    name: str = "sweep"
    source: str = "<python>"  # where the spec came from, for error messages

    def __post_init__(self):
        where = self.source
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise ValueError(f"{where}: [sweep] seeds must be an integer >= 1, got {self.seeds!r}")
        if self.seeds > MAX_TRIALS:
            raise ValueError(f"{where}: [sweep] seeds = {self.seeds} is more than the {MAX_TRIALS} trials a spec may "
                             "plan; use fewer seeds")
        if not isinstance(self.grid, bool):
            raise ValueError(f"{where}: [sweep] grid must be true or false, got {self.grid!r}")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"{where}: [sweep] name must be a non-empty string, got {self.name!r}")
        if not self.base and not self.axes:
            raise ValueError(f"{where}: the spec has no [base] settings and no [axes], so it would train only the "
                             "default model (10 epochs); add settings under [base] or an axis under [axes]")
        base = {_key(k): v for k, v in self.base.items()}
        object.__setattr__(self, "base", base)
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        for k in base:
            if k not in known and k not in DERIVED_AXES:
                raise ValueError(f"{where}: unknown key {k!r} in [base]{did_you_mean(k, known | set(DERIVED_AXES))}; "
                                 f"known: {', '.join(sorted(known))}")
        try:
            self.base_config()
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: [base]: {e}") from None
        axes = {}
        for k, v in self.axes.items():
            key = _key(k)
            if key not in known and key not in DERIVED_AXES:
                raise ValueError(f"{where}: unknown axis {k!r}{did_you_mean(key, known | set(DERIVED_AXES))}; known: "
                                 f"{', '.join(sorted(known | set(DERIVED_AXES)))}")
            axes[key] = expand_axis(key, v, where)
        object.__setattr__(self, "axes", axes)
        n_points = math.prod(len(v) for v in axes.values()) if self.grid else 1 + sum(len(v) for v in axes.values())
        if n_points * self.seeds > MAX_TRIALS:
            shape = " x ".join(f"{len(v)} {k}" for k, v in axes.items()) if self.grid else f"{n_points} points"
            raise ValueError(f"{where}: the spec plans {n_points * self.seeds} trials ({shape}, x {self.seeds} seeds), "
                             f"more than the {MAX_TRIALS} one spec may plan; split it into several specs or use "
                             "fewer values")
        self.trials()  # every value must make a valid config: fail before anything is written

    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        path = Path(path)
        return cls.from_dict(read_spec(path, "sweep"), source=str(path), default_name=path.stem)

    @classmethod
    def from_dict(cls, doc: dict, source: str = "<dict>", default_name: str = "sweep") -> SweepSpec:
        unknown = set(doc) - {"base", "axes", "sweep"}
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {sorted(unknown)}; expected [base], [axes], [sweep]")
        sweep = doc.get("sweep", {})
        bad = set(sweep) - set(SWEEP_KEYS)
        if bad:
            raise ValueError(f"{source}: unknown key(s) {sorted(bad)} in [sweep]; known: {', '.join(SWEEP_KEYS)}")
        return cls(base=doc.get("base", {}), axes=doc.get("axes", {}), seeds=sweep.get("seeds", 1),
                   grid=sweep.get("grid", False), name=sweep.get("name", default_name), source=source)

    def base_config(self) -> TrainConfig:
        return make_config({}, self.base)

    def points(self) -> list[dict]:
        """The axis settings of every trial (before seeds): crossed, or one axis at a time (the base point first,
        {}; `trials` drops a point that repeats the base config)."""
        if not self.axes:
            return [{}]
        if self.grid:
            names = list(self.axes)
            return [dict(zip(names, combo)) for combo in itertools.product(*self.axes.values())]
        pts, seen = [{}], set()
        for name, values in self.axes.items():
            for v in values:
                marker = (name, repr(v))
                if marker not in seen:
                    seen.add(marker)
                    pts.append({name: v})
        return pts

    def trials(self) -> list[TrainConfig]:
        """Every (point, seed) as a resolved TrainConfig; identical configs appear once."""
        out, seen = [], set()
        for pt in self.points():
            for s in range(self.seeds):
                overrides = dict(pt)
                if "seed" not in pt:
                    overrides["seed"] = pt.get("seed", self.base.get("seed", 0)) + s
                cfg = make_config(self.base, overrides, where=f"{self.source}: axis value {pt}")
                if cfg not in seen:
                    seen.add(cfg)
                    out.append(cfg)
        return out


def make_config(base: dict, overrides: dict, where: str = "") -> TrainConfig:
    """A TrainConfig from base settings plus overrides, with the derived axes and compact forms resolved."""
    d = {**base, **overrides}
    if isinstance(d.get("hidden"), str):
        d["hidden"] = parse_hidden(d["hidden"])
    if isinstance(d.get("hidden"), int) and not isinstance(d.get("hidden"), bool):
        d["hidden"] = [d["hidden"]]
    if isinstance(d.get("init"), str):
        d["init"], scale = parse_init(d["init"])
        # An init named by the axis brings its own scale (or the scheme's default), unless init_scale is set too.
        if scale is not None and "init_scale" not in overrides:
            d["init_scale"] = scale
        elif "init" in overrides and "init_scale" not in overrides:
            d.pop("init_scale", None)
    width, depth = d.pop("width", None), d.pop("depth", None)
    if width is not None or depth is not None:
        hidden = list(d.get("hidden", TrainConfig().hidden))
        w = width if width is not None else (hidden[0] if hidden else 256)
        n = depth if depth is not None else len(hidden)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_DEPTH:
            raise ValueError(f"{where}: depth must be an integer in [0, {MAX_DEPTH}], got {n!r}")
        d["hidden"] = [w] * n
    try:
        return TrainConfig.from_dict(d)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}" if where else str(e)) from None


def expand_axis(name: str, spec, where: str = "") -> list:
    """A list of values from a list or a range form: {logspace = [a, b, n]}, {linspace = [a, b, n]}, {pow2 = [a, b]}."""
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, dict) and len(spec) == 1:
        (kind, args), = spec.items()
        if kind not in ("logspace", "linspace", "pow2"):
            raise ValueError(f"{where}: axis {name}: unknown range {kind!r}; use logspace, linspace, pow2 or a list")
        if not isinstance(args, list) or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise ValueError(f"{where}: axis {name}: {kind} needs a list of numbers, got {args!r}")
        if not all(math.isfinite(a) for a in args):
            raise ValueError(f"{where}: axis {name}: {kind} needs finite numbers, got {args}")
        if kind == "pow2":
            if len(args) != 2 or not all(float(a).is_integer() for a in args):
                raise ValueError(f"{where}: axis {name}: pow2 = [first, last] exponents (integers), got {args}")
            lo, hi = int(args[0]), int(args[1])
            if not -MAX_POW2 <= lo <= hi <= MAX_POW2:
                raise ValueError(f"{where}: axis {name}: pow2 = [first, last] needs -{MAX_POW2} <= first <= last <= "
                                 f"{MAX_POW2}, got {args}")
            values = [2 ** e for e in range(lo, hi + 1)]
        else:
            if len(args) != 3 or not float(args[2]).is_integer() or args[2] < 1:
                raise ValueError(f"{where}: axis {name}: {kind} = [start, stop, count] with count >= 1, got {args}")
            if args[2] > MAX_AXIS_VALUES:
                raise ValueError(f"{where}: axis {name}: {kind} count {int(args[2])} is more than the "
                                 f"{MAX_AXIS_VALUES} values an axis may have")
            a, b, n = float(args[0]), float(args[1]), int(args[2])
            lin = [a + (b - a) * i / (n - 1) for i in range(n)] if n > 1 else [a]
            values = [_pow10(v) for v in lin] if kind == "logspace" else lin
            values = [float(f"{v:.12g}") for v in values]  # 0.1 rather than 0.10000000000000002
    else:
        forms = "{logspace|linspace|pow2 = [...]}"
        raise ValueError(f"{where}: axis {name} must be a list or one of {forms}, got {spec!r}")
    if not values:
        raise ValueError(f"{where}: axis {name} has no values")
    if len(values) > MAX_AXIS_VALUES:
        raise ValueError(f"{where}: axis {name} has {len(values)} values, more than the {MAX_AXIS_VALUES} an axis "
                         "may have")
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{where}: axis {name}: non-finite value {v}")
    return values


def _pow10(v: float) -> float:
    try:
        return 10.0 ** v
    except OverflowError:
        return math.inf  # refused below as non-finite, naming the axis


def _key(k: str) -> str:
    return k.replace("-", "_")
