"""`mlplab study`: the whole hyperparameter case study, trained through the sweep engine, written as an executed
notebook (plus HTML and figures) whose cells read the result store.

    mlplab study                      # the full study: ~560 trials, 3-5 seeds, each trained to convergence
    mlplab study --quick              # a reduced study for a quick look (and CI): 2 seeds, 3-epoch budget
    mlplab study --out report --store runs/study.sqlite --seeds 5

Trials that are already in the store are reused, so a second run (or one after Ctrl-C) only trains what is missing
and re-executes the notebook. The three searches of the notebook's section 9 (grid, random search and successive
halving, through `mlplab.tune`) go into Optuna storages in the output folder, OUT/search-METHOD.optuna.sqlite3,
and resume the same way. The notebook and HTML are written atomically.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.resources
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from mlplab.config import TrainConfig
from mlplab.files import atomic_write, current_umask
from mlplab.sweep import SweepSpec, expand_axis

# How every experiment trains: to convergence under early stopping. A model stops once its validation loss has not
# improved by more than MIN_DELTA for PATIENCE epochs in a row, or at its epoch budget; it reports the epoch with the
# lowest validation loss (that epoch's weights and metrics). The learning rate is constant (except in the recipe
# adam_cosine, whose cosine schedule ends at its budget), so the budget does not change what a model does before it
# stops.
PATIENCE = 3
MIN_DELTA = 1e-4
BUDGET = 15  # max epochs of the sweeps (section 3's constant-rate recipes get RECIPE_BUDGET)
# Init scales far below the logspace of the init-scale sweep (full study): is there a scale too small to train from,
# short of the exact zero of section 4? (a random init this small still breaks the units' symmetry)
TINY_SCALES = [1e-12, 1e-9, 1e-6]
RECIPE_BUDGET = 30
QUICK_BUDGET, QUICK_PATIENCE = 3, 1

# The setting every sweep and grid varies around: one hidden layer of BASE_WIDTH ReLU units (a quarter of the course's
# 256: on a CPU a population step costs about its parameters' memory traffic, so this width keeps the study within
# its 30 minutes), He-uniform init, SGD with momentum 0.9 at a constant learning rate of 0.05, batch 128, bf16 matmuls
# (float32 master weights). The init-scale experiments use the course's uniform(-a, a), where a is an absolute bound.
BASE_WIDTH = 64
BASE = {"hidden": [BASE_WIDTH], "activation": "relu", "init": "kaiming_uniform", "optimizer": "sgd", "lr": 0.05,
        "momentum": 0.9, "batch_size": 128, "precision": "bf16", "patience": PATIENCE, "min_delta": MIN_DELTA}
# The recipes compared on the course's own MLP (784-256-10), chosen by validation accuracy. Each trains to its own
# epoch budget (RECIPE_BUDGET unless it names one): the cosine schedule's horizon is its budget.
RECIPES = {
    "course": {"init": "uniform", "init_scale": 0.01, "lr": 0.1, "momentum": 0.0},
    "momentum": {"init": "kaiming_uniform", "lr": 0.05, "momentum": 0.9},
    "adam": {"init": "kaiming_uniform", "optimizer": "adam", "lr": 1e-3, "momentum": 0.0},
    # mlplab's `fast` preset's recipe: Adam at 3e-3 decayed to 0 along a cosine over 10 epochs, label smoothing 0.1
    "adam_cosine": {"init": "kaiming_uniform", "optimizer": "adam", "lr": 3e-3, "momentum": 0.0,
                    "schedule": "cosine", "label_smoothing": 0.1, "epochs": 10},
}
# adam_cosine with one of its three parts changed at a time (the notebook's section 3 asks which part its gain over
# the other recipes comes from): no label smoothing; a constant rate (to the sweeps' budget: at 3e-3 the patience
# rule stopped all 5 seeds by epoch 13 in a run with a 30-epoch budget); SGD with momentum 0.9 at the base rate 0.05
# instead of Adam.
RECIPE_PARTS = {
    "no_smoothing": {**RECIPES["adam_cosine"], "label_smoothing": 0.0},
    "constant_rate": {**RECIPES["adam_cosine"], "schedule": "constant", "epochs": BUDGET},
    "sgd_momentum": {**RECIPES["adam_cosine"], "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
}


# The search comparison (the notebook's section 9): the grid, random search and successive halving on ONE search space,
# the learning rate (log scale) x momentum of a narrow MLP (784-32-10, plain fp32: bf16 does not pay at this width)
# trained for a few epochs without early stopping, each run through `mlplab.tune` with one seed per trial and a fixed
# sampler seed. The grid is a lattice of the box [min, max] of its values, which random search and halving sample
# (the learning rate log-uniformly, momentum uniformly). Equal compute: every method trains in SEARCH_ROUNDS rounds,
# each of the same budget of model-epochs (a grid round: its trials x SEARCH_EPOCHS); a halving round starts the most
# trials whose schedule fits that budget (tune.halving_trials). Full: 20 grid points, 4 rounds of 20 model-epochs,
# 80 per method; quick: 4 points, 2 rounds of 4.
SEARCH_BASE = {"hidden": [32], "activation": "relu", "init": "kaiming_uniform", "optimizer": "sgd",
               "batch_size": 128, "precision": "fp32"}
SEARCH_GRID = {"lr": [0.001, 0.00562, 0.0316, 0.178, 1.0], "momentum": [0.0, 0.3, 0.6, 0.9]}  # 10^(-3 + 0.75 k)
QUICK_SEARCH_GRID = {"lr": [0.01, 0.1], "momentum": [0.0, 0.9]}
SEARCH_EPOCHS, SEARCH_ROUNDS = 4, 4
QUICK_SEARCH_EPOCHS, QUICK_SEARCH_ROUNDS = 2, 2
SEARCH_ETA = 2  # halving keeps the best half after epochs 1, 2, 4, ... (rungs: tune.halving_rungs)
SEARCH_SEED = 0  # the samplers' seed (the grid's order, random search's and halving's draws)
SEARCH_NOISE = {"lr": 0.05, "momentum": 0.9}  # the setting whose seeds measure one run's noise (search_noise)
SEARCH_TITLES = {"grid": "grid search", "random": "random search", "halving": "successive halving"}


@dataclass(frozen=True)
class Search:
    method: str  # grid | random | halving
    title: str
    spec: dict  # tune.run's spec in its TOML form; [tune] name carries a digest of the rest
    rounds: int  # rounds of equal model-epochs
    round_epochs: int  # model-epochs of one round (the grid's trials per round x epochs), the same for every method

    @property
    def name(self) -> str:
        return self.spec["tune"]["name"]

    @property
    def storage(self) -> str:
        """The Optuna storage's file name, inside the study's output folder."""
        return f"search-{self.method}.optuna.sqlite3"

    @property
    def budget(self) -> int:
        """Model-epochs the method may spend (if no model diverges, it spends exactly this)."""
        return self.rounds * self.round_epochs


def searches(quick: bool = False) -> dict[str, Search]:
    """The three searches of the comparison, at equal compute (see the comment above SEARCH_BASE)."""
    from mlplab.tune import halving_trials

    grid = QUICK_SEARCH_GRID if quick else SEARCH_GRID
    epochs, rounds = (QUICK_SEARCH_EPOCHS, QUICK_SEARCH_ROUNDS) if quick else (SEARCH_EPOCHS, SEARCH_ROUNDS)
    n = math.prod(len(v) for v in grid.values())
    assert n % rounds == 0, f"the grid's {n} points must split into {rounds} equal rounds"
    per_round = n // rounds
    round_epochs = per_round * epochs
    n_halving = halving_trials(round_epochs, epochs, 1, SEARCH_ETA)  # per round
    box = {"lr": {"loguniform": [min(grid["lr"]), max(grid["lr"])]},
           "momentum": {"uniform": [min(grid["momentum"]), max(grid["momentum"])]}}
    lattice = {k: {"choice": list(v)} for k, v in grid.items()}
    plans = {"grid": (lattice, "grid", "none", per_round), "random": (box, "random", "none", per_round),
             "halving": (box, "random", "halving", n_halving)}
    out = {}
    for method, (space, sampler, pruner, k) in plans.items():
        doc = {"base": dict(SEARCH_BASE), "search": space,
               "tune": {"trials": rounds * k, "per_round": k, "sampler": sampler, "pruner": pruner,
                        "max_epochs": epochs, "seeds": 1, "seed": SEARCH_SEED, "eta": SEARCH_ETA, "min_epochs": 1}}
        # A changed spec makes a new Optuna study beside the old one (tune refuses to resume a study of another spec)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:8]
        doc["tune"]["name"] = f"{method}-{digest}"
        out[method] = Search(method, SEARCH_TITLES[method], doc, rounds, round_epochs)
    return out


def search_round_configs(s: Search) -> list[TrainConfig]:
    """One round's models at the epochs each trains when none diverges (halving: dropped at its rung), for the plan."""
    from mlplab.sweep import make_config
    from mlplab.tune import halving_rungs

    t = s.spec["tune"]
    c = make_config(s.spec["base"], {**SEARCH_NOISE, "epochs": t["max_epochs"]})
    if t["pruner"] != "halving":
        return [c] * t["per_round"]
    alive, epochs = t["per_round"], []
    for rung in halving_rungs(t["max_epochs"], t["min_epochs"], t["eta"]):
        keep = max(1, alive // t["eta"])
        epochs += [rung] * (alive - keep)
        alive = keep
    epochs += [t["max_epochs"]] * alive
    return [replace(c, epochs=e) for e in epochs]


def run_searches(out: Path, quick: bool, device, threads: int | None = None, backend: str = "local",
                 address: str | None = None, deterministic: bool = False, log=print,
                 progress: bool | None = None) -> dict:
    """Run (or resume) the three searches into OUT/search-METHOD.optuna.sqlite3; a rerun finds their trials counted
    and trains nothing. Returns {method: tune.TuneSummary of this run}. progress: as for tune.run."""
    from mlplab import tune

    done = {}
    for m, s in searches(quick).items():
        done[m] = tune.run(s.spec, storage=Path(out) / s.storage, device=device, backend=backend, address=address,
                           threads=threads, deterministic=deterministic, progress=progress,
                           log=lambda line, m=m: log(f"search {m}: {line}"))
    return done


def search_trials(storage: str | Path, name: str) -> list[dict]:
    """The trials of one search as plain dicts: number, state (complete, pruned, fail, running, waiting; "retried"
    for a trial whose driver stopped and that Optuna queued again, which tune.py does not count either), value
    (validation accuracy), params, epochs trained, seconds and population (its wall time and where it trained),
    round (the population's round), test_accuracy and outcome (user attributes that tune.py records)."""
    from tqdm import TqdmWarning

    from mlplab.tune import storage_url

    with warnings.catch_warnings():
        # optuna imports tqdm.auto, which warns inside a Jupyter kernel without ipywidgets (the notebook calls this);
        # optuna draws no progress bar here, so the warning is noise in the report.
        warnings.filterwarnings("ignore", "IProgress not found", TqdmWarning)
        import optuna

    rdb = optuna.storages.RDBStorage(storage_url(storage))
    try:
        trials = rdb.get_all_trials(rdb.get_study_id_from_name(name), deepcopy=False)
    finally:
        rdb.engine.dispose()  # close its connections now, not when garbage is collected (a ResourceWarning)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}  # set by Optuna's retry callback
    out = []
    for t in trials:
        a = t.user_attrs
        population = a.get("population")
        state = "retried" if t.number in retried else t.state.name.lower()
        out.append({"number": t.number, "state": state, "value": t.value, "params": dict(t.params),
                    "epochs": a.get("epochs", 0), "seconds": a.get("seconds"), "population": population,
                    "round": population.rsplit("-", 1)[0] if population else None,
                    "test_accuracy": a.get("test_accuracy"), "outcome": a.get("outcome")})
    return out


@dataclass(frozen=True)
class Experiment:
    name: str  # key used by the notebook
    title: str  # human title
    setting: str  # the setting it varies ("" for none)
    specs: tuple[SweepSpec, ...]  # one or more sweeps (e.g. fewer seeds for the widest widths)
    unit: str = ""

    @property
    def spec(self) -> SweepSpec:
        return self.specs[0]

    def trials(self) -> list[TrainConfig]:
        seen, out = set(), []
        for spec in self.specs:
            for t in spec.trials():
                if t not in seen:
                    seen.add(t)
                    out.append(t)
        return out

    @property
    def precision(self) -> str:
        return "/".join(sorted({t.precision for t in self.trials()}))


DEEP_LAYERS = 4  # hidden layers of the second learning rate x init scale grid


def experiments(quick: bool = False, seeds: int | None = None) -> dict[str, Experiment]:
    """The study's experiments. Full: 5 seeds for the recipes, softmax regression, the learning rate, the learning
    rate x init scale grid at 4 hidden layers and the seed experiments, 3 for the other sweeps and grids, 2 for the
    widest widths, every model trained to convergence within its budget (BUDGET epochs for the sweeps); quick: 2
    seeds, QUICK_BUDGET epochs, patience QUICK_PATIENCE, fewer values."""
    q = quick
    n_seeds = seeds if seeds is not None else (2 if q else 5)
    few = min(n_seeds, 2 if q else 3)  # the grids and the sweeps other than the learning rate's
    budget = QUICK_BUDGET if q else BUDGET
    base = {**BASE, "epochs": budget, **({"patience": QUICK_PATIENCE} if q else {})}

    def spec(name, axes, n, base_over=None, grid=False):
        return SweepSpec(base={**base, **(base_over or {})}, axes=axes, seeds=n, grid=grid, name=name,
                         source=f"study:{name}")

    def one(name, title, setting, values, unit="", base_over=None, n=few):
        axes = {setting: values} if setting else {}
        return Experiment(name, title, setting, (spec(name, axes, n, base_over),), unit)

    def crossed(name, title, axes, n=few, base_over=None):
        return Experiment(name, title, next(iter(axes)), (spec(name, axes, n, base_over, grid=True),))

    def recipe(k, v):
        return spec(f"recipe-{k}", {}, n_seeds, {"hidden": [256], **v, "epochs": QUICK_BUDGET if q else
                                                 v.get("epochs", RECIPE_BUDGET)})

    recipes = tuple(recipe(k, v) for k, v in RECIPES.items())
    parts = (recipe("adam_cosine", RECIPES["adam_cosine"]),) + tuple(recipe(k, v) for k, v in RECIPE_PARTS.items())
    lrs = {"logspace": [-4, 1, 6 if q else 16]}  # 3 values per decade in the full study
    grid_lrs = {"logspace": [-3, 0, 4 if q else 5]}  # 10^-3 to 1 in steps of 3/4 of a decade
    widths = [1, 4, 16, 64, 256, 512] if q else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    wide = [] if q else [1024, 2048]
    exps = [
        Experiment("recipe", "Training recipe for the 784-256-10 MLP", "recipe", recipes),
        Experiment("recipe_parts", "The adam_cosine recipe, one part changed at a time", "recipe", parts),
        one("linear", "Softmax regression", "", None, base_over={"hidden": []}, n=n_seeds),
        Experiment("hidden", "Hidden layer width", "hidden",
                   (spec("hidden", {"hidden": widths}, few),)
                   + ((spec("hidden-wide", {"hidden": wide}, min(n_seeds, 2)),) if wide else ()), " units"),
        one("activation", "Activation function", "activation",
            ["relu", "tanh", "sigmoid", "identity"] if q else
            ["relu", "leaky_relu", "gelu", "tanh", "sigmoid", "identity"]),
        one("init", "Initialization scheme", "init",
            ["zeros", "uniform:0.01", "normal:0.01", "xavier_uniform", "kaiming_uniform", "kaiming_normal"]),
        one("init_scale", "Initialization scale a of uniform(-a, a)", "init_scale",
            ([] if q else TINY_SCALES) + expand_axis("init_scale", {"logspace": [-4, 1, 6 if q else 11]}),
            base_over={"init": "uniform"}),
        one("lr", "Learning rate", "lr", lrs, n=n_seeds),
        one("batch_size", "Batch size", "batch_size", [64, 128, 512, 2048] if q else {"pow2": [5, 12]},
            " examples"),
        one("depth", f"Depth (hidden layers of {BASE_WIDTH})", "depth", [0, 1, 2, 4] if q else [0, 1, 2, 3, 4, 6, 8]),
        crossed("depth_x_lr", "Depth x learning rate (the rate re-tuned per depth)",
                {"lr": grid_lrs, "depth": [1, 2, 4] if q else [1, 2, 4, 8]}),
        crossed("batch_x_lr", "Batch size x learning rate", {"lr": grid_lrs, "batch_size": [128, 2048] if q else
                                                             [32, 128, 2048]}),
        crossed("lr_x_init_scale", "Learning rate x init scale", {"lr": grid_lrs, "init_scale":
                                                                  {"logspace": [-3, 0.5, 4 if q else 6]}},
                base_over={"init": "uniform"}),
        # the same grid where the init scale matters more: 4 hidden layers, through which a small scale's signal
        # shrinks layer by layer (section 10.1). 5 seeds: with 3, whether its best rate moves beyond seed noise
        # changed from one run of the study to the next
        crossed("lr_x_init_scale_deep", f"Learning rate x init scale, {DEEP_LAYERS} hidden layers",
                {"lr": grid_lrs, "init_scale": [0.001, 0.126, 0.631] if q else {"logspace": [-3, 0.5, 6]}},
                n=n_seeds, base_over={"init": "uniform", "hidden": [BASE_WIDTH] * DEEP_LAYERS}),
        crossed("lr_x_hidden", "Learning rate x hidden width", {"lr": grid_lrs, "hidden": [4, 64] if q else
                                                                [4, 16, 64, 256]}),
        Experiment("seeds", "Init seed x data-order seed", "seed",
                   (spec("seeds", {"seed": list(range(3 if q else 5)), "data_seed": list(range(3 if q else 5))},
                         1, grid=True),)),
        # One setting of the search comparison's model, trained like its trials (no early stopping), over seeds: the
        # noise of a single run, against which the searches' best values are compared.
        Experiment("search_noise", "Seed noise of the searches' model (784-32-10)", "",
                   (SweepSpec(base={**SEARCH_BASE, **SEARCH_NOISE,
                                    "epochs": QUICK_SEARCH_EPOCHS if q else SEARCH_EPOCHS},
                              seeds=n_seeds, name="search_noise", source="study:search_noise"),)),
    ]
    return {e.name: e for e in exps}


def all_trials(exps: dict[str, Experiment]) -> list[TrainConfig]:
    """Every trial of every experiment, each once (experiments share e.g. the base config)."""
    seen, out = set(), []
    for e in exps.values():
        for t in e.trials():
            if t not in seen:
                seen.add(t)
                out.append(t)
    return out


def experiment_records(records: list[dict], exp: Experiment) -> list[dict]:
    """The stored records that belong to one experiment (looked up by trial key)."""
    from mlplab.store import trial_key

    by_key = {r["key"]: r for r in records}
    return [by_key[k] for k in (trial_key(t) for t in exp.trials()) if k in by_key]


def search_estimate(s: Search):
    """What one search of section 9 will cost (cost.Estimate): its rounds, each shaped like search_round_configs."""
    from mlplab import cost

    est = cost.population_estimate(search_round_configs(s))  # one round; every round has the same shape
    return cost.Estimate(est.model_epochs * s.rounds, est.flops * s.rounds, est.seconds * s.rounds)


def predicted(exps: dict[str, Experiment], quick: bool = False):
    """The whole study's cost.Estimate as the plan prints it: every experiment's trials once, and the searches."""
    from mlplab import cost

    return sum((search_estimate(s) for s in searches(quick).values()), cost.estimate(all_trials(exps)))


def plan_lines(exps: dict[str, Experiment], quick: bool = False) -> list[str]:
    """The study's plan before training: per experiment its trials, model-epochs at the budget, matmul FLOPs and
    predicted seconds (cost.py: FLOPs / an assumed throughput, plus a time per parameter and step, plus per-step
    overheads); then per
    search of section 9 the trials it starts and the model-epochs it may spend; and the total. An upper bound: early
    stopping ends most models before their budget."""
    from mlplab import cost

    trials = all_trials(exps)
    lines = [f"{'experiment':<18} {'precision':>9} {'trials':>6} {'model-epochs':>12} {'TFLOP':>7} "
             f"{'predicted s':>11}"]
    for e in exps.values():
        est = cost.shares(trials, e.trials())
        lines.append(f"{e.name:<18} {e.precision:>9} {len(e.trials()):>6} {est.model_epochs:>12} "
                     f"{est.flops / 1e12:>7.1f} {est.seconds:>11.0f}")
    total, n_total = cost.estimate(trials), len(trials)
    for s in searches(quick).values():
        est = search_estimate(s)
        total, n_total = total + est, n_total + s.spec["tune"]["trials"]
        lines.append(f"{'search-' + s.method:<18} {s.spec['base']['precision']:>9} {s.spec['tune']['trials']:>6} "
                     f"{est.model_epochs:>12} {est.flops / 1e12:>7.1f} {est.seconds:>11.0f}")
    lines.append(f"{'all (each trial once)':<28} {n_total:>14} {total.model_epochs:>12} {total.flops / 1e12:>7.1f} "
                 f"{total.seconds:>11.0f}")
    lines.append(f"predicted training time at most {total.seconds / 60:.1f} min (every model to its epoch budget; "
                 f"assumed throughput fp32 {cost.ASSUMED_FLOPS['fp32'] / 1e9:.0f}, bf16 "
                 f"{cost.ASSUMED_FLOPS['bf16'] / 1e9:.0f} GFLOP/s, plus {cost.PARAM_STEP_SECONDS * 1e9:.0f} ns per "
                 "parameter and step and per-step overheads; see mlplab/cost.py)"
                 + ("" if quick else f", expected about {total.seconds * cost.TIME_SHARE / 60:.1f} min (the "
                    f"latest measured full study trained in {cost.TIME_SHARE:.0%} of this bound)"))
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Building and executing the notebook

TEMPLATE = "study_notebook.py"


def template_cells(params: dict) -> list:
    """The template (a percent-format script in this package) as notebook cells; the cell tagged `parameters`
    gets `params` instead of its defaults."""
    import nbformat.v4 as nbf

    text = importlib.resources.files("mlplab").joinpath(TEMPLATE).read_text()
    cells = []
    for chunk in text.split("\n# %%")[1:]:
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if header.strip().startswith("[markdown]"):
            md = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbf.new_markdown_cell(md))
            continue
        tags = [t.strip() for t in header.partition("tags=")[2].strip(" []").replace('"', "").split(",") if t.strip()]
        if "parameters" in tags:
            body = parameters_source(params)
        cell = nbf.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        if "hide-input" in tags:
            cell.metadata["jupyter"] = {"source_hidden": True}
        cells.append(cell)
    return cells


def parameters_source(params: dict) -> str:
    """The source of the notebook's `parameters` cell: one `NAME = value` line per parameter."""
    return "\n".join(f"{k} = {v!r}" for k, v in params.items())


def build_notebook(params: dict):
    import nbformat.v4 as nbf

    nb = nbf.new_notebook(cells=template_cells(params))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["title"] = "mlplab: a multilayer perceptron on MNIST, a hyperparameter case study"  # the HTML <title>
    return nb


def execute(nb, cwd: Path, timeout: int = 900):
    """Run every cell in a fresh kernel of this Python (errors stop the run and are raised)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    with _private_kernelspec() as (kernel_dir, name):
        km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_dir]))
        client = NotebookClient(nb, km=km, timeout=timeout, kernel_name=name,
                                resources={"metadata": {"path": str(cwd)}})
        # The kernel's own log (e.g. its note on running over loopback TCP) is noise for a report: cell errors and
        # warnings are captured in the notebook's outputs instead.
        try:
            client.execute(stderr=subprocess.DEVNULL)
        except Exception:
            # On Ctrl-C (SIGINT) or SIGTERM, nbclient's own handler shuts the kernel down and the cell then fails
            # with "Kernel died": report it as the interruption it was (nbclient keeps that handler's future here).
            if getattr(client, "_async_cleanup_kernel_future", None) is not None:
                raise KeyboardInterrupt from None
            raise
        finally:
            # jupyter_client leaves a few zmq sockets of the finished kernel to the garbage collector, which then
            # warns (ResourceWarning) wherever it happens to run: collect them here, where they are known to be dead.
            del client, km
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
    return nb


@contextlib.contextmanager
def _private_kernelspec():
    """A kernelspec that runs this very interpreter (so the notebook sees the same mlplab and torch), in a fresh
    private folder (mkdtemp: mode 0700, a new name, so nothing another user planted is read or followed), found
    by passing the folder to the kernel manager (the process environment, JUPYTER_PATH included, is not changed);
    removed afterwards. Yields (kernels folder, kernel name)."""
    root = tempfile.mkdtemp(prefix="mlplab-kernel-")
    try:
        name = "mlplab-python3"
        spec_dir = Path(root) / name
        spec_dir.mkdir(mode=0o700)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "mlplab (Python 3)", "language": "python", "metadata": {"debugger": False}}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        yield root, name
    finally:
        shutil.rmtree(root, ignore_errors=True)


def to_html(nb) -> str:
    """Self-contained HTML: images inline, observation cells without their code, no external scripts."""
    import re

    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.TagRemovePreprocessor.remove_input_tags = ("hide-input",)
    c.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=c, template_name="classic")
    html, _ = exporter.from_notebook_node(nb)
    # Drop anything fetched from the network (require.js, MathJax): the report needs neither.
    html = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', "", html)
    html = re.sub(r'<link[^>]*href="https?://[^"]*"[^>]*>', "", html)
    html = re.sub(r"<script[^>]*>\s*(?:(?!</script>).)*?MathJax(?:(?!</script>).)*</script>", "", html, flags=re.S)
    # ... and inline scripts that import modules from the network (nbconvert's Mermaid diagram loader).
    html = re.sub(r"<script[^>]*>(?:(?!</script>).)*?\bfrom\s*[\"']https?://(?:(?!</script>).)*</script>", "", html,
                  flags=re.S)
    return html


def kept_weights(exps: dict[str, Experiment]) -> frozenset[str]:
    """Keys of the trials whose trained weights the store keeps, for the notebook's looks inside the networks: every
    recipe's models (the chosen recipe's mistakes, section 10), the learning-rate sweep's seed-0 models (dead
    units, section 6), the width sweep's seed-0 models of 1 and 2 units (what one or two numbers can separate,
    section 5.1) and softmax regression's seed 0 (whose mistakes section 10 sets beside the recipe's). Any other
    analysis of weights would train its models again."""
    from mlplab.store import trial_key

    looked_into = (exps["recipe"].trials() + [t for t in exps["lr"].trials() if t.seed == 0]
                   + narrow_trials(exps) + [linear_trial(exps)])
    return frozenset(trial_key(t) for t in looked_into)


def linear_trial(exps: dict[str, Experiment]):
    """Softmax regression's seed-0 model (the linear model whose mistakes section 10 compares)."""
    return min(exps["linear"].trials(), key=lambda t: t.seed)


def narrow_trials(exps: dict[str, Experiment]) -> list:
    """The width sweep's seed-0 models of 1 and 2 hidden units, narrowest first (2 units only in the full study)."""
    return sorted((t for t in exps["hidden"].trials() if t.seed == 0 and tuple(t.hidden) in ((1,), (2,))),
                  key=lambda t: t.hidden)


def run_study(out: str | Path = "study", store: str | Path | None = None, quick: bool = False,
              device: str = "auto", seeds: int | None = None, progress: bool | None = None, log=print,
              backend: str = "local", address: str | None = None, deterministic: bool = False,
              threads: int | None = None) -> dict:
    """Train what is missing (the experiments into `store`, then the three searches into OUT's Optuna storages),
    then write out/study.ipynb, out/study.html and out/figures/. Returns timings, `missing`: the keys of trials
    that are not finished (failed), listed in the notebook and on stderr, and `searches`: per method its trials,
    those run now and their model-epochs."""
    from mlplab.device import resolve_device
    from mlplab.runner import run_sweep

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with out_lock(out):
        store = Path(store) if store is not None else out / "study.sqlite"
        dev = resolve_device(device)
        exps = experiments(quick, seeds)
        trials = all_trials(exps)
        for line in plan_lines(exps, quick):  # model-epochs, FLOPs and predicted time, before any training
            log(line)
        if store.exists():  # a rerun: say what the plan's prediction leaves out
            line = rerun_line(trials, {m["key"] for m in missing_trials(store, trials)})
            if line:
                log(line)
        t0 = time.perf_counter()
        report = run_sweep(trials, store, device=dev, progress=progress, name="study-quick" if quick else "study",
                           log=log, backend=backend, address=address, deterministic=deterministic, threads=threads,
                           keep_weights=kept_weights(exps))
        t_searches = time.perf_counter()
        searched = run_searches(out, quick, dev, threads=threads, backend=backend, address=address,
                                deterministic=deterministic, log=log, progress=progress)
        log("searches: " + ", ".join(f"{m} {s.trials} trials ({s.ran} run now, {s.model_epochs} model-epochs)"
                                     for m, s in searched.items())
            + f", {time.perf_counter() - t_searches:.1f} s")
        t_train = time.perf_counter() - t0
        missing = missing_trials(store, trials)
        if missing:
            print(f"mlplab study: WARNING: {len(missing)} of {len(trials)} trials are missing (failed or not run); "
                  f"the report lists them and leaves them out: {', '.join(m['label'] for m in missing[:10])}"
                  f"{' ...' if len(missing) > 10 else ''} (see `mlplab results {store}`; rerun to retry them)",
                  file=sys.stderr)
        log(f"training: {report.trained} trained, {report.skipped} reused, {t_train:.1f} s; writing the report")
        t1 = time.perf_counter()
        write_report(out, store, quick, seeds, dev, missing)
        t_report = time.perf_counter() - t1
        log(f"wrote {out / 'study.ipynb'}, {out / 'study.html'} and {out / 'figures'} ({t_report:.1f} s)")
    return {"trials": len(trials), "trained": report.trained, "reused": report.skipped,
            "train_seconds": t_train, "report_seconds": t_report, "store": str(store),
            "missing": [m["key"] for m in missing],
            "searches": {m: {"trials": s.trials, "ran": s.ran, "model_epochs": s.model_epochs}
                         for m, s in searched.items()}}


def rerun_line(trials: list[TrainConfig], todo: set[str]) -> str | None:
    """What a rerun says after the plan (which predicts the whole study): how many trials it reuses and the predicted
    time of the rest (todo: the keys of the trials the store does not hold as finished). None when nothing is
    stored yet."""
    from mlplab import cost
    from mlplab.store import trial_key

    stored = len(trials) - len(todo)
    if not stored:
        return None
    said = f"{stored} of {len(trials)} trials are stored already and are reused: "
    if not todo:
        return said + "none of them is trained again (only searches not yet finished run)"
    rest = cost.estimate([t for t in trials if trial_key(t) in todo])
    return said + (f"the prediction above is for the whole study; the other {len(todo)} take at most "
                   f"{rest.seconds / 60:.1f} min of it (plus any search not yet finished)")


def missing_trials(store: Path, trials: list[TrainConfig]) -> list[dict]:
    """The trials of `trials` that the store does not hold as finished: key, status and a short label."""
    from mlplab.store import FINISHED, Store, trial_key

    with Store(store, create=False) as s:
        status = s.status(trials)
    out = []
    for t in trials:
        st = status[trial_key(t)]
        if st not in FINISHED:
            label = (f"hidden {list(t.hidden)} {t.activation} {t.init}:{t.init_scale:g} lr {t.lr:g} "
                     f"batch {t.batch_size} seed {t.seed}" + (f"/{t.data_seed}" if t.data_seed is not None else ""))
            out.append({"key": trial_key(t), "status": st, "label": label})
    return out


def missing_cell(missing: list[dict], total: int):
    """A markdown cell that lists the missing trials (the report's first words after its title)."""
    import nbformat.v4 as nbf

    rows = "\n".join(f"| `{m['key']}` | {m['status']} | {m['label']} |" for m in missing)
    return nbf.new_markdown_cell(
        f"**Warning: this report is incomplete.** {len(missing)} of {total} trials are missing from the store "
        "(failed or not run); every figure and number below leaves them out. Rerun `mlplab study` to retry them.\n\n"
        f"| key | status | trial |\n|---|---|---|\n{rows}")


def write_report(out: Path, store: Path, quick: bool, seeds: int | None, dev, missing: list[dict]) -> None:
    """Execute the notebook and write study.ipynb, study.html and figures/ (each file atomically; the figures
    are drawn in a private folder and moved into figures/ once the notebook has run)."""
    import nbformat

    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    drawing = Path(tempfile.mkdtemp(prefix=".figures-", dir=out))
    try:
        # Paths relative to the notebook's folder (the kernel runs there): no machine paths in the report.
        params = {"STORE": os.path.relpath(store.resolve(), out.resolve()), "QUICK": quick, "SEEDS": seeds,
                  "DEVICE": str(dev), "FIGURES": os.path.relpath(drawing.resolve(), out.resolve())}
        nb = build_notebook(params)
        if missing:
            n_trials = len(all_trials(experiments(quick, seeds)))
            nb.cells.insert(1, missing_cell(missing, n_trials))
        nb = execute(nb, cwd=out)
        for cell in nb.cells:  # the hand-in names where its figures end up, not the private folder they were drawn in
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = parameters_source({**params, "FIGURES": "figures"})
        for f in sorted(drawing.iterdir()):
            os.chmod(f, 0o666 & ~current_umask())
            os.replace(f, figures / f.name)
        for name, text in (("study.ipynb", nbformat.writes(nb)), ("study.html", to_html(nb))):
            with atomic_write(out / name, "w") as f:
                f.write(text)
    finally:
        shutil.rmtree(drawing, ignore_errors=True)


class StudyBusy(ValueError):
    """Another study holds the output folder."""


@contextlib.contextmanager
def out_lock(out: Path):
    """Hold OUT/.mlplab-study.lock while a study writes into OUT: a second study on the same folder is refused at
    once (a ValueError) instead of the two overwriting each other's notebook and figures."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    fd = os.open(out / ".mlplab-study.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyBusy(f"another mlplab study is writing to {out} right now; wait for it to finish or give "
                             "another --out") from None
        yield
    finally:
        os.close(fd)
