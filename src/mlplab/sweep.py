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

from mlplab.config import TrainConfig, parse_hidden, parse_init

DERIVED_AXES = ("width", "depth")
SWEEP_KEYS = ("seeds", "grid", "name")


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
        if not isinstance(self.grid, bool):
            raise ValueError(f"{where}: [sweep] grid must be true or false, got {self.grid!r}")
        base = {_key(k): v for k, v in self.base.items()}
        object.__setattr__(self, "base", base)
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        for k in base:
            if k not in known and k not in DERIVED_AXES:
                raise ValueError(f"{where}: unknown key {k!r} in [base]; known: {', '.join(sorted(known))}")
        try:
            self.base_config()
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: [base]: {e}") from None
        axes = {}
        for k, v in self.axes.items():
            key = _key(k)
            if key not in known and key not in DERIVED_AXES:
                raise ValueError(f"{where}: unknown axis {k!r}; known: {', '.join(sorted(known | set(DERIVED_AXES)))}")
            axes[key] = expand_axis(key, v, where)
        object.__setattr__(self, "axes", axes)
        self.trials()  # every value must make a valid config: fail before anything is written

    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such sweep spec") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e})") from None
        return cls.from_dict(doc, source=str(path), default_name=path.stem)

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
        """The axis settings of every trial (before seeds): crossed, or one axis at a time (base first)."""
        if not self.axes:
            return [{}]
        if self.grid:
            names = list(self.axes)
            return [dict(zip(names, combo)) for combo in itertools.product(*self.axes.values())]
        pts, seen = [], set()
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
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{where}: depth must be an integer >= 0, got {n!r}")
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
        if kind == "pow2":
            if len(args) != 2 or not all(float(a).is_integer() for a in args):
                raise ValueError(f"{where}: axis {name}: pow2 = [first, last] exponents (integers), got {args}")
            values = [2 ** int(e) for e in range(int(args[0]), int(args[1]) + 1)]
        else:
            if len(args) != 3 or not float(args[2]).is_integer() or args[2] < 1:
                raise ValueError(f"{where}: axis {name}: {kind} = [start, stop, count] with count >= 1, got {args}")
            a, b, n = float(args[0]), float(args[1]), int(args[2])
            lin = [a + (b - a) * i / (n - 1) for i in range(n)] if n > 1 else [a]
            values = [10.0 ** v for v in lin] if kind == "logspace" else lin
            values = [float(f"{v:.12g}") for v in values]  # 0.1 rather than 0.10000000000000002
    else:
        forms = "{logspace|linspace|pow2 = [...]}"
        raise ValueError(f"{where}: axis {name} must be a list or one of {forms}, got {spec!r}")
    if not values:
        raise ValueError(f"{where}: axis {name} has no values")
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{where}: axis {name}: non-finite value {v}")
    return values


def _key(k: str) -> str:
    return k.replace("-", "_")
