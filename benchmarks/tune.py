"""`mlplab tune` measured three ways: against Optuna's own one-model-per-trial way, successive halving against the full
grid, and population-based training against the best fixed member.

    python benchmarks/tune.py                                  # all three on MNIST (50,000 / 10,000 split)
    python benchmarks/tune.py --only optuna --repeats 3 --json tune.json    # 3 sampler seeds per side
    python benchmarks/tune.py --only optuna --space fixed --repeats 5       # the fixed-shape space only
    python benchmarks/tune.py --only optuna --space fixed --repeats 5 --refit 5   # and each pick retrained 5 times
    python benchmarks/tune.py --only optuna --space fixed --repeats 5 --per-round 8 --startup-trials 5   # Optuna's
                                                               # pruning rule (5 completed first), rounds of 8
    python benchmarks/tune.py --only optuna --space fixed --repeats 5 --refill   # [tune] refill: one population of
                                                               # 16 trials, a new trial as soon as one ends
    python benchmarks/tune.py --only optuna --space fixed --repeats 5 --refill --precision bf16   # mlplab in bf16
                                                               # autocast (--optuna-precision: the torch.nn side's)
    python benchmarks/tune.py --only halving --halving-seeds 3             # 3 models per grid point
    python benchmarks/tune.py --quick                          # tiny settings on 2,000 images (a smoke run)

1. optuna: the same search space, sampler (TPE; seed 0, or seeds 0..N-1 with --repeats N), pruner (median) and number
   of trials (64 of 3 epochs, batch 128) run by `mlplab tune` (16 trials per round, each round one population per
   shape) and by Optuna's PyTorch example way (`study.optimize` with one torch.nn model, torch.optim.SGD and a
   DataLoader per trial, reporting the validation accuracy each epoch and raising TrialPruned). Both store into an
   SQLite Optuna storage of their own. Space "fixed": 784-64-10 ReLU, SGD with lr (log 1e-3..1), momentum (0..0.99),
   weight decay (log 1e-6..1e-2). Space "width": the same plus the width (4..128, log), so every trial has its own
   shape. Each model uses its library's default init (mlplab: kaiming_uniform; torch.nn.Linear: its own). Reported:
   wall seconds of the whole search (data loading excluded), best validation accuracy, that trial's test accuracy,
   model-epochs trained. Both sides compute in float32 unless --precision (mlplab's) or --optuna-precision (the torch.nn
   side's) says bf16: each side may take the precision that is fastest for it.
2. halving: a grid (lr 9 values x momentum 3 = 27 points, 784-64-10, 9 epochs) trained in full (sampler "grid",
   pruner none) and with synchronous successive halving over the same 27 points in one round (eta 3: rungs after
   epochs 1 and 3), with 1 model per point (or S with --halving-seeds S; a point's value is their mean). Reported:
   best validation accuracy of each, model-epochs and wall seconds, and their ratios.
3. pbt: 16 members of 784-512-10 (SGD; lr log 1e-3..0.5, momentum 0..0.95 drawn at random), 20 epochs, 3 seeds per
   member (a member's value is the mean validation accuracy of its 3 models), trained once with PBT (every 2 epochs
   the bottom quarter copies the top quarter and perturbs lr and momentum by 0.8 or 1.2) and once without (the same
   16 draws, fixed): equal compute. Reported: the best member's validation accuracy (mean ± std over its seeds) and
   test accuracy, with and without PBT, whichever way it falls.

No result is claimed here: run it on a quiet machine (timings on a shared machine mean nothing) and record the output
in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch

import mlplab
from mlplab import TrainConfig, train_population, tune
from mlplab.data import Splits, load_mnist, make_splits

FIXED = {"lr": {"loguniform": [1e-3, 1.0]}, "momentum": {"uniform": [0.0, 0.99]},
         "weight_decay": {"loguniform": [1e-6, 1e-2]}}
WIDTH = {**FIXED, "width": {"int": [4, 128], "log": True}}
FULL = {"trials": 64, "epochs": 3, "per_round": 16, "startup_trials": 0, "refill": False, "precision": "fp32",
        "optuna_precision": "fp32", "width": 64,
        "batch_size": 128,
        "grid_lr": 9, "grid_momentum": [0.0, 0.5, 0.9], "grid_epochs": 9,
        "pbt_members": 16, "pbt_width": 512, "pbt_epochs": 20, "pbt_seeds": 3, "pbt_interval": 2}
QUICK = {"trials": 6, "epochs": 2, "per_round": 6, "startup_trials": 0, "refill": False, "precision": "fp32",
         "optuna_precision": "fp32", "width": 16,
         "batch_size": 200,
         "grid_lr": 3, "grid_momentum": [0.0, 0.9], "grid_epochs": 3,
         "pbt_members": 4, "pbt_width": 16, "pbt_epochs": 2, "pbt_seeds": 2, "pbt_interval": 1}


def small_splits() -> Splits:
    """2,000 training, 500 validation and 500 test images of MNIST (for --quick)."""
    m = load_mnist()
    return Splits(name="mnist-small", train_x=m.train_images[:2000], train_y=m.train_labels[:2000],
                  val_x=m.train_images[-500:], val_y=m.train_labels[-500:], test_x=m.test_images[:500],
                  test_y=m.test_labels[:500])


# -- 1. mlplab tune against Optuna's one-model-per-trial way --------------------------------------------------------


def run_mlplab(search: dict, s: dict, splits, url: str, name: str, seed: int = 0) -> dict:
    spec = {"base": {"hidden": [s["width"]], "batch_size": s["batch_size"], "init": "kaiming_uniform",
                     "precision": s["precision"]},
            "search": search,
            "tune": {"trials": s["trials"], "per_round": s["per_round"], "sampler": "tpe", "pruner": "median",
                     "max_epochs": s["epochs"], "startup_trials": s["startup_trials"], "name": name, "seed": seed,
                     "refill": s["refill"]}}
    t = time.perf_counter()
    summary = tune.run(spec, storage=url, splits=splits, device="cpu", progress=False)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "best_val_accuracy": summary.best_value, "best_params": summary.best_params,
            "best_test_accuracy": summary.best_test_accuracy, "model_epochs": summary.model_epochs,
            "complete": summary.complete, "pruned": summary.pruned, "failed": summary.failed}


def run_optuna_nn(search: dict, s: dict, splits, url: str, name: str, seed: int = 0) -> dict:
    """Optuna's PyTorch example, adapted to this space: one torch.nn model per trial inside study.optimize."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    def tensors(x, y):
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0), torch.from_numpy(np.asarray(y))

    train_x, train_y = tensors(splits.train_x, splits.train_y)
    val, test = tensors(splits.val_x, splits.val_y), tensors(splits.test_x, splits.test_y)
    model_epochs = [0]

    # --optuna-precision bf16: autocast around the forward passes (the context is entered anew for each pass)
    low = torch.autocast("cpu", dtype=torch.bfloat16, enabled=s["optuna_precision"] == "bf16")

    def accuracy(model, xy):
        with torch.no_grad(), low:
            return (model(xy[0]).argmax(1) == xy[1]).float().mean().item()

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *search["lr"]["loguniform"], log=True)
        momentum = trial.suggest_float("momentum", *search["momentum"]["uniform"])
        wd = trial.suggest_float("weight_decay", *search["weight_decay"]["loguniform"], log=True)
        width = trial.suggest_int("width", *search["width"]["int"], log=True) if "width" in search else s["width"]
        g = torch.Generator().manual_seed(trial.number)
        model = nn.Sequential(nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
        loader = DataLoader(TensorDataset(train_x, train_y), batch_size=s["batch_size"], shuffle=True, generator=g)
        value = 0.0
        for epoch in range(1, s["epochs"] + 1):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                with low:
                    loss = nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
            model.eval()
            model_epochs[0] += 1
            value = accuracy(model, val)
            if not np.isfinite(value):
                raise optuna.TrialPruned()
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("test_accuracy", accuracy(model, test))
        return value

    study = optuna.create_study(storage=url, study_name=name, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner())
    t = time.perf_counter()
    study.optimize(objective, n_trials=s["trials"])
    seconds = time.perf_counter() - t
    states = [tr.state for tr in study.trials]
    best = study.best_trial
    return {"seconds": seconds, "best_val_accuracy": best.value, "best_params": best.params,
            "best_test_accuracy": best.user_attrs.get("test_accuracy"), "model_epochs": model_epochs[0],
            "complete": states.count(optuna.trial.TrialState.COMPLETE),
            "pruned": states.count(optuna.trial.TrialState.PRUNED),
            "failed": states.count(optuna.trial.TrialState.FAIL)}


def refit(params: dict, s: dict, splits, seeds: int) -> dict:
    """The quality of a chosen setting apart from the luck of its one model: `seeds` fresh models of it (seeds 1000
    on, each its own data order), trained by mlplab for the search's epochs whichever side chose it. A search's best
    value is the maximum of many noisy ones (one 3-epoch model's validation accuracy moves by 0.2-0.4 points from
    seed to seed), so it rewards the side whose trials draw independent noise; this asks which setting is better."""
    hp = {k: v for k, v in params.items() if k != "width"}
    configs = [TrainConfig(hidden=(int(params.get("width", s["width"])),), batch_size=s["batch_size"],
                           epochs=s["epochs"], init="kaiming_uniform", seed=1000 + i, **hp) for i in range(seeds)]
    results = train_population(configs, splits=splits, progress=False, device="cpu")
    val, test = [r.val_accuracy for r in results], [r.test_accuracy for r in results]
    return {"seeds": seeds, "val_mean": statistics.mean(val), "val_std": statistics.stdev(val) if seeds > 1 else 0.0,
            "test_mean": statistics.mean(test), "val": val, "test": test}


def compare_optuna(s: dict, splits, folder: Path, repeats: int = 1, spaces: tuple = ("fixed", "width"),
                   refit_seeds: int = 0) -> dict:
    """Each space searched `repeats` times on each side, with the sampler seeds 0..repeats-1 (the best value of one
    search depends on where its sampler happened to look, so one run of each side says little about accuracy).
    With `refit_seeds`, each side's chosen setting is also retrained with that many fresh seeds (`refit`)."""
    out = {}
    for space in spaces:
        search, runs = {"fixed": FIXED, "width": WIDTH}[space], []
        for seed in range(repeats):
            mine = run_mlplab(search, s, splits, f"sqlite:///{folder / f'mlplab-{space}-{seed}.sqlite3'}",
                              f"mlplab-{space}", seed)
            theirs = run_optuna_nn(search, s, splits, f"sqlite:///{folder / f'optuna-{space}-{seed}.sqlite3'}",
                                   f"optuna-{space}", seed)
            if refit_seeds:
                for side in (mine, theirs):
                    side["refit"] = refit(side["best_params"], s, splits, refit_seeds)
            runs.append({"seed": seed, "mlplab": mine, "optuna_nn": theirs,
                         "speedup": theirs["seconds"] / mine["seconds"]})
        out[space] = {"runs": runs, "speedup": statistics.median(r["speedup"] for r in runs),
                      **{f"median_{side}_{k}": statistics.median(r[side][k] for r in runs)
                         for side in ("mlplab", "optuna_nn") for k in ("seconds", "best_val_accuracy",
                                                                       "model_epochs")}}
        if refit_seeds:
            out[space].update({f"median_{side}_refit_val": statistics.median(r[side]["refit"]["val_mean"]
                                                                             for r in runs)
                               for side in ("mlplab", "optuna_nn")})
    return out


# -- 2. successive halving against the full grid ----------------------------------------------------------------------


def compare_halving(s: dict, splits, folder: Path, seeds: int = 1) -> dict:
    """`seeds` models per grid point (a trial's value is their mean validation accuracy): with one, the grid's best
    is the luckiest of 27 single models, and a gap of 0.2 points is within one model's seed noise."""
    lrs = [float(f"{v:.4g}") for v in np.geomspace(1e-3, 1.0, s["grid_lr"])]
    search = {"lr": {"choice": lrs}, "momentum": {"choice": s["grid_momentum"]}}
    n = len(lrs) * len(s["grid_momentum"])
    out = {}
    for how, pruner in (("grid", "none"), ("halving", "halving")):
        spec = {"base": {"hidden": [s["width"]], "batch_size": s["batch_size"], "init": "kaiming_uniform"},
                "search": search,
                "tune": {"trials": n, "per_round": n, "sampler": "grid", "pruner": pruner,
                         "max_epochs": s["grid_epochs"], "eta": 3, "seeds": seeds, "name": how}}
        t = time.perf_counter()
        summary = tune.run(spec, storage=f"sqlite:///{folder / f'{how}.sqlite3'}", splits=splits, device="cpu",
                           progress=False)
        out[how] = {"seconds": time.perf_counter() - t, "best_val_accuracy": summary.best_value,
                    "best_params": summary.best_params, "best_test_accuracy": summary.best_test_accuracy,
                    "model_epochs": summary.model_epochs, "trials": n, "seeds": seeds}
    g, h = out["grid"], out["halving"]
    out["grid_best_in_halving"] = _fate(folder / "halving.sqlite3", "halving", g["best_params"])
    out["gap_points"] = 100 * (g["best_val_accuracy"] - h["best_val_accuracy"])
    out["model_epochs_ratio"] = h["model_epochs"] / g["model_epochs"]
    out["seconds_ratio"] = h["seconds"] / g["seconds"]
    return out


def _fate(path: Path, name: str, params: dict) -> dict:
    """What successive halving did with a setting: the epochs it trained and, at its last epoch, its rank among the
    trials that reached that epoch (1 = best; equal values ranked by trial number, as the rungs rank them)."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{path}")
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    mine = next(t for t in trials if t.params == params)
    last = max(mine.intermediate_values)
    peers = sorted((-t.intermediate_values[last], t.number) for t in trials if last in t.intermediate_values)
    return {"epochs": last, "state": mine.state.name.lower(),
            "rank": peers.index((-mine.intermediate_values[last], mine.number)) + 1, "of": len(peers),
            "tied": sum(v == -mine.intermediate_values[last] for v, _ in peers) - 1,
            "value": mine.intermediate_values[last]}


# -- 3. PBT against the best fixed member -----------------------------------------------------------------------------


def compare_pbt(s: dict, splits, folder: Path) -> dict:
    search = {"lr": {"loguniform": [1e-3, 0.5]}, "momentum": {"uniform": [0.0, 0.95]}}
    out = {}
    for how, scheduler in (("fixed", "none"), ("pbt", "pbt")):
        spec = {"base": {"hidden": [s["pbt_width"]], "batch_size": s["batch_size"], "init": "kaiming_uniform"},
                "search": search,
                "tune": {"trials": s["pbt_members"], "per_round": s["pbt_members"], "sampler": "random",
                         "pruner": "none", "scheduler": scheduler, "max_epochs": s["pbt_epochs"],
                         "seeds": s["pbt_seeds"], "pbt_interval": s["pbt_interval"], "name": how}}
        url = f"sqlite:///{folder / f'pbt-{how}.sqlite3'}"
        t = time.perf_counter()
        summary = tune.run(spec, storage=url, splits=splits, device="cpu", progress=False)
        seconds = time.perf_counter() - t
        best = optuna.load_study(study_name=how, storage=url).best_trial
        per_seed = best.user_attrs["history"][-1].get("per_seed", {}).get("val_accuracy", [best.value])
        out[how] = {"seconds": seconds, "best_val_accuracy": best.value,
                    "best_val_std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
                    "best_test_accuracy": best.user_attrs["test_accuracy"], "best_params": best.params,
                    "model_epochs": summary.model_epochs, "lineage": best.user_attrs.get("lineage")}
    out["difference_points"] = 100 * (out["pbt"]["best_val_accuracy"] - out["fixed"]["best_val_accuracy"])
    return out


# -- output -----------------------------------------------------------------------------------------------------------


def report(results: dict) -> None:
    def row(name, r):
        return (f"  {name:<12} {r['seconds']:9.1f} s  best val {100 * r['best_val_accuracy']:6.2f}%  test "
                f"{100 * (r['best_test_accuracy'] or 0):6.2f}%  {r['model_epochs']:6d} model-epochs")

    if "optuna" in results:
        for space, r in results["optuna"].items():
            st = results["settings"]
            how = (f"refill, {st['per_round']} trials at a time, Optuna's median rule" if st.get("refill") else
                   f"rounds of {st['per_round']}, " + (f"no pruning before {st['startup_trials']} trials completed"
                                                       if st["startup_trials"] else
                                                       "a round's trials each other's peers from the first round"))
            print(f"mlplab tune vs Optuna + torch.nn, space {space!r} (mlplab: {how}; "
                  f"precision: mlplab {st.get('precision', 'fp32')}, torch.nn {st.get('optuna_precision', 'fp32')}):")
            for run in r["runs"]:
                print(f" sampler seed {run['seed']}:")
                print(row("mlplab tune", run["mlplab"]))
                print(row("optuna + nn", run["optuna_nn"]))
                sp = run["speedup"]
                print(f"  mlplab tune took 1/{sp:.2f} of the wall time" if sp >= 1 else
                      f"  mlplab tune took {1 / sp:.2f}x the wall time (slower)")
                if "refit" in run["mlplab"]:
                    a, b = run["mlplab"]["refit"], run["optuna_nn"]["refit"]
                    print(f"  chosen settings retrained ({a['seeds']} fresh seeds each, by mlplab): mlplab's val "
                          f"{100 * a['val_mean']:.2f}% ± {100 * a['val_std']:.2f} (test {100 * a['test_mean']:.2f}%), "
                          f"optuna's val {100 * b['val_mean']:.2f}% ± {100 * b['val_std']:.2f} (test "
                          f"{100 * b['test_mean']:.2f}%)")
            if len(r["runs"]) > 1:
                print(f" median of {len(r['runs'])}: mlplab tune {r['median_mlplab_seconds']:.1f} s, best val "
                      f"{100 * r['median_mlplab_best_val_accuracy']:.2f}%, {r['median_mlplab_model_epochs']:.0f} "
                      f"model-epochs; optuna + nn {r['median_optuna_nn_seconds']:.1f} s, best val "
                      f"{100 * r['median_optuna_nn_best_val_accuracy']:.2f}%, "
                      f"{r['median_optuna_nn_model_epochs']:.0f} model-epochs; median of the speedups "
                      f"{r['speedup']:.2f}x")
                if "median_mlplab_refit_val" in r:
                    print(f" median of the retrained chosen settings' mean val: mlplab "
                          f"{100 * r['median_mlplab_refit_val']:.2f}%, optuna + nn "
                          f"{100 * r['median_optuna_nn_refit_val']:.2f}%")
    if "halving" in results:
        r = results["halving"]
        print(f"successive halving vs the full grid ({r['grid']['trials']} points, {r['grid']['seeds']} seed(s) "
              "each):")
        print(row("grid", r["grid"]))
        print(row("halving", r["halving"]))
        print(f"  grid's best - halving's best: {r['gap_points']:+.2f} points; halving used "
              f"{r['model_epochs_ratio']:.2f} of the grid's model-epochs and {r['seconds_ratio']:.2f} of its wall time")
        f = r["grid_best_in_halving"]
        print(f"  the grid's best setting in halving: {f['state']} after epoch {f['epochs']}, ranked {f['rank']} of "
              f"{f['of']} there (val {100 * f['value']:.2f}%" + (f", tied with {f['tied']} other(s))" if f["tied"]
                                                                  else ")"))
    if "pbt" in results:
        r = results["pbt"]
        print("PBT vs the best fixed member (equal compute):")
        for how in ("fixed", "pbt"):
            x = r[how]
            print(f"  {how:<6} best val {100 * x['best_val_accuracy']:6.2f}% ± {100 * x['best_val_std']:.2f} (over "
                  f"its seeds), test {100 * x['best_test_accuracy']:6.2f}%, {x['seconds']:.1f} s")
        print(f"  PBT - fixed: {r['difference_points']:+.2f} points")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings on 2,000 images: a smoke run (seconds)")
    p.add_argument("--only", choices=("optuna", "halving", "pbt"), action="append",
                   help="run only this comparison (repeatable)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--space", choices=("fixed", "width"), action="append",
                   help="optuna: only this search space (repeatable; default both)")
    p.add_argument("--halving-seeds", type=int, default=1, metavar="S",
                   help="halving: S models per grid point, a point's value their mean (default 1)")
    p.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="optuna: search each space N times per side, with sampler seeds 0..N-1 (default 1)")
    p.add_argument("--refit", type=int, default=0, metavar="K",
                   help="optuna: retrain each side's chosen setting with K fresh seeds, by mlplab (default 0: off)")
    p.add_argument("--per-round", type=int, metavar="N", help="optuna: mlplab's trials per round (default 16)")
    p.add_argument("--startup-trials", type=int, default=0, metavar="K",
                   help="optuna: mlplab's median pruner prunes nothing before K trials completed, as Optuna's own "
                        "loop with K = 5 (default 0: a round's trials are each other's peers from the first round)")
    p.add_argument("--refill", action="store_true",
                   help="optuna: mlplab's [tune] refill (one population of --per-round trials, a new trial as soon "
                        "as one ends; the fixed space only)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="optuna: mlplab's [base] precision (default fp32)")
    p.add_argument("--optuna-precision", choices=("fp32", "bf16"), default="fp32",
                   help="optuna: the torch.nn side's, bf16 being torch.autocast to bfloat16 around its forward passes "
                        "(default fp32)")
    p.add_argument("--out", help="folder for the Optuna storages (default: a temporary folder)")
    p.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.halving_seeds < 1:
        p.error("--repeats and --halving-seeds must be at least 1")
    if args.refit == 1 or args.refit < 0:
        p.error("--refit needs at least 2 seeds (their spread is reported), or 0 for none")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per trial
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.refill and "width" in (args.space or ("fixed", "width")):
        p.error("--refill keeps every trial in one population: add --space fixed (the width space varies the shape)")
    s = {**(QUICK if args.quick else FULL), "startup_trials": args.startup_trials, "refill": args.refill,
         "precision": args.precision, "optuna_precision": args.optuna_precision}
    if args.per_round is not None:
        s["per_round"] = args.per_round
    splits = small_splits() if args.quick else make_splits(load_mnist())
    which = args.only or ["optuna", "halving", "pbt"]
    results = {"settings": s, "quick": args.quick, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "optuna_version": optuna.__version__, "mlplab": mlplab.__version__}
    steps = {"optuna": functools.partial(compare_optuna, repeats=args.repeats, refit_seeds=args.refit,
                                         spaces=tuple(dict.fromkeys(args.space or ("fixed", "width")))),
             "halving": functools.partial(compare_halving, seeds=args.halving_seeds), "pbt": compare_pbt}
    with tempfile.TemporaryDirectory(prefix="mlplab-tune-bench-") as tmp:
        folder = Path(args.out) if args.out else Path(tmp)
        for name in which:
            (folder / name).mkdir(parents=True, exist_ok=True)
            results[name] = steps[name](s, splits, folder / name)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
