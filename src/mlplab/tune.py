"""Adaptive search on Optuna where every round of sampled trials trains as populations.

    mlplab tune search.toml                                     # the study goes to search.optuna.sqlite3 beside it
    optuna-dashboard sqlite:///search.optuna.sqlite3            # watch it live in a browser
    mlplab export runs/lr.sqlite --optuna sqlite:///lr.optuna.sqlite3   # a sweep's store as an Optuna study

The spec (TOML):

    [base]                                  # any `mlplab train` option, as in sweeps (not epochs or seed)
    hidden = [64]
    batch_size = 128
    [search]                                # distributions only, over TrainConfig fields (and width, depth)
    lr = { loguniform = [1e-3, 1.0] }
    momentum = { uniform = [0.0, 0.95] }
    width = { int = [16, 256], log = true }
    activation = { choice = ["relu", "tanh"] }
    [tune]
    trials = 64          # trials in all; rerunning resumes toward this count
    per_round = 16       # trials asked from Optuna per round; they train together, one population per shape
    sampler = "tpe"      # random | qmc | tpe | grid (grid: every [search] entry a choice)
    pruner = "median"    # none | median (round-mates count as peers) | halving (synchronous) | hyperband
    scheduler = "none"   # none | pbt (population-based training; with pruner "none")
    max_epochs = 3
    seeds = 1            # models per trial (seeds 0..seeds-1); a trial's value is their mean val accuracy
    refill = false       # true: no rounds; one population of per_round trials, a new trial as soon as one ends

Each round asks `per_round` trials, groups the compatible ones into populations (planner.plan), and trains every
population of the round epoch by epoch. After each epoch every trial reports its validation accuracy (the mean over
its seeds) to Optuna; the models of trials that the pruner stops leave their population (`Population.take`), and
Optuna is told each trial's end: complete (value: validation accuracy after max_epochs), pruned, or failed when a
model diverged. Test accuracy is only a user attribute, never the objective. The driver alone talks to the
storage; with the Ray backend each population lives in a Ray actor that trains when the driver says so.
With `refill = true` there are no rounds: as soon as trials end, new ones are asked and join the one running
population (`Population.join`), and the median pruner is Optuna's own rule (`_stream`).

From Python (what the study calls; `splits` replaces the MNIST splits, e.g. a small subset in tests):

    >>> summary = run({"base": {"hidden": [32]}, "search": {"lr": {"loguniform": [1e-3, 1]}},
    ...                "tune": {"trials": 27, "per_round": 27, "pruner": "halving", "max_epochs": 9}},
    ...               storage="sqlite:///runs/halving.sqlite3")
    >>> summary.best_value, summary.model_epochs
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import secrets
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mlplab import __version__, planner
from mlplab import data as data_mod
from mlplab import pbt as pbt_mod
from mlplab.config import TrainConfig, did_you_mean
from mlplab.device import arithmetic, keep_freed_memory, matmul_precision, resolve_device, synchronize
from mlplab.mlp import layer_sizes
from mlplab.population import SHARED_FIELDS, EpochPlan, Population
from mlplab.sweep import DERIVED_AXES, make_config, read_spec
from mlplab.train import _json_safe, progress_bar

SAMPLERS = ("random", "qmc", "tpe", "grid")
PRUNERS = ("none", "median", "halving", "hyperband")
SCHEDULERS = ("none", "pbt")
KINDS = ("loguniform", "uniform", "int", "choice")  # the distributions a [search] entry may name
TUNE_KEYS = ("trials", "per_round", "sampler", "pruner", "scheduler", "max_epochs", "seeds", "seed", "eta",
             "min_epochs", "startup_trials", "refill", "pbt_interval", "pbt_fraction", "name")
# Keys added after studies were made without them: at these values a study's identity leaves them out, so that an
# older study still resumes.
LATER_DEFAULTS = {"startup_trials": 0, "refill": False}
# Set by the tune itself, not by [base] or [search]: the epochs (max_epochs), the seeds ([tune] seeds), and early
# stopping, which the pruner replaces.
NOT_SEARCHED = ("epochs", "seed", "data_seed", "patience", "min_delta", "hidden")
MAX_TRIALS = 100_000
OBJECTIVE = "val_accuracy"
HEARTBEAT_SECONDS = 10  # how often the driver records that its running trials are alive
GRACE_SECONDS = 30  # a running trial without a heartbeat for this long is failed (and retried) by the next run
ORPHAN_SECONDS = 5.0  # a running trial still naming no driver this long after its start was orphaned
MAX_RETRY = 3  # a trial whose driver died is retried this many times
MEDIAN_STARTUP = 5  # completed trials (in a round: peers) the median pruner needs before it prunes (Optuna default)


@dataclass(frozen=True)
class TuneSpec:
    base: dict = field(default_factory=dict)  # TrainConfig fields shared by every trial (as in sweep specs)
    search: dict = field(default_factory=dict)  # name -> {loguniform|uniform|int|choice = [...], log, step}
    trials: int = 32  # trials in all (a rerun on the same storage resumes toward this count)
    per_round: int = 16  # trials asked per round (trained together; the synchronous unit of halving and PBT)
    sampler: str = "tpe"  # random | qmc | tpe | grid
    pruner: str = "median"  # none | median | halving | hyperband
    scheduler: str = "none"  # none | pbt
    max_epochs: int = 3  # epochs of a trial that is not stopped
    seeds: int = 1  # models per trial, seeds 0..seeds-1
    seed: int = 0  # seed of the sampler and of PBT's choices
    eta: int = 3  # halving and hyperband: keep 1/eta at each rung
    min_epochs: int = 1  # halving and hyperband: epochs before the first rung
    startup_trials: int = 0  # median: prune nothing before this many trials completed (0: a round's peers count)
    refill: bool = False  # one population of per_round trials at most, a new trial asked as soon as one ends
    pbt_interval: int = 1  # pbt: epochs between exploit steps
    pbt_fraction: float = 0.25  # pbt: the bottom fraction copies the top fraction
    name: str = "tune"  # the Optuna study name
    source: str = "<python>"  # where the spec came from, for error messages

    def __post_init__(self):
        where = self.source
        for key, lo in (("trials", 1), ("per_round", 1), ("max_epochs", 1), ("seeds", 1), ("eta", 2),
                        ("min_epochs", 1), ("pbt_interval", 1), ("seed", 0), ("startup_trials", 0)):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{where}: [tune] {key} must be an integer >= {lo}, got {v!r}")
        if self.trials * self.seeds > MAX_TRIALS:
            raise ValueError(f"{where}: [tune] trials x seeds = {self.trials * self.seeds} is more than {MAX_TRIALS}")
        for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("scheduler", SCHEDULERS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{where}: [tune] {key} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, key)!r}")
        f = self.pbt_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 0.5:
            raise ValueError(f"{where}: [tune] pbt_fraction must be a number in (0, 0.5], got {f!r}")
        if self.startup_trials and self.pruner != "median":
            raise ValueError(f"{where}: [tune] startup_trials applies to pruner 'median' only (got pruner "
                             f"{self.pruner!r}); remove it or set pruner = 'median'")
        if self.scheduler == "pbt" and self.pruner != "none":
            raise ValueError(f"{where}: scheduler 'pbt' replaces the bottom members instead of stopping them; set "
                             f"[tune] pruner = 'none' (got {self.pruner!r})")
        if not isinstance(self.refill, bool):
            raise ValueError(f"{where}: [tune] refill must be true or false, got {self.refill!r}")
        if self.refill and 0 < self.startup_trials < MEDIAN_STARTUP:
            raise ValueError(f"{where}: [tune] startup_trials = {self.startup_trials} does nothing with refill: the "
                             f"median pruner waits for {MEDIAN_STARTUP} completed trials anyway; remove it or set it "
                             f">= {MEDIAN_STARTUP}")
        if self.refill and (self.pruner == "halving" or self.scheduler == "pbt"):
            what = "pruner 'halving'" if self.pruner == "halving" else "scheduler 'pbt'"
            raise ValueError(f"{where}: [tune] refill starts each trial when another ends, but {what} needs the "
                             "trials of a round to reach each epoch together; set refill = false")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"{where}: [tune] name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.base, dict) or not isinstance(self.search, dict):
            raise ValueError(f"{where}: [base] and [search] must be tables")
        if not self.search:
            raise ValueError(f"{where}: [search] is empty; add a distribution, e.g. lr = {{ loguniform = [1e-3, 1] }}")
        base = {k.replace("-", "_"): v for k, v in self.base.items()}
        object.__setattr__(self, "base", base)
        known = {f.name for f in dataclasses.fields(TrainConfig)} | set(DERIVED_AXES)
        for k in base:
            if k in ("epochs", "seed", "patience", "min_delta"):
                what = {"epochs": "[tune] max_epochs", "seed": "[tune] seeds (each trial runs seeds 0..seeds-1)"}
                raise ValueError(f"{where}: [base] {k} is set by the tune; use {what.get(k, 'the [tune] pruner')} "
                                 "instead")
            if k not in known:
                shown = known - {"epochs", "seed", "patience", "min_delta"}
                raise ValueError(f"{where}: unknown key {k!r} in [base]{did_you_mean(k, shown)}; known: "
                                 f"{', '.join(sorted(shown))}")
        search = {}
        for k, v in self.search.items():
            key = k.replace("-", "_")
            if key in NOT_SEARCHED:
                hint = "search width and depth instead" if key == "hidden" else "the tune sets it"
                raise ValueError(f"{where}: [search] {key} cannot be searched ({hint})")
            if key not in known:
                shown = known - set(NOT_SEARCHED)
                raise ValueError(f"{where}: unknown [search] key {k!r}{did_you_mean(key, shown)}; known: "
                                 f"{', '.join(sorted(shown))}")
            search[key] = _check_entry(key, v, where)
        object.__setattr__(self, "search", search)
        if self.sampler == "grid":
            not_choice = [k for k, v in search.items() if "choice" not in v]
            if not_choice:
                raise ValueError(f"{where}: sampler 'grid' needs every [search] entry to be a choice list; "
                                 f"{', '.join(not_choice)} is not")
            size = math.prod(len(v["choice"]) for v in search.values())
            if self.trials > size:
                raise ValueError(f"{where}: [tune] trials = {self.trials} is more than the {size} grid points")
        try:
            c = self.config({})
        except ValueError as e:
            raise ValueError(f"{where}: [base]: {e}") from None
        if c.val_size == 0:
            raise ValueError(f"{where}: the tune maximizes the validation accuracy: [base] val_size must be > 0")
        if self.refill:
            self._check_refill(c)
        for key, entry in search.items():  # every end of every range must make a valid config
            for value in _corners(entry):
                try:
                    self.config({key: value})
                except ValueError as e:
                    raise ValueError(f"{where}: [search] {key} = {value!r}: {e}") from None

    def _check_refill(self, c: TrainConfig) -> None:
        """With refill every trial joins one population that has trained a while: the trials must be able to share
        it (no searched field that a population shares), and nothing may follow the population's step count in
        place of the model's own (Adam's bias correction, a learning-rate schedule, the weight average's ramp)."""
        where = self.source
        shared = sorted(k for k in self.search if k in SHARED_FIELDS or k in DERIVED_AXES)
        if shared:
            raise ValueError(f"{where}: [tune] refill keeps every trial in one population, so the trials must share "
                             f"its shape and settings, but [search] varies {', '.join(shared)}; set refill = false "
                             "(rounds group the trials by shape)")
        reasons = [why for bad, why in (
            (c.optimizer != "sgd", f"optimizer {c.optimizer!r} would use the population's step count for Adam's "
             "bias correction (Adam's step count is shared by a population)"),
            (c.schedule != "constant" or c.warmup_steps > 0, "its learning-rate schedule or warm-up would follow the "
             "population's step count"),
            (c.ema > 0 or "ema" in self.search, "its ema (the weight average's warm-up) would follow the "
             "population's step count")) if bad]
        if reasons:
            raise ValueError(f"{where}: [tune] refill: a trial joins a population that has trained a while, and "
                             f"{reasons[0]}, not the trial's own; use optimizer 'sgd' with a constant learning rate "
                             "and no ema, or set refill = false")

    @classmethod
    def from_toml(cls, path: str | Path) -> TuneSpec:
        path = Path(path)
        return cls.from_dict(read_spec(path, "tune"), source=str(path), default_name=path.stem)

    @classmethod
    def from_dict(cls, doc: dict, source: str = "<dict>", default_name: str = "tune") -> TuneSpec:
        unknown = set(doc) - {"base", "search", "tune"}
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {sorted(unknown)}; expected [base], [search], [tune]")
        tune = doc.get("tune", {})
        if not isinstance(tune, dict):
            raise ValueError(f"{source}: [tune] must be a table")
        bad = set(tune) - set(TUNE_KEYS)
        if bad:
            hint = did_you_mean(sorted(bad)[0], TUNE_KEYS)
            raise ValueError(f"{source}: unknown key(s) {sorted(bad)} in [tune]{hint}; known: {', '.join(TUNE_KEYS)}")
        return cls(base=doc.get("base", {}), search=doc.get("search", {}), source=source,
                   **{"name": default_name, **tune})

    def to_dict(self) -> dict:
        """The spec as a TOML-like dict ([tune] without `source`)."""
        tune = {k: getattr(self, k) for k in TUNE_KEYS}
        return {"base": dict(self.base), "search": dict(self.search), "tune": tune}

    def identity(self) -> dict:
        """What must match for a rerun to resume a study: everything but the trial count."""
        d = self.to_dict()
        d["tune"].pop("trials")
        for key, default in LATER_DEFAULTS.items():  # as in studies made before the key existed
            if d["tune"][key] == default:
                del d["tune"][key]
        return d

    def config(self, params: dict, seed: int = 0) -> TrainConfig:
        """The TrainConfig of sampled `params` (a dict of [search] names) for one seed."""
        return make_config(self.base, {**params, "seed": seed, "epochs": self.max_epochs})

    def distributions(self) -> dict:
        """The Optuna distribution of every [search] entry."""
        return {k: _distribution(v) for k, v in self.search.items()}


def _check_entry(name: str, entry, where: str) -> dict:
    """A [search] entry: one of KINDS, with `log`/`step` where they apply. ValueError naming what is wrong."""
    form = "{loguniform = [lo, hi]}, {uniform = [lo, hi]}, {int = [lo, hi], log = true} or {choice = [a, b, ...]}"
    if not isinstance(entry, dict) or len([k for k in entry if k in KINDS]) != 1:
        raise ValueError(f"{where}: [search] {name} must be one of {form}, got {entry!r}")
    kind = next(k for k in entry if k in KINDS)
    extra = set(entry) - {kind} - ({"log", "step"} if kind in ("int", "uniform") else set())
    if extra:
        raise ValueError(f"{where}: [search] {name}: unknown option(s) {sorted(extra)} for {kind}")
    args = entry[kind]
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: [search] {name}: choice needs a non-empty list, got {args!r}")
        for a in args:
            if not isinstance(a, (str, int, float, bool)):
                raise ValueError(f"{where}: [search] {name}: choices must be strings, numbers or booleans, got {a!r}"
                                 + (" (search width and depth for layer shapes)" if isinstance(a, list) else ""))
        if len({repr(a) for a in args}) != len(args):
            raise ValueError(f"{where}: [search] {name}: choice lists a value twice: {args}")
        return dict(entry)
    if (not isinstance(args, list) or len(args) != 2
            or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args)):
        raise ValueError(f"{where}: [search] {name}: {kind} needs [low, high], two finite numbers, got {args!r}")
    lo, hi = args
    if kind == "int" and not all(float(a).is_integer() for a in args):
        raise ValueError(f"{where}: [search] {name}: int needs integer bounds, got {args}")
    if lo >= hi:
        raise ValueError(f"{where}: [search] {name}: {kind} needs low < high, got {args}")
    if (kind == "loguniform" or entry.get("log")) and lo <= 0:
        raise ValueError(f"{where}: [search] {name}: a log scale needs low > 0, got {args}")
    if "log" in entry and not isinstance(entry["log"], bool):
        raise ValueError(f"{where}: [search] {name}: log must be true or false, got {entry['log']!r}")
    if "step" in entry:
        step = entry["step"]
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0 or entry.get("log"):
            raise ValueError(f"{where}: [search] {name}: step must be a number > 0 (and not with log), got {step!r}")
    try:
        _distribution(entry)
    except ValueError as e:  # anything else Optuna refuses
        raise ValueError(f"{where}: [search] {name}: {e}") from None
    return {kind: [int(a) for a in args] if kind == "int" else [float(a) for a in args],
            **{k: v for k, v in entry.items() if k != kind}}


def _distribution(entry: dict):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if "choice" in entry:
        return CategoricalDistribution(entry["choice"])
    if "int" in entry:
        lo, hi = entry["int"]
        return IntDistribution(int(lo), int(hi), log=entry.get("log", False), step=int(entry.get("step", 1)))
    if "loguniform" in entry:
        return FloatDistribution(*entry["loguniform"], log=True)
    return FloatDistribution(*entry["uniform"], log=entry.get("log", False), step=entry.get("step"))


def _corners(entry: dict) -> list:
    """The values that bound an entry: both ends of a range, or every choice."""
    if "choice" in entry:
        return list(entry["choice"])
    return list(next(v for k, v in entry.items() if k in KINDS))


# -- the storage -----------------------------------------------------------------------------------------------------


def default_storage(spec: TuneSpec) -> Path:
    """SPEC.optuna.sqlite3 beside a spec file; NAME.optuna.sqlite3 in the working folder for a spec from Python."""
    src = Path(spec.source)
    return src.with_suffix(".optuna.sqlite3") if src.suffix == ".toml" else Path(f"{spec.name}.optuna.sqlite3")


def storage_url(storage: str | Path) -> str:
    """An Optuna RDB storage URL: `storage` as given, or a plain file path turned into an SQLite URL."""
    text = str(storage)
    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser().resolve()}"
    if text.startswith("sqlite:///"):
        path = Path(text[len("sqlite:///"):])
        if path.is_dir():
            raise IsADirectoryError(f"storage {path} is a folder; give a file, e.g. {path / 'tune.sqlite3'}")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"storage {text}: folder {path.parent} does not exist; create it first (mkdir -p "
                                    f"{path.parent}) or give a file in an existing folder")
    elif text.split("://")[0].split("+")[0] not in ("sqlite", "postgresql", "mysql"):
        raise ValueError(f"the storage must be an Optuna RDB URL (sqlite:///PATH, postgresql://..., mysql://...) or "
                         f"a file path, got {text!r}")
    return text


def _optuna():
    """optuna, with its logging quietened to warnings (its info line per trial would flood the terminal)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _open_storage(url: str, heartbeat: int | None = None, grace: int | None = None):
    """An RDBStorage at `url`; a user error (one line) when the URL cannot be opened. The heartbeat storage is a
    second one on a database that the first has already opened (and checked)."""
    optuna = _optuna()
    engine = {"creator": _sqlite_connector(url[len("sqlite:///"):])} if url.startswith("sqlite:///") else None
    # The heartbeat and its retry callback are experimental in Optuna 5.0 (ExperimentalWarning); we use them on
    # purpose, as the documented way to fail and retry the trials of a driver that died.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kwargs = {} if heartbeat is None else {
            "heartbeat_interval": heartbeat, "grace_period": grace,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY),
            "skip_compatibility_check": True, "skip_table_creation": True}
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
        except Exception as e:  # sqlalchemy's errors (bad URL, missing driver, not a database, locked)
            raise ValueError(f"cannot open the Optuna storage {url}: {str(e).splitlines()[0]}") from None


def _sqlite_connector(path: str):
    """Connections to an SQLite file in WAL mode with synchronous=NORMAL: a commit (Optuna makes one per reported
    value and user attribute) needs no fsync, a killed process still loses no committed transaction, and readers
    such as optuna-dashboard never block the driver. They wait up to 60 s for a lock instead of failing."""
    import sqlite3

    def connect():
        conn = sqlite3.connect(path, timeout=60, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return connect


def _sampler(spec: TuneSpec, resumed: int = 0):
    """The spec's sampler. `resumed`: trials the study holds already. Random and TPE draw from a generator seeded
    with spec.seed + resumed, so a resumed search goes on with new draws instead of repeating its first ones (grid
    and QMC take their next point from the study itself)."""
    optuna = _optuna()
    s = spec.sampler
    if s == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed + resumed)
    if s == "tpe":  # constant liar (the default): running trials count
        return optuna.samplers.TPESampler(seed=spec.seed + resumed)
    if s == "grid":
        return _GridSampler({k: v["choice"] for k, v in spec.search.items()}, seed=spec.seed)
    # QMCSampler is experimental in Optuna 5.0; we choose it on purpose when the spec asks for "qmc".
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(seed=spec.seed, scramble=True, warn_independent_sampling=False)


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, minus its `study.stop()` once the grid is used up: that works only inside
        `Study.optimize` (elsewhere it raises), and a tune stops by its trial count anyway (<= the grid's size)."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return GridSampler


def _GridSampler(*args, **kwargs):  # noqa: N802 (a class made on first use, so that optuna loads lazily)
    return _grid_sampler_class()(*args, **kwargs)


def _pruner(spec: TuneSpec):
    """Optuna's pruner for median and hyperband; halving (mlplab's own, synchronous) and none prune nothing there."""
    optuna = _optuna()
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_epochs, max_resource=spec.max_epochs,
                                              reduction_factor=spec.eta)
    return optuna.pruners.NopPruner()


def open_study(spec: TuneSpec, storage):
    """Create the study in `storage` (a URL or an RDBStorage), or load it to resume; a ValueError when it was made
    by a different spec."""
    optuna = _optuna()
    url = storage if isinstance(storage, str) else storage.url
    storage = _open_storage(storage) if isinstance(storage, str) else storage
    study = optuna.create_study(storage=storage, study_name=spec.name, direction="maximize",
                                sampler=_sampler(spec), pruner=_pruner(spec), load_if_exists=True)
    resumed = len(study.get_trials(deepcopy=False))
    if resumed:
        study.sampler = _sampler(spec, resumed)
    made_by = study.user_attrs.get("mlplab_spec")
    if made_by is None:
        study.set_user_attr("mlplab_spec", spec.identity())
        study.set_user_attr("mlplab_version", __version__)
        with warnings.catch_warnings():  # set_metric_names is experimental in Optuna 5.0: only a label
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE])
    elif _json_roundtrip(made_by) != _json_roundtrip(spec.identity()):
        raise ValueError(f"study {spec.name!r} in {url} was made by a different spec ("
                         f"{_spec_changes(_json_roundtrip(made_by), _json_roundtrip(spec.identity()))}); give [tune] "
                         "name another value or use another storage (only [tune] trials may change on a rerun)")
    return study


def _spec_changes(was: dict, now: dict, most: int = 3) -> str:
    """What differs between the spec a study was made by and this one, setting by setting: "[tune] max_epochs: 3 in
    the study, 2 now" (the first `most`, and how many more)."""
    said = []
    for section in sorted(set(was) | set(now)):
        a, b = was.get(section) or {}, now.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                said.append(f"[{section}] {key}: " + ("unset" if key not in a else f"{a[key]}") + " in the study, "
                            + ("unset" if key not in b else f"{b[key]}") + " now")
    more = f", and {len(said) - most} more" if len(said) > most else ""
    return "; ".join(said[:most]) + more if said else "its settings differ"


def _json_roundtrip(d):
    import json

    return json.loads(json.dumps(d, sort_keys=True))


class _Heartbeat:
    """Optuna's heartbeat for every trial this driver runs. Optuna beats for one trial per `Study.optimize`
    thread; a population trains many trials at once, so one thread here beats for all of them, through a
    heartbeat-enabled storage (the study itself asks and tells through a plain one: asking through the other
    warns that heartbeats expect `optimize`). A run that finds trials whose heartbeat stopped fails them, and
    Optuna's retry callback queues each again with the same parameters."""

    def __init__(self, url: str, study_name: str, interval: int, grace: int):
        optuna = _optuna()
        self.storage = _open_storage(url, heartbeat=interval, grace=grace)
        self.study = optuna.load_study(study_name=study_name, storage=self.storage,
                                       sampler=optuna.samplers.RandomSampler())
        self.interval = interval
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="mlplab-tune-heartbeat")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.storage.engine.dispose()  # close its database connections now, not when garbage is collected

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)  # at once: a trial without any heartbeat is never judged stale
        with self.lock:
            self.ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def _beat(self):
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = sorted(self.ids)
            for i in ids:
                with contextlib.suppress(Exception):  # a busy database: the next beat comes soon enough
                    self.storage.record_heartbeat(i)

    def fail_stale(self) -> tuple[int, list[int]]:
        """Fail (and queue again) the running trials whose driver is gone: no heartbeat for the grace period, or a
        driver process on this machine that has ended. Returns how many failed, and the numbers of those not queued
        again (retried MAX_RETRY times before: they stay failed)."""
        optuna = _optuna()
        from mlplab.store import process_ended

        before = {t.number for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
        self._label_stale()
        with warnings.catch_warnings():  # experimental in Optuna 5.0, used on purpose (see _open_storage)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
            retry = self.storage.get_heartbeat_stale_trial_callback()
            for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if "driver" not in t.user_attrs:  # created, but its driver died before naming itself?
                    t = self._wait_for_driver(t)
                if t is not None and ("driver" not in t.user_attrs or process_ended(t.user_attrs["driver"])):
                    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                        # it may have died while recording its end: say why it failed
                        self.storage.set_trial_user_attr(t._trial_id, "outcome", "driver died")
                        if self.storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
                            retry(self.study, self.storage.get_trial(t._trial_id))
        failed = {t.number: t for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
                  if t.number not in before}
        return len(failed), sorted(n for n, t in failed.items() if not _retries_left(t))

    def _label_stale(self) -> None:
        """Give the running trials whose heartbeat stopped the outcome "driver died" before Optuna's stale-trial check
        fails them (a failed trial's attributes can no longer be written), as the trials of a driver process that
        ended get it. A trial that is only slow and beats again soon records its own outcome when it ends. The
        stale trials are read through the heartbeat interface of Optuna's storages (BaseHeartbeat); a storage
        without it leaves them unlabelled, and they are counted all the same (see _tally)."""
        optuna = _optuna()
        stale = getattr(self.storage, "_get_stale_trial_ids", None)
        if stale is None:
            return
        for trial_id in stale(self.storage.get_study_id_from_name(self.study.study_name)):
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # it ended meanwhile
                self.storage.set_trial_user_attr(trial_id, "outcome", "driver died")

    def _wait_for_driver(self, t):
        """A running trial that names no driver: a live driver names itself (and starts its heartbeat) right after
        `ask`, so one still nameless ORPHAN_SECONDS after its start was left by a driver killed in between.
        Returns the trial as it is then (None if it has finished meanwhile)."""
        import datetime

        age = (datetime.datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else ORPHAN_SECONDS
        if age < ORPHAN_SECONDS:
            time.sleep(ORPHAN_SECONDS - age)
        t = self.storage.get_trial(t._trial_id)
        if t.state != _optuna().trial.TrialState.RUNNING:
            return None
        return t

    def give_back(self, trial) -> bool:
        """Fail a trial this driver will not finish (outcome "interrupted") and queue it again, as a stale one would
        be. Returns False when it is not queued again: interrupted MAX_RETRY times before, it stays failed (and
        counts toward [tune] trials)."""
        optuna = _optuna()
        queued = True
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.storage.set_trial_user_attr(trial._trial_id, "outcome", "interrupted")
            if self.storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                frozen = self.storage.get_trial(trial._trial_id)
                queued = _retries_left(frozen)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self.storage.get_heartbeat_stale_trial_callback()(self.study, frozen)
        self.remove(trial._trial_id)
        return queued


def _retries_left(trial) -> bool:
    """Whether Optuna's retry callback (max_retry MAX_RETRY) queues this failed trial again: it has been retried
    fewer than MAX_RETRY times (its `retry_history` lists the trials it retries)."""
    return len(trial.system_attrs.get("retry_history", [])) < MAX_RETRY


def counted(study) -> int:
    """Trials that count toward [tune] trials: finished (complete, pruned, or failed and not queued again) or
    running. A trial failed because its driver died or it was interrupted, and queued again, does not count: its
    retry does (Optuna's retry callback lists it in the retry's `retry_history`)."""
    return _tally(study.get_trials(deepcopy=False))["counted"]


def _tally(trials) -> dict[str, int]:
    """The stored trials by how they count: complete, pruned, running; failed (for a reason of their own, such as
    divergence, or interrupted or left by a dead driver too often to be queued again: these count); interrupted
    (failed by an interruption or a dead driver and queued again: Optuna's retry callback lists them in the retry's
    `retry_history`, and the retry counts instead). Every stored trial is in one of these but waiting ones (asked
    for again, not started). "counted": those toward [tune] trials."""
    from optuna.trial import TrialState

    requeued = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    fails = [t for t in trials if t.state == TrialState.FAIL]
    tally = {"complete": sum(t.state == TrialState.COMPLETE for t in trials),
             "pruned": sum(t.state == TrialState.PRUNED for t in trials),
             "running": sum(t.state == TrialState.RUNNING for t in trials),
             "failed": sum(t.number not in requeued for t in fails),
             "interrupted": sum(t.number in requeued for t in fails)}
    return {**tally, "counted": tally["complete"] + tally["pruned"] + tally["running"] + tally["failed"]}


# -- a population of one round ----------------------------------------------------------------------------------------


class PopulationWorker:
    """One population of a round, trained an epoch at a time when the driver says so; in the driver's process or
    as a Ray actor. Models are named by the driver's index (`ids`), which `Population` keeps through `take`."""

    def __init__(self, configs: list[TrainConfig], ids: list[int], splits, device, threads: int | None = None,
                 tensors=None):
        if threads is not None:
            torch.set_num_threads(threads)  # a Ray actor owns its process
        self.dev = resolve_device(device)
        self.X, self.Y, self.evals, n_classes = tensors if tensors is not None else _tensors(splits, self.dev)
        c0 = configs[0]
        if splits is not None:
            data_mod.check_batch_size(c0.batch_size, splits)
        self.sizes = layer_sizes(self.X.shape[1], c0.hidden, n_classes)
        self.plan = EpochPlan.of(c0, len(self.X))
        self.pop = self._create(configs, ids)
        self.seconds = 0.0
        self.start = dict.fromkeys(ids, 0)  # each model's first step: the population's step when it joined

    def _create(self, configs, ids) -> Population:
        order = sorted(range(len(configs)), key=lambda i: configs[i].order_seed)
        return Population.create([configs[i] for i in order], self.sizes, self.dev, ids=[ids[i] for i in order])

    def add(self, configs: list[TrainConfig], ids: list[int]) -> int:
        """Refill: fresh models for `configs` (named `ids`) join the population (`Population.join`); they read its
        data-order streams from where they are. Returns the population's new size."""
        self.pop = self.pop.join(self._create(configs, ids))
        self.start.update(dict.fromkeys(ids, self.pop.step))
        return self.pop.size

    def epoch(self) -> dict:
        """Train one epoch and evaluate. Returns {"rows": {id: metrics}, "seconds": wall seconds so far}."""
        c0, dev = self.pop.configs[0], self.dev
        t0 = time.perf_counter()
        with matmul_precision(dev, c0.precision):
            loss_sum, steps = self.pop.train_epoch(self.X, self.Y, self.plan)
            synchronize(dev)
            with arithmetic(dev, c0.precision):
                metrics = self.pop.evaluate(self.evals)
        self.seconds += time.perf_counter() - t0
        train_loss, n_steps = (loss_sum / steps.clamp_min(1)).tolist(), steps.tolist()
        alive, died = self.pop.alive.tolist(), self.pop.died_at.tolist()
        rows = {}
        for m, i in enumerate(self.pop.ids):
            rows[i] = {"train_loss": train_loss[m] if n_steps[m] > 0 else math.nan,
                       **{k: v[m] for k, v in metrics.items()}, "alive": alive[m]}
            if not alive[m]:
                spe, steps = self.plan.steps_per_epoch, died[m] - self.start[i]  # its own steps before it broke
                rows[i]["diverged_at"] = {"epoch": steps // spe + 1, "step": steps % spe}
        return {"rows": rows, "seconds": self.seconds}

    def keep(self, ids: list[int]) -> int:
        """Keep only the models `ids` (the others leave the population); returns the population's new size."""
        wanted = set(ids)
        rows = [m for m, i in enumerate(self.pop.ids) if i in wanted]
        if len(rows) < self.pop.size:
            self.pop = self.pop.take(rows)
        return self.pop.size

    def exploit(self, moves: list[tuple[int, int, dict]]) -> dict[int, dict]:
        """PBT: for each (dst, src, hyperparameters), model dst becomes an exact copy of model src, then takes the
        hyperparameters. Returns dst's new config (as a dict) per dst."""
        row = {i: m for m, i in enumerate(self.pop.ids)}
        pbt_mod.exploit(self.pop, [row[d] for d, _, _ in moves], [row[s] for _, s, _ in moves])
        for d, _, hp in moves:
            pbt_mod.set_hyperparameters(self.pop, row[d], hp)
        return {d: self.pop.configs[row[d]].to_dict() for d, _, _ in moves}


def _tensors(splits, dev):
    X, Y = data_mod.to_tensors(splits.train_x, splits.train_y, dev)  # (N, D), (N,)
    evals = {"val": data_mod.to_tensors(splits.val_x, splits.val_y, dev),
             "test": data_mod.to_tensors(splits.test_x, splits.test_y, dev)}
    n_classes = int(max(splits.train_y.max(), splits.test_y.max())) + 1
    return X, Y, evals, n_classes


class _Local:
    """Workers in this process, one after another; the data tensors are shared by every population."""

    def __init__(self, dev, threads):
        self.dev, self.threads, self.tensors = dev, threads, {}

    def start(self, configs, ids, splits, bytes_):
        key = id(splits)
        if key not in self.tensors:
            self.tensors[key] = _tensors(splits, self.dev)
        return PopulationWorker(configs, ids, splits, self.dev, tensors=self.tensors[key])

    def release(self, worker) -> None:
        pass  # a worker in this process is freed with its last reference

    def call(self, workers, method, args):
        out = []
        for w, a in zip(workers, args):
            try:
                out.append(getattr(w, method)(*a))
            except Exception as e:  # one broken population fails its trials; the others go on
                out.append(_Broken(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"))
        return out

    def close(self):
        pass


class _Ray:
    """Each population in a Ray actor (one CPU and `threads` torch threads each); all of a round's populations
    train their epoch at the same time. The data goes to the object store once."""

    def __init__(self, dev, threads, address):
        import ray

        from mlplab.runner import start_ray

        self.ray, self.dev, self.threads, self.refs = ray, dev, threads or 1, {}
        self.started = start_ray(ray, address)
        self.remote = ray.remote(PopulationWorker)
        self.actors = []

    def start(self, configs, ids, splits, bytes_):
        key = id(splits)
        if key not in self.refs:
            self.refs[key] = self.ray.put(splits)
        opts = {"num_cpus": self.threads, "memory": max(1, bytes_), "max_restarts": 0}
        if self.dev.type == "cuda":
            opts["num_gpus"] = 1
        actor = self.remote.options(**opts).remote(configs, ids, self.refs[key], str(self.dev), self.threads)
        self.actors.append(actor)
        return actor

    def release(self, actor) -> None:
        """Give a population's actor and its CPU back to the cluster (the next population may need them)."""
        if actor in self.actors:
            self.actors.remove(actor)
        with contextlib.suppress(Exception):
            self.ray.kill(actor)

    def call(self, workers, method, args):
        refs = [getattr(w, method).remote(*a) for w, a in zip(workers, args)]
        out = []
        for r in refs:
            try:
                out.append(self.ray.get(r))
            except Exception as e:  # the actor died or raised: its trials fail, the others go on
                out.append(_Broken(f"{type(e).__name__}: {str(e)[:2000]}"))
        return out

    def close(self):
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(a)
        if self.started:
            self.ray.shutdown()


@dataclass
class _Broken:
    error: str


# -- the driver -------------------------------------------------------------------------------------------------------


@dataclass(eq=False)  # compared (and hashed) by identity
class _Trial:
    """A trial of the round: its Optuna trial, its models' configs (one per seed) and what it has done."""

    trial: object  # optuna.Trial
    configs: list[TrainConfig]
    model_ids: list[int]  # driver indices of its models (one per seed)
    pop: int  # index of its population in the round
    history: list[dict] = field(default_factory=list)
    schedule: list[dict] = field(default_factory=list)  # PBT: hyperparameters from each epoch on, and the source
    ended: bool = False


@dataclass
class TuneSummary:
    """What a `run` did and where the study stands."""

    study_name: str
    storage: str
    trials: int  # trials that count in the study now (toward [tune] trials)
    ran: int  # trials this run finished
    complete: int  # in the study: complete, pruned, failed (these three add up to `trials` once none is running)
    pruned: int
    failed: int  # diverged, an error, values no config allows, or interrupted (or its driver died) too often
    best_value: float | None  # the best validation accuracy (a trial's value), None before any trial completed
    best_trial: int | None
    best_params: dict  # the values that trial was sampled with (with PBT: where it started)
    best_test_accuracy: float | None  # that trial's test accuracy (a user attribute)
    model_epochs: int  # epochs trained by this run, summed over models (the compute spent)
    rounds: int
    seconds: float
    retried: int = 0  # trials of a dead driver failed and queued again at the start of this run
    interrupted: int = 0  # in the study: trials failed by an interruption or a dead driver and queued again (their
    # retries count instead)
    best_final_params: dict | None = None  # PBT: the best trial's searched hyperparameters at its end (it may have
    # copied another member's weights and changed them on the way: its hp_schedule and lineage say how)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run(spec: TuneSpec | dict | str | Path, *, storage: str | Path | None = None, splits=None, device="auto",
        backend: str = "local", address: str | None = None, threads: int | None = None, log=None,
        heartbeat: int = HEARTBEAT_SECONDS, grace: int = GRACE_SECONDS, budget_bytes: int | None = None,
        deterministic: bool = False, progress: bool | None = None) -> TuneSummary:
    """Run (or resume) the tune `spec` into the Optuna storage `storage`; returns a TuneSummary.

    spec: a TuneSpec, a dict of its TOML form, or a path to the TOML file. storage: an Optuna RDB URL or a file
    path (default: SPEC.optuna.sqlite3 beside the spec). splits: data.Splits to train on (default: the base
    config's data with its val_size). backend: "local" or "ray" (`address` as for sweeps). threads: torch threads
    (local: while the run lasts; ray: per actor, default 1). log: a callable taking one line per round.
    heartbeat, grace: seconds between heartbeats, and without one before a running trial counts as dead.
    progress: a bar over each round's epochs (None: on a terminal only; it disappears when the round ends).
    A round's populations are in memory at once (with the local backend): `per_round` bounds the memory."""
    from mlplab.runner import BACKENDS

    if isinstance(spec, (str, Path)):
        spec = TuneSpec.from_toml(spec)
    elif isinstance(spec, dict):
        spec = TuneSpec.from_dict(spec)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    url = storage_url(storage if storage is not None else default_storage(spec))
    dev = resolve_device(device)
    budget = budget_bytes if budget_bytes is not None else planner.memory_budget(dev)
    planner.check_fits([spec.config({k: _widest(v) for k, v in spec.search.items() if k in DERIVED_AXES})], budget)
    storage = _open_storage(url)
    try:
        study = open_study(spec, storage)
        return _run(spec, study, url, splits, dev, backend, address, threads, log, heartbeat, grace, budget,
                    deterministic, progress)
    finally:
        storage.engine.dispose()  # close its database connections now, not when garbage is collected


def _run(spec, study, url, splits, dev, backend, address, threads, log, heartbeat, grace, budget,
         deterministic, progress) -> TuneSummary:
    from mlplab.device import deterministic_mode

    t0 = time.perf_counter()
    saved_threads = torch.get_num_threads()
    if dev.type == "cpu":
        keep_freed_memory()
    runner = _Ray(dev, threads, address) if backend == "ray" else _Local(dev, threads)
    state = {"ran": 0, "model_epochs": 0, "rounds": 0}
    try:
        if threads is not None and backend == "local":
            torch.set_num_threads(threads)
        with _Heartbeat(url, spec.name, heartbeat, grace) as hb, deterministic_mode(deterministic):
            retried, given_up = hb.fail_stale()
            if retried and log:
                log(f"{retried} trial(s) of a driver that stopped were failed and queued again"
                    + (f", except {_numbers(given_up)}: failed {MAX_RETRY + 1} times, not queued again"
                       if given_up else ""))
            cache: dict = {}
            run_id = secrets.token_hex(3)
            if spec.refill:
                if counted(study) < spec.trials:
                    _stream(spec, study, hb, runner, splits, cache, budget, f"{run_id}-0", state, log, progress)
                    state["rounds"] += 1
            else:
                while (n := min(spec.per_round, spec.trials - counted(study))) > 0:
                    _round(spec, study, hb, runner, n, splits, cache, budget, f"{run_id}-{state['rounds']}", state,
                           log, progress)
                    state["rounds"] += 1
    finally:
        runner.close()
        torch.set_num_threads(saved_threads)
    return _summary(spec, study, url, state, time.perf_counter() - t0, retried)


def _widest(entry: dict):
    """The value of a width or depth entry that needs the most memory."""
    return max(_corners(entry))


def _round(spec, study, hb, runner, n, splits, cache, budget, round_id, state, log, progress=None) -> None:
    """Ask n trials, train them as populations epoch by epoch, report, prune, exploit, and tell."""
    from mlplab.store import git_commit, new_owner

    dists = spec.distributions()
    _, process = new_owner()
    trials: list[_Trial] = []
    configs: list[TrainConfig] = []  # every model of the round, indexed by driver id
    owner: list[int] = []  # driver id -> index in trials
    commit = git_commit()
    bar = None  # a bar over the round's epochs, below its first log line
    workers: list = []
    try:
        for _ in range(n):
            t = _new_trial(spec, study, hb, dists, process, commit, splits, len(configs))
            if t is None:
                continue
            trials.append(t)
            configs += t.configs
            owner += [len(trials) - 1] * len(t.configs)
        planner.check_fits(configs, budget)
        pops = planner.plan(configs, budget)
        index = {id(c): i for i, c in enumerate(configs)}
        sizes = []
        for k, p in enumerate(pops):
            ids = [index[id(c)] for c in p.configs]
            for i in ids:
                trials[owner[i]].pop = k
            split = splits if splits is not None else _splits(cache, p.configs[0])
            workers.append(runner.start(list(p.configs), ids, split, p.bytes))
            sizes.append(p.size)
        if log:
            log(f"round {round_id}: {n} trial(s){_seeds_said(spec)} in {len(pops)} population(s): "
                + ", ".join(p.describe() for p in pops[:6]) + (" ..." if len(pops) > 6 else ""))
        bar = progress_bar(spec.max_epochs, progress, f"round {round_id}", "epoch")
        live = list(range(len(workers)))  # populations with models left
        seconds = [0.0] * len(workers)
        for epoch in range(1, spec.max_epochs + 1):
            results = runner.call([workers[k] for k in live], "epoch", [()] * len(live))
            rows: dict[int, dict] = {}
            for k, res in zip(live, results):
                if isinstance(res, _Broken):
                    for t in trials:
                        if t.pop == k and not t.ended:
                            _end(study, hb, t, "error", epoch, seconds[k], sizes[k], round_id, spec, error=res.error)
                    continue
                seconds[k] = res["seconds"]
                rows.update(res["rows"])
                state["model_epochs"] += len(res["rows"])
            going = [t for t in trials if not t.ended]
            for t in going:
                if (at := _report(t, rows)) is not None:
                    _end(study, hb, t, "diverged", epoch, seconds[t.pop], sizes[t.pop], round_id, spec,
                         diverged_at=at)
            going = [t for t in trials if not t.ended]
            stop = _to_prune(spec, going, epoch) if epoch < spec.max_epochs else set()
            for t in going:
                if epoch == spec.max_epochs:
                    _end(study, hb, t, "complete", epoch, seconds[t.pop], sizes[t.pop], round_id, spec)
                elif t in stop:
                    _end(study, hb, t, "pruned", epoch, seconds[t.pop], sizes[t.pop], round_id, spec)
            # the count first, then the postfix, whose refresh draws both (tqdm skips drawing an update that comes
            # within 0.1 s of its last drawing, which left the count an epoch behind)
            bar.update()
            bar.set_postfix_str(f"{sum(not t.ended for t in trials)} of {len(trials)} trial(s) going")
            if epoch == spec.max_epochs:
                break
            keep = {k: [i for t in trials if not t.ended and t.pop == k for i in t.model_ids] for k in live}
            live = [k for k in live if keep[k]]
            runner.call([workers[k] for k in live], "keep", [(keep[k],) for k in live])
            if spec.scheduler == "pbt" and epoch % spec.pbt_interval == 0:
                _pbt_step(spec, trials, live, workers, runner, epoch, round_id)
            if not live:
                break
    finally:
        for w in workers:  # the next round's populations may need their CPUs (Ray)
            runner.release(w)
        _finish(study, hb, trials, bar, log)
    state["ran"] += sum(t.ended for t in trials)
    if log:
        log(f"round {round_id}: " + _ends_said(study, trials))


def _finish(study, hb, trials: list[_Trial], bar, log=None) -> None:
    """After a round or a refilled stream, also when interrupted (Ctrl-C, an error in the driver): close its bar
    and hand the unfinished trials back to be rerun."""
    if bar is not None:
        bar.close()
    given_up = [t.trial.number for t in trials if not t.ended and not hb.give_back(t.trial)]
    if given_up and log:
        log(f"{_numbers(given_up)} interrupted {MAX_RETRY + 1} times: not queued again; they stay failed (outcome "
            "'interrupted') and count toward [tune] trials")


def _seeds_said(spec: TuneSpec) -> str:
    """' x 3 seeds' when every trial trains [tune] seeds models (a population line counts models), else ''."""
    return f" x {spec.seeds} seeds" if spec.seeds > 1 else ""


def _numbers(numbers: list[int]) -> str:
    return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(map(str, numbers))


def _ends_said(study, trials: list[_Trial]) -> str:
    """How the trials ended, and the best so far: the line `tune` logs after a round."""
    ends = [t.trial.user_attrs for t in trials]
    best = _best(study)
    return (", ".join(f"{sum(e.get('outcome') == o for e in ends)} {o}"
                      for o in ("complete", "pruned", "diverged", "error"))
            + (f"; best so far {best.value:.4f} (trial {best.number})" if best else ""))


def _new_trial(spec, study, hb, dists, process, commit, splits, first_id: int) -> _Trial | None:
    """Ask Optuna for a trial and make its models' configs (driver ids first_id, first_id + 1, ...); None when the
    sampled values make no valid config (the trial is failed and counted)."""
    t = study.ask(dists)
    hb.add(t._trial_id)
    t.set_user_attr("driver", process)  # a rerun on this machine fails the trial at once if we die
    try:
        cfgs = [spec.config(t.params, seed=s) for s in range(spec.seeds)]
    except ValueError as e:  # a combination of sampled values that no config allows
        _invalid(study, hb, t, str(e))
        return None
    # Each user attribute is a transaction of its own in Optuna's storage: few, and the rest in `history`.
    t.set_user_attr("config", cfgs[0].to_dict())  # seed 0's; a trial with seeds S also runs seeds 1..S-1
    t.set_user_attr("mlplab_version", __version__ if commit is None else f"{__version__} (git {commit})")
    if splits is not None:  # data given from Python: the config's data and val_size do not describe it
        t.set_user_attr("splits", {"name": splits.name, "train": len(splits.train_x), "val": len(splits.val_x),
                                   "test": len(splits.test_x)})
    return _Trial(t, cfgs, list(range(first_id, first_id + len(cfgs))), pop=-1,
                  schedule=[{"epoch": 0, "from": None, "hp": _hp(cfgs[0], spec)}])


def _stream(spec, study, hb, runner, splits, cache, budget, round_id, state, log, progress=None) -> None:
    """[tune] refill: up to per_round trials train in one population, and as soon as trials end (pruned, complete
    or diverged) new ones are asked and join it (`PopulationWorker.add`), so the population stays full and the
    sampler learns from every trial that ends, as in a loop of one trial at a time. Each trial reports its own
    epochs; the median pruner is Optuna's own rule, its peers the completed trials (none pruned before the pruner's
    5 have completed, nor before [tune] startup_trials; until then only that many trials run). A joining trial
    reads the population's data-order stream from where it is; its user attribute `joined_epoch` says where (0:
    from the start)."""
    from mlplab.store import git_commit, new_owner

    dists = spec.distributions()
    _, process = new_owner()
    commit = git_commit()
    trials: list[_Trial] = []  # every trial asked, from the moment it is asked (so an interruption hands it back)
    next_id, worker, n_pops, size, seconds, epochs = 0, None, 0, 0, 0.0, 0
    joined: set[_Trial] = set()  # the trials that are or were in a population
    # The most models the population will hold, checked before any trial is asked (the shape is the same for all)
    full = [spec.config({})] * (spec.per_round * spec.seeds)
    planner.check_fits(full, budget)
    plan = planner.plan(full, budget)
    if len(plan) > 1:
        raise ValueError(f"[tune] refill: per_round x seeds = {len(full)} models do not fit one population in "
                         "memory; lower per_round")
    # Until the pruner can prune (the median rule: 5 completed trials), only that many trials run: more would run
    # whole, unpruned, which Optuna's one-at-a-time loop never does.
    warm = max(spec.startup_trials, MEDIAN_STARTUP) if spec.pruner == "median" else 0
    done = _n_complete(study)
    bar = progress_bar(spec.trials - counted(study), progress, f"refill {round_id}", "trial")

    def end(t, outcome, **kw):
        # seconds: its population's wall time until the trial left it (as in rounds), not since the trial joined
        _end(study, hb, t, outcome, len(t.history), seconds, size, round_id, spec, **kw)
        bar.update()

    def broke(error):  # the population failed: its trials fail, and the next ones start a new population
        for t in trials:
            if not t.ended and t in joined:
                end(t, "error", error=error)
        runner.release(worker)
        return None

    try:
        while True:
            room = spec.per_round if done >= warm else min(spec.per_round, warm - done)
            fresh, running = [], sum(not t.ended for t in trials)
            if running < room:
                left = spec.trials - counted(study)  # re-read: another driver may share the study
                while running + len(fresh) < room and left > 0:
                    left -= 1
                    t = _new_trial(spec, study, hb, dists, process, commit, splits, next_id)
                    if t is None:
                        bar.update()
                        continue
                    next_id += len(t.configs)
                    trials.append(t)
                    fresh.append(t)
            if fresh and worker is not None:
                res = runner.call([worker], "add", [([c for t in fresh for c in t.configs],
                                                     [i for t in fresh for i in t.model_ids])])[0]
                if isinstance(res, _Broken):
                    worker = broke(res.error)
            if fresh and worker is None:  # the first trials, or the population emptied or broke: a new one
                cfgs = [c for t in fresh for c in t.configs]
                split = splits if splits is not None else _splits(cache, cfgs[0])
                worker = runner.start(cfgs, [i for t in fresh for i in t.model_ids], split, plan[0].bytes)
                n_pops, seconds, epochs = n_pops + 1, 0.0, 0
                if log and n_pops == 1:  # (a population that emptied starts again without a line)
                    log(f"refill {round_id}: up to {spec.per_round} trial(s){_seeds_said(spec)} at a time in one "
                        "population: " + plan[0].describe())
            for t in fresh:
                t.pop = n_pops - 1
                joined.add(t)
                t.trial.set_user_attr("joined_epoch", epochs)
            going = [t for t in trials if not t.ended]
            if not going:
                break
            size = sum(len(t.model_ids) for t in going)
            res = runner.call([worker], "epoch", [()])[0]
            if isinstance(res, _Broken):
                worker = broke(res.error)
                continue
            seconds, epochs, rows = res["seconds"], epochs + 1, res["rows"]
            state["model_epochs"] += len(rows)
            for t in going:
                if (at := _report(t, rows)) is not None:
                    end(t, "diverged", diverged_at=at)
            going = [t for t in going if not t.ended]
            stop = _to_prune(spec, [t for t in going if len(t.history) < spec.max_epochs], None, round_peers=False)
            for t in going:
                if len(t.history) == spec.max_epochs:
                    end(t, "complete")
                    done += 1
                elif t in stop:
                    end(t, "pruned")
            kept = [i for t in going if not t.ended for i in t.model_ids]
            if not kept:  # nothing to keep: the next trials start a population of their own
                runner.release(worker)
                worker = None
            elif isinstance(res := runner.call([worker], "keep", [(kept,)])[0], _Broken):
                worker = broke(res.error)
    finally:
        if worker is not None:
            runner.release(worker)
        _finish(study, hb, trials, bar, log)
    state["ran"] += sum(t.ended for t in trials)
    if log:
        log(f"refill {round_id}: {len(trials)} trial(s) in {n_pops} population(s): " + _ends_said(study, trials))


def _n_complete(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _report(t: _Trial, rows: dict[int, dict]) -> dict | None:
    """Add this epoch of trial t to its history (the means over its seeds' rows) and report it to Optuna; when a
    seed diverged, report nothing and return where it broke (None while every seed is alive)."""
    per_seed = [rows[i] for i in t.model_ids]
    t.history.append(_mean_row(len(t.history) + 1, per_seed))
    at = next((r["diverged_at"] for r in per_seed if not r["alive"]), None)
    if at is None:
        t.trial.report(t.history[-1][OBJECTIVE], len(t.history))
    return at


def _mean_row(epoch: int, per_seed: list[dict]) -> dict:
    """One epoch of a trial: each metric's mean over its seeds (and the per-seed values when there are several)."""
    keys = [k for k in per_seed[0] if k not in ("alive", "diverged_at")]
    row = {"epoch": epoch, **{k: _mean([r[k] for r in per_seed]) for k in keys}}
    if len(per_seed) > 1:
        row["per_seed"] = {k: [r[k] for r in per_seed] for k in keys}
    return row


def _mean(xs):
    return sum(xs) / len(xs)


def _to_prune(spec: TuneSpec, going: list[_Trial], epoch: int | None, round_peers: bool = True) -> set:
    """The trials to stop after this epoch: Optuna's pruner (median, with the round as peers unless `round_peers` is
    False, as in a refilled search; hyperband), or synchronous successive halving over the round: at each rung
    (min_epochs * eta^k epochs) keep the best 1/eta of the trials left."""
    if spec.pruner == "median" and going:
        return _median_stops(going, spec.startup_trials, round_peers)
    if spec.pruner == "hyperband":
        return {t for t in going if t.trial.should_prune()}
    if spec.pruner == "halving" and epoch in halving_rungs(spec.max_epochs, spec.min_epochs, spec.eta) and going:
        ranked = sorted(going, key=lambda t: (-t.history[-1][OBJECTIVE], t.trial.number))
        return set(ranked[max(1, len(going) // spec.eta):])
    return set()


def _median_stops(going: list[_Trial], startup_trials: int = 0, round_peers: bool = True) -> set:
    """The trials Optuna's median pruner stops, judged against the completed trials and the other trials of their
    round at the same epoch. Alone, Optuna's pruner counts completed trials only, so a round of trials asked together
    could prune nothing until an earlier round had completed (a one-at-a-time search prunes from its sixth trial on).
    Every trial of a round has reached this epoch with the others, so their values here are the peers it lacks.
    With `startup_trials` > 0 nothing is pruned until that many trials have completed (Optuna's own loop waits for
    5): more compute, and a search that has seen whole curves before it prunes. Without `round_peers` the peers are
    the completed trials only, as in Optuna's own loop. The study is read once per epoch, not once per trial."""
    from optuna.trial import TrialState, create_trial

    study = going[0].trial.study
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < startup_trials:
        return set()
    now = [create_trial(state=TrialState.RUNNING, intermediate_values={h["epoch"]: h[OBJECTIVE] for h in t.history})
           for t in going]  # each trial as the values it has reported so far
    if not round_peers:
        view = _PeersView(study, done)
        return {t for t, frozen in zip(going, now) if study.pruner.prune(view, frozen)}
    return {t for i, t in enumerate(going)
            if study.pruner.prune(_PeersView(study, done + now[:i] + now[i + 1:]), now[i])}


class _PeersView:
    """A study as a pruner sees it: `peers` are its completed trials; everything else is the study's own."""

    def __init__(self, study, peers: list):
        self._study, self._peers = study, peers

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        from optuna.trial import TrialState

        if states is not None and tuple(states) == (TrialState.COMPLETE,):
            return self._peers
        return self._study.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name):
        return getattr(self._study, name)


def halving_rungs(max_epochs: int, min_epochs: int, eta: int) -> list[int]:
    """Epochs after which synchronous successive halving keeps the best 1/eta: min_epochs * eta^k < max_epochs."""
    rungs, r = [], min_epochs
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    return rungs


def halving_model_epochs(n: int, max_epochs: int, min_epochs: int = 1, eta: int = 3) -> int:
    """Model-epochs that synchronous successive halving spends on a round of n trials (one seed), with no model
    diverging: the compute to match when comparing it with a grid or random search."""
    total, alive, done = 0, n, 0
    for r in [*halving_rungs(max_epochs, min_epochs, eta), max_epochs]:
        total += alive * (r - done)
        done = r
        alive = max(1, alive // eta)
    return total


def halving_trials(model_epochs: int, max_epochs: int, min_epochs: int = 1, eta: int = 3) -> int:
    """The most trials one round of synchronous successive halving can start within `model_epochs` (e.g. a grid's
    N x max_epochs): the n for a search at equal compute."""
    n = 0
    while halving_model_epochs(n + 1, max_epochs, min_epochs, eta) <= model_epochs:
        n += 1
    return n


def _pbt_step(spec, trials, live, workers, runner, epoch, round_id) -> None:
    """Exploit and explore inside each population: the bottom fraction of its trials copy a top one (every seed's
    model from the same seed's), then perturb the copied hyperparameters within the search ranges."""
    rng = random.Random(f"{spec.seed}:{round_id}:{epoch}")  # explicit randomness: the spec seed, round and epoch
    moves_per_pop = {k: [] for k in live}
    dists = spec.search
    for k in live:
        members = {t.trial.number: t for t in trials if not t.ended and t.pop == k}
        scores = {num: t.history[-1][OBJECTIVE] for num, t in members.items()}
        for dst_num, src_num in pbt_mod.plan_exploit(scores, spec.pbt_fraction, rng):
            dst, src = members[dst_num], members[src_num]
            hp = {}
            for name in (n for n in pbt_mod.SETTABLE if n in dists):
                entry = dists[name]
                value = getattr(src.configs[0], name)
                if "choice" in entry:
                    hp[name] = value  # a categorical value is copied, not perturbed
                else:
                    lo, hi = _corners(entry)
                    hp[name] = pbt_mod.perturb(value, lo, hi, log=entry.get("log", "loguniform" in entry),
                                               integer="int" in entry, rng=rng)
            for d, s in zip(dst.model_ids, src.model_ids):
                moves_per_pop[k].append((d, s, hp))
            dst.schedule.append({"epoch": epoch, "from": src_num, "hp": hp})
    order = [k for k in live if moves_per_pop[k]]
    results = runner.call([workers[k] for k in order], "exploit", [(moves_per_pop[k],) for k in order])
    for k, res in zip(order, results):
        if isinstance(res, _Broken):
            continue  # the next epoch reports this population broken
        for t in trials:
            if not t.ended and t.pop == k and t.model_ids[0] in res:
                t.configs = [TrainConfig.from_dict(res[i]) for i in t.model_ids]


def _hp(config: TrainConfig, spec: TuneSpec) -> dict:
    """The searched per-model settings of a config (what PBT may change)."""
    return {k: getattr(config, k) for k in spec.search if k in pbt_mod.SETTABLE}


def _end(study, hb, t: _Trial, outcome: str, epoch: int, seconds: float, pop_size: int, round_id: str,
         spec: TuneSpec, error: str | None = None, diverged_at: dict | None = None) -> None:
    """Record a trial's end in its user attributes and tell Optuna: complete (value: its validation accuracy),
    pruned, or failed (diverged, or an error)."""
    from optuna.trial import TrialState

    last = t.history[-1] if t.history else {}
    tr = t.trial
    # seconds: the wall time of the population the trial trained in, until it left; history: its metrics per epoch
    # (means over its seeds), the last of which are its final ones.
    attrs = {"outcome": outcome, "epochs": len(t.history), "seconds": seconds, "population": f"{round_id}-{t.pop}",
             "population_size": pop_size, "test_accuracy": _json_safe(last.get("test_accuracy")),
             "history": _json_safe(t.history)}
    if spec.scheduler == "pbt":
        attrs.update(final_config=t.configs[0].to_dict(), hp_schedule=t.schedule,
                     lineage=[s["from"] for s in t.schedule if s["from"] is not None])
    if error is not None:
        attrs["error"] = error[:4000]
    if diverged_at is not None:
        attrs["diverged_at"] = diverged_at
    for k, v in attrs.items():
        tr.set_user_attr(k, v)
    if outcome == "complete":
        study.tell(tr, last[OBJECTIVE])
    elif outcome == "pruned":
        study.tell(tr, state=TrialState.PRUNED)
    else:
        study.tell(tr, state=TrialState.FAIL)
    hb.remove(tr._trial_id)
    t.ended = True


def _invalid(study, hb, trial, error: str) -> None:
    """Fail a trial whose sampled values make no valid config (counted: it is the sampler's choice)."""
    from optuna.trial import TrialState

    trial.set_user_attr("outcome", "invalid")
    trial.set_user_attr("error", error)
    study.tell(trial, state=TrialState.FAIL)
    hb.remove(trial._trial_id)


def _splits(cache: dict, c: TrainConfig):
    key = (c.data, c.val_size)
    if key not in cache:
        cache[key] = data_mod.make_splits(data_mod.load_dataset(c.data), c.val_size)
        data_mod.check_batch_size(c.batch_size, cache[key])
    return cache[key]


def _best(study):
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def _summary(spec, study, url, state, seconds, retried) -> TuneSummary:
    tally = _tally(study.get_trials(deepcopy=False))
    best = _best(study)
    schedule = best.user_attrs.get("hp_schedule") if best else None
    return TuneSummary(
        study_name=spec.name, storage=url, ran=state["ran"], trials=tally["counted"],
        complete=tally["complete"], pruned=tally["pruned"], failed=tally["failed"], interrupted=tally["interrupted"],
        best_final_params=dict(schedule[-1]["hp"]) if schedule and spec.scheduler == "pbt" else None,
        best_value=best.value if best else None, best_trial=best.number if best else None,
        best_params=dict(best.params) if best else {},
        best_test_accuracy=best.user_attrs.get("test_accuracy") if best else None,
        model_epochs=state["model_epochs"], rounds=state["rounds"], seconds=seconds, retried=retried)


def pbt_members(study) -> list[dict]:
    """Each finished PBT member: its number, value, lineage and hyperparameter schedule (for pbt.plot_schedules)."""
    from optuna.trial import TrialState

    return [{"number": t.number, "value": t.value, "lineage": t.user_attrs.get("lineage", []),
             "hp_schedule": t.user_attrs["hp_schedule"]}
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "hp_schedule" in t.user_attrs]


# -- export: a sweep or study store into an Optuna storage ------------------------------------------------------------


def export(store_path: str | Path, url: str, study_name: str | None = None) -> tuple[int, int]:
    """Put every finished trial of a result store (a sweep's or the study's) into the Optuna study `study_name`
    (default: the store's file stem) at `url`, as trials with the settings that vary as parameters, the validation
    accuracy as value and per-epoch intermediate values. Trials already exported (same key) are skipped.
    Returns (added, skipped)."""
    from mlplab.analysis import ending
    from mlplab.store import Store

    optuna = _optuna()
    from optuna.trial import TrialState

    with Store(store_path, create=False) as store:
        rows = [r for r in store.records() if r["status"] in ("done", "diverged", "failed")]
    name = study_name or Path(store_path).stem
    study = optuna.create_study(storage=_open_storage(url), study_name=name, direction="maximize",
                                load_if_exists=True)
    have = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False)}
    varying = _varying(rows)
    dists = {k: _export_distribution([r.get(k) for r in rows]) for k in varying}
    new = []
    for r in rows:
        if r["key"] in have:
            continue
        config = {k: r.get(k) for k in TrainConfig().to_dict()}
        done = r["status"] == "done" and r.get("val_accuracy") is not None
        history = r.get("history") or []
        new.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE if done else TrialState.FAIL,
            value=r["val_accuracy"] if done else None,
            params={k: _export_value(r.get(k)) for k in varying},
            distributions=dists,
            intermediate_values={h["epoch"]: h["val_accuracy"] for h in history
                                 if h.get("val_accuracy") is not None and math.isfinite(h["val_accuracy"])},
            user_attrs=_json_safe({"key": r["key"], "config": config, "status": r["status"], **ending(r),
                                   "test_accuracy": r.get("test_accuracy"), "val_loss": r.get("val_loss"),
                                   "seconds": r.get("seconds"), "population_size": r.get("population"),
                                   "mlplab_version": r.get("version"), "git_commit": r.get("git_commit"),
                                   "error": r.get("error")}),
        ))
    study.add_trials(new)
    if "mlplab_store" not in study.user_attrs:
        study.set_user_attr("mlplab_store", str(Path(store_path).resolve()))
    return len(new), len(rows) - len(new)


def _varying(rows: list[dict]) -> list[str]:
    keys = list(TrainConfig().to_dict())
    return [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


def _export_value(v):
    return ",".join(str(x) for x in v) if isinstance(v, list) else v


def _export_distribution(values: list):
    """An Int- or FloatDistribution for numbers (log scale when they span 100x or more), else a categorical one."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        lo, hi = min(values), max(values)
        log = lo > 0 and hi / lo >= 100
        if all(isinstance(v, int) for v in values):
            return IntDistribution(lo, hi, log=log)
        return FloatDistribution(float(lo), float(hi), log=log)
    return CategoricalDistribution(sorted({_export_value(v) for v in values}, key=repr))


# -- the command line -------------------------------------------------------------------------------------------------


def add_parsers(sub) -> None:
    """Add `mlplab tune` and `mlplab export` to the subcommands `sub` of the mlplab parser."""
    from mlplab.cli import add_backend_arguments, add_deterministic_argument, add_threads_argument

    t = sub.add_parser("tune", help="adaptive search (Optuna): each round of sampled trials trains as populations",
                       description="Sample trials from the [search] distributions of SPEC with Optuna, train each "
                       "round as populations, prune or exploit them epoch by epoch, and store everything in an "
                       "Optuna storage (resumable; `optuna-dashboard URL` shows it live).")
    t.add_argument("spec", help="the tune spec, a TOML file with [base], [search] and [tune]")
    t.add_argument("--storage", help="Optuna storage URL or file (default: SPEC.optuna.sqlite3 beside the spec)")
    t.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    t.add_argument("--heartbeat", type=int, default=HEARTBEAT_SECONDS, metavar="SECONDS",
                   help=f"seconds between heartbeats of the running trials (default {HEARTBEAT_SECONDS}); a rerun "
                   f"fails and retries trials silent for max({GRACE_SECONDS} s, 3x this long)")
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    t.add_argument("--quiet", action="store_true", help="no line per round and no progress bar")
    add_threads_argument(t)
    add_backend_arguments(t)
    add_deterministic_argument(t)
    t.set_defaults(func=cmd_tune)

    e = sub.add_parser("export", help="put a sweep or study result store into an Optuna storage",
                       description="Add every finished trial of STORE to an Optuna study (for optuna-dashboard); "
                       "rerunning adds only what is new.")
    e.add_argument("store", help="the SQLite result store of a sweep or study")
    e.add_argument("--optuna", required=True, metavar="URL", help="Optuna storage URL or file, e.g. "
                   "sqlite:///runs/lr.optuna.sqlite3")
    e.add_argument("--study", help="the study name (default: the store's file name without extension)")
    e.set_defaults(func=cmd_export)


def cmd_tune(args) -> int:
    import json

    from mlplab.cli import USER_ERRORS, _fail, check_backend, resolve_threads

    try:
        spec = TuneSpec.from_toml(args.spec)
        url = storage_url(args.storage if args.storage is not None else default_storage(spec))
        threads = resolve_threads(args)
        check_backend(args)
        if args.heartbeat < 1:
            raise ValueError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
        resolve_device(args.device)
    except USER_ERRORS as e:
        return _fail(f"tune: {e}")
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        s = run(spec, storage=url, device=args.device, backend=args.backend, address=args.address, threads=threads,
                log=log, heartbeat=args.heartbeat, grace=max(GRACE_SECONDS, 3 * args.heartbeat),
                deterministic=args.deterministic, progress=False if args.quiet else None)
    except (*USER_ERRORS, ConnectionError) as e:  # ConnectionError: a Ray cluster that cannot be reached
        return _fail(f"tune: {e}")
    if args.json:
        print(json.dumps(_json_safe(s.to_dict())))
    else:
        test = "-" if s.best_test_accuracy is None else f"{s.best_test_accuracy:.4f}"
        if s.best_value is None:
            best = ("no trial completed yet" if s.trials < spec.trials else
                    "no trial completed; raise [tune] trials (or narrow [search]) to run more")
        elif s.best_final_params is not None:  # PBT: its value came from the hyperparameters it ended with
            best = (f"best val accuracy {s.best_value:.4f} (trial {s.best_trial}, test accuracy {test}): ended with "
                    f"{s.best_final_params} (started from {s.best_params}; each change is in its hp_schedule)")
        else:
            best = f"best val accuracy {s.best_value:.4f} (trial {s.best_trial}, test accuracy {test}): {s.best_params}"
        again = f"; {s.interrupted} interrupted and queued again" if s.interrupted else ""
        how = "refilled as trials ended" if spec.refill else f"in {s.rounds} round(s)"
        print(f"tune {s.study_name}: {s.trials} trials ({s.complete} complete, {s.pruned} pruned, {s.failed} "
              f"failed{again}), {s.ran} run now {how}, {s.model_epochs} model-epochs, {s.seconds:.1f} s; "
              f"{best}\nwatch it: optuna-dashboard {s.storage}  (pip install optuna-dashboard)")
    return 0


def cmd_export(args) -> int:
    import sqlite3

    from mlplab.cli import USER_ERRORS, _fail
    from mlplab.store import describe_database_error

    try:
        url = storage_url(args.optuna)
        added, skipped = export(args.store, url, args.study)
    except USER_ERRORS as e:
        return _fail(f"export: {e}")
    except sqlite3.DatabaseError as e:
        return _fail(f"export: {describe_database_error(Path(args.store), e)}")
    print(f"{added} trial(s) added, {skipped} already there -> {url} (optuna-dashboard {url})", file=sys.stderr)
    return 0


__all__ = ["TuneSpec", "TuneSummary", "run", "export", "halving_rungs", "halving_model_epochs", "halving_trials",
           "pbt_members"]
