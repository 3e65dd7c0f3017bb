"""The `mlplab` command.

    mlplab train                                   # the course's MLP: 784-256-10, ReLU, uniform(-0.01, 0.01), SGD 0.1
    mlplab train --hidden 256 --activation relu --init uniform:0.01 --optimizer sgd --lr 0.1 --epochs 10 \\
                 --batch-size 128 --seed 0 --json
    mlplab train --hidden none --epochs 5          # softmax regression
    mlplab train --hidden 512,512 --init kaiming_normal --optimizer adam --lr 1e-3 --save mlp.pt

Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mlplab import __version__

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mlplab", description="Multilayer perceptrons from raw tensors on MNIST.")
    p.add_argument("--version", action="version", version=f"mlplab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one MLP (or softmax regression) and report its accuracy",
                       description="Train one model from scratch on MNIST (or an IDX dataset folder).")
    add_train_arguments(t)
    t.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (the best available; default)")
    t.add_argument("--json", action="store_true", help="print one JSON object with the metrics and config on stdout")
    t.add_argument("--save", metavar="PATH", help="write the trained parameters and config here (torch.save)")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch table")
    add_threads_argument(t)
    add_deterministic_argument(t)
    t.set_defaults(func=cmd_train)

    w = sub.add_parser("sweep", help="train every trial of a sweep spec (TOML) into a resumable result store",
                       description="Train a sweep: trials of the same shape train together as populations. "
                       "Finished trials in --store are skipped, so rerunning resumes.")
    w.add_argument("spec", help="the sweep spec, a TOML file with [base], [axes] and [sweep]")
    w.add_argument("--store", required=True, help="the SQLite result store (created if missing), e.g. runs/lr.sqlite")
    w.add_argument("--sequential", action="store_true", help="train the trials one at a time (for comparison)")
    w.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    w.add_argument("--memory-budget", type=float, metavar="GB",
                   help="memory for one population (default: half of the free memory)")
    w.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    add_threads_argument(w)
    add_backend_arguments(w)
    add_deterministic_argument(w)
    w.set_defaults(func=cmd_sweep)

    s = sub.add_parser("study", help="run the hyperparameter case study and write an executed notebook report",
                       description="Train the case study's experiments (resumable) and write DIR/study.ipynb "
                       "(executed), DIR/study.html and DIR/figures/.")
    s.add_argument("--quick", action="store_true",
                   help="a reduced study: 2 seeds, a 3-epoch budget with patience 1, fewer values")
    s.add_argument("--out", default="study", help="output folder (default ./study)")
    s.add_argument("--store", help="the result store (default OUT/study.sqlite)")
    s.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    s.add_argument("--seeds", type=int,
                   help="seeds per setting of the recipes, softmax regression, the learning rate, the seed grid "
                        "and the learning rate x init scale grid at 4 hidden layers (default 5; 2 with --quick); the "
                        "other sweeps and grids take at most 3 of them, the widest widths at most 2")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_argument(s)
    add_backend_arguments(s)
    add_deterministic_argument(s)
    s.set_defaults(func=cmd_study)

    r = sub.add_parser("results", help="print a result store as a table, or export it as CSV",
                       description="One row per trial: the settings that vary, status (stale: running, but its "
                       "sweep has gone), why it ended (outcome), its reported and last epoch, and final metrics.")
    r.add_argument("store", help="the SQLite result store")
    r.add_argument("--csv", metavar="PATH", help="write every trial (all config keys and metrics) to this CSV file")
    r.add_argument("--sort", default="val_accuracy", help="column or config key to sort the table by (default "
                   "val_accuracy: choose on validation, read test once): accuracies highest first, anything else "
                   "lowest first")
    r.add_argument("--reverse", action="store_true", help="sort the other way round")
    r.add_argument("--limit", type=int, default=50, help="rows to print (default 50; 0 for all)")
    r.set_defaults(func=cmd_results)

    from mlplab import tune  # `mlplab tune` and `mlplab export`: their flags and commands live in tune.py

    tune.add_parsers(sub)
    p.commands = sub.choices  # name -> parser, for naming the subcommand of an unrecognized argument
    return p


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="local", help="local (default: this process) or ray (a Ray cluster; "
                   "pip install 'mlplab[ray]')")
    p.add_argument("--address", help="with --backend ray: 'auto' or HOST:PORT of a running cluster (default: "
                   "start a local Ray)")


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", metavar="N|auto", help="torch threads: a count (repeatable: the thread count can "
                   "change the last bits), or auto (the cores free right now, for a machine shared with other work); "
                   "default: torch's own choice (the cores of this machine)")


def resolve_threads(args) -> int | None:
    """--threads as a count (None when not given); ValueError for a bad value."""
    from mlplab.device import parse_threads

    return None if args.threads is None else parse_threads(args.threads)


def add_deterministic_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deterministic", action="store_true", help="PyTorch's deterministic algorithms, so a GPU run "
                   "repeats bit for bit (can be slower on GPUs; no effect on the CPU, which is deterministic)")


def check_backend(args) -> None:
    from mlplab.runner import BACKENDS

    if args.backend not in BACKENDS:
        raise ValueError(f"unknown backend {args.backend!r}; choose one of: {', '.join(BACKENDS)}")
    if args.address and args.backend != "ray":
        raise ValueError("--address is for --backend ray")
    if args.backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ValueError("--backend ray needs Ray, which is not installed: pip install 'mlplab[ray]'")
        from mlplab.runner import check_ray_address

        check_ray_address(args.address)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that map onto TrainConfig (default None: keep the config's default)."""
    a = p.add_argument
    a("--preset", help="start from a tuned preset: fast (~98%% in seconds) or best (highest accuracy, minutes); "
      "other flags override its settings")
    a("--hidden", help="hidden layer widths, e.g. 256 or 512,512; 'none' for softmax regression (default 256)")
    a("--activation", help="relu, leaky_relu, elu, gelu, tanh, sigmoid, softplus, sin or identity (default relu)")
    a("--init", help="NAME[:SCALE]: zeros, uniform:A, normal:SIGMA, xavier_uniform, xavier_normal, kaiming_uniform, "
      "kaiming_normal (SCALE multiplies their gain) (default uniform:0.01)")
    a("--bias-init", help="zeros (default) or same (drawn like the weights)")
    a("--optimizer", help="sgd (default), adam or adamw")
    a("--lr", type=float, help="learning rate (default 0.1)")
    a("--momentum", type=float, help="SGD momentum (default 0)")
    a("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD with --momentum > 0)")
    a("--weight-decay", type=float, help="weight decay (default 0)")
    a("--beta1", type=float, help="Adam beta1 (default 0.9)")
    a("--beta2", type=float, help="Adam beta2 (default 0.999)")
    a("--eps", type=float, help="Adam epsilon (default 1e-8)")
    a("--schedule", help="learning-rate schedule: constant (default), step, cosine or onecycle")
    a("--warmup-steps", type=int, help="linear learning-rate warm-up steps (default 0)")
    a("--step-size", type=int, help="epochs between decays for --schedule step (default 1)")
    a("--gamma", type=float, help="decay factor for --schedule step (default 0.1)")
    a("--epochs", type=int, help="passes over the training split (default 10)")
    a("--batch-size", type=int, help="examples per step (default 128)")
    a("--seed", type=int, help="seed of the weight initialization (default 0)")
    a("--data-seed", type=int, help="seed of the data order (default: --seed)")
    a("--val-size", type=int, help="validation images taken from the end of the training set (default 10000)")
    a("--data", help="'mnist' (bundled, default) or a folder with the four IDX files (Fashion-MNIST, KMNIST, ...)")
    a("--dropout", type=float, help="probability of dropping a hidden unit while training (default 0)")
    a("--dropout-input", type=float, help="probability of dropping an input pixel while training (default 0)")
    a("--max-norm", type=float, help="cap on the L2 norm of each unit's incoming weights (default 0: none)")
    a("--label-smoothing", type=float, help="weight of the uniform target mixed into the labels (default 0)")
    a("--ema", type=float, help="decay of a moving average of the weights used for evaluation, e.g. 0.999 "
      "(default 0: off)")
    a("--noise", type=float, help="std of Gaussian noise added to the inputs while training (and, with "
      "--batch-norm, to every normalized hidden layer) (default 0)")
    a("--batch-norm", action=argparse.BooleanOptionalAction, default=None,
      help="batch normalization of every hidden layer (--no-batch-norm turns a preset's off)")
    a("--precision", help="fp32 (default), tf32 (TF32 matmuls on CUDA) or bf16 (autocast; float32 master weights)")
    a("--patience", type=int, help="early stopping: stop once the validation loss has not improved for this many "
      "epochs and report the best epoch; --epochs is then the budget (default 0: off)")
    a("--min-delta", type=float, help="with --patience: the least decrease of the validation loss that counts as "
      "an improvement (default 0)")


def config_from_args(args: argparse.Namespace):
    import dataclasses

    from mlplab.config import TrainConfig, parse_hidden, parse_init
    from mlplab.presets import settings

    d = settings(args.preset) if args.preset is not None else {}
    for field in dataclasses.fields(TrainConfig):  # every flag named like its field; --hidden and --init parsed below
        name = field.name
        if name in ("hidden", "init", "init_scale"):
            continue
        value = getattr(args, name, None)
        if value is not None:
            d[name] = value
    if args.hidden is not None:
        d["hidden"] = parse_hidden(args.hidden)
    if args.init is not None:
        d["init"], scale = parse_init(args.init)
        if scale is not None:
            d["init_scale"] = scale
    if "data" in d and d["data"] != "mnist":
        d["data"] = os.path.expanduser(d["data"])
    config = TrainConfig.from_dict(d)
    _check_unused_flags(args, config)
    return config


# flags that only one optimizer or schedule reads: given with another, they would be ignored without a word
_ONLY_FOR = {"momentum": ("optimizer", ("sgd",), "SGD's (Adam's counterpart is --beta1)"),
             "beta1": ("optimizer", ("adam", "adamw"), "Adam's"), "beta2": ("optimizer", ("adam", "adamw"), "Adam's"),
             "eps": ("optimizer", ("adam", "adamw"), "Adam's"),
             "step_size": ("schedule", ("step",), "for --schedule step"),
             "gamma": ("schedule", ("step",), "for --schedule step")}


def _check_unused_flags(args: argparse.Namespace, config) -> None:
    """A ValueError for a flag given on the command line that the chosen optimizer or schedule does not read."""
    for name, (field, allowed, whose) in _ONLY_FOR.items():
        if getattr(args, name, None) is not None and getattr(config, field) not in allowed:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is {whose}; this run uses --{field} {getattr(config, field)}, which does not "
                             f"read it: remove {flag} or set --{field} {allowed[0]}")


def cmd_train(args) -> int:
    import torch

    from mlplab import checkpoint, planner
    from mlplab.data import check_batch_size, load_dataset, make_splits
    from mlplab.device import resolve_device
    from mlplab.train import train

    try:
        config = config_from_args(args)
        device = resolve_device(args.device)
        threads = resolve_threads(args)
        # A model that cannot fit in the memory free now is refused before anything is allocated.
        planner.check_fits([config], planner.memory_budget(device, fraction=1.0), what="memory available")
        if args.save:
            _check_writable(Path(args.save))
        splits = make_splits(load_dataset(config.data), config.val_size)
        check_batch_size(config.batch_size, splits)
    except USER_ERRORS as e:
        return _fail(f"train: {e}")
    if threads is not None:
        torch.set_num_threads(threads)  # the command owns its process

    show = not args.quiet and not args.json
    if show:
        print(_describe(config, device))
        print(_row(("epoch", "train loss", "val loss", "val acc", "test acc", "seconds")))
    on_epoch = (lambda epoch, rows: print(_row(_cells(rows[0])), flush=True)) if show else None
    result = train(config, device=device, splits=splits, progress=None if not args.quiet else False,
                   on_epoch=on_epoch, deterministic=args.deterministic)
    summary = {**result.summary(), "threads": torch.get_num_threads()}
    if args.save:
        checkpoint.save(args.save, result.params, config, {k: v for k, v in summary.items() if k != "history"})
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet or result.diverged:
        print(_verdict(result, args.save))
    return 0


def cmd_sweep(args) -> int:
    import math
    import sqlite3

    from mlplab import planner
    from mlplab.device import resolve_device
    from mlplab.runner import run_sweep
    from mlplab.store import Store, describe_database_error
    from mlplab.sweep import SweepSpec

    try:
        spec = SweepSpec.from_toml(args.spec)
        trials = spec.trials()
        device = resolve_device(args.device)
        threads = resolve_threads(args)
        check_backend(args)
        if args.memory_budget is not None and not (math.isfinite(args.memory_budget) and args.memory_budget > 0):
            raise ValueError(f"--memory-budget must be a number of GB > 0, got {args.memory_budget}")
        budget = None if args.memory_budget is None else int(args.memory_budget * 2**30)
        planner.check_fits(trials, budget if budget is not None else planner.memory_budget(device),
                           what="memory budget" if budget is not None else "memory budget (half the free memory)")
        store = Store(args.store)
    except USER_ERRORS as e:
        return _fail(f"sweep: {e}")
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    with store:
        try:
            report = run_sweep(trials, store, device=device, sequential=args.sequential,
                               progress=False if args.quiet else None, budget_bytes=budget, name=spec.name, log=log,
                               backend=args.backend, address=args.address, deterministic=args.deterministic,
                               threads=threads)
        except sqlite3.DatabaseError as e:
            return _fail(f"sweep: {describe_database_error(store.path, e)}")
        except ConnectionError as e:  # a Ray cluster that cannot be reached (runner.start_ray says what to do)
            return _fail(f"sweep: {e}")
        if not args.quiet:
            print(f"{report.trained} trained, {report.skipped} already stored, {report.failed} failed, "
                  f"{report.populations} population(s), {report.threads} thread(s), {report.seconds:.1f} s",
                  file=sys.stderr)
            _print_results(shown_rows(store.records()), "val_accuracy", 20)
    return 1 if report.failed else 0


def cmd_study(args) -> int:
    import sqlite3

    from mlplab.device import resolve_device
    from mlplab.store import Store, describe_database_error
    from mlplab.study import StudyBusy, experiments, run_study

    try:
        if args.seeds is not None and args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        experiments(args.quick, args.seeds)  # the plan's limits, before anything is written
        resolve_device(args.device)
        threads = resolve_threads(args)
        check_backend(args)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"--out {out} is a file; give a folder")
        out.mkdir(parents=True, exist_ok=True)
        store = Path(args.store) if args.store else out / "study.sqlite"
        Store(store).close()  # refuses a file that is not a store (or cannot be written), before any training
    except USER_ERRORS as e:
        return _fail(f"study: {e}")
    except OSError as e:
        return _fail(f"study: {e.filename}: {e.strerror}")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    try:
        info = run_study(out, store=store, quick=args.quick, device=args.device, seeds=args.seeds,
                         progress=False if args.quiet else None, log=log, backend=args.backend, address=args.address,
                         deterministic=args.deterministic, threads=threads)
    except (StudyBusy, ConnectionError) as e:  # ConnectionError: a Ray cluster that cannot be reached
        return _fail(f"study: {e}")
    except sqlite3.DatabaseError as e:
        return _fail(f"study: {describe_database_error(store, e)}")
    missing = f", {len(info['missing'])} MISSING (listed in the report)" if info["missing"] else ""
    print(f"study: {info['trials']} trials ({info['trained']} trained, {info['reused']} reused{missing}), "
          f"training {info['train_seconds']:.1f} s, report {info['report_seconds']:.1f} s -> {out / 'study.html'}")
    return 1 if info["missing"] else 0


def cmd_results(args) -> int:
    import sqlite3

    from mlplab.files import check_regular_target
    from mlplab.store import Store, describe_database_error

    try:
        if args.csv:
            check_regular_target(args.csv)
        store = Store(args.store, create=False)  # read-only: nothing is written to the store
        with store:
            rows = shown_rows(store.records())
    except USER_ERRORS as e:
        return _fail(f"results: {e}")
    except sqlite3.DatabaseError as e:
        return _fail(f"results: {describe_database_error(Path(args.store), e)}")
    if args.csv:
        try:
            _write_csv(rows, args.csv)
        except (*USER_ERRORS, OSError) as e:
            return _fail(f"results: --csv {args.csv}: {getattr(e, 'strerror', None) or e}")
        print(f"{len(rows)} trials written to {args.csv}", file=sys.stderr)
    else:
        _print_results(rows, args.sort, args.limit, args.reverse)
    return 0


RESULT_METRICS = ("status", "outcome", "best_epoch", "stopped_epoch", "val_accuracy", "test_accuracy", "train_loss",
                  "seconds")


def shown_rows(rows: list[dict]) -> list[dict]:
    """Store records as `mlplab results` shows them: a running trial whose holder is gone is "stale"
    (`store.shown_status`), and a finished one says why it ended (`analysis.outcome`: converged, budget, collapsed
    or diverged), the epoch it reports (best_epoch; none for a diverged one) and the last epoch it trained."""
    import time

    from mlplab.analysis import ending
    from mlplab.store import shown_status

    now = time.time()
    return [{**r, "status": shown_status(r, now), **ending(r)} for r in rows]


def _varying(rows: list[dict]) -> list[str]:
    from mlplab.config import TrainConfig

    keys = list(TrainConfig().to_dict())
    return [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


def _print_results(rows: list[dict], sort: str, limit: int, reverse: bool = False) -> None:
    if not rows:
        print("(no trials)")
        return
    cols = _varying(rows) + list(RESULT_METRICS)
    if sort not in rows[0] or sort == "history":
        raise SystemExit(_fail(f"results: unknown column {sort!r} to sort by; choose from {', '.join(cols)} or "
                               "another config key (--csv PATH lists them all)"))
    rows = sort_rows(rows, sort, descending=sort.endswith("accuracy") != reverse)
    shown = rows if limit <= 0 else rows[:limit]
    table = [[_fmt(r.get(c)) for c in cols] for r in shown]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for t in table:
        print("  ".join(v.rjust(w) for v, w in zip(t, widths)))
    if len(rows) > len(shown):
        print(f"... {len(rows) - len(shown)} more (--limit 0 for all, --csv PATH to export)")


def sort_rows(rows: list[dict], column: str, descending: bool) -> list[dict]:
    """Rows sorted by `column`, whatever its type (numbers, strings, lists such as hidden, booleans); missing
    values last either way."""
    def key(v):
        if isinstance(v, bool) or isinstance(v, (int, float)):
            return (0, v, "")
        if isinstance(v, (list, tuple)):
            return (1, len(v), json.dumps(v))  # hidden: shallower first, then by widths
        return (2, 0, json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v))

    present = [r for r in rows if r.get(column) is not None and r.get(column) == r.get(column)]  # NaN is missing
    absent = [r for r in rows if not (r.get(column) is not None and r.get(column) == r.get(column))]
    return sorted(present, key=lambda r: _list_key(key(r[column])), reverse=descending) + absent


def _list_key(k):
    """Lists compare element-wise by number, not as JSON text (so [16] < [128])."""
    kind, n, text = k
    if kind == 1:
        return (kind, n, tuple(json.loads(text)) if text else ())
    return k


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "none"
    return str(v)


def _write_csv(rows: list[dict], path: str) -> None:
    import csv

    from mlplab.config import TrainConfig
    from mlplab.files import atomic_write
    from mlplab.store import METRICS

    cols = [*TrainConfig().to_dict(), "status", "outcome", "best_epoch", "stopped_epoch", *METRICS, "diverged_at",
            "seconds", "population", "device", "threads", "version", "numerics", "git_commit", "key"]
    with atomic_write(path, "w") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([_csv_value(r.get(c)) for c in cols])


def _csv_value(v):
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v)
    return "" if v is None else v


def _describe(config, device) -> str:
    layers = "-".join(str(s) for s in (784, *config.hidden, 10))
    act = f" {config.activation}" if config.hidden else " (softmax regression)"  # no hidden layer, no activation
    bias = f", bias init {config.bias_init}" if config.bias_init != "zeros" else ""  # zeros: the default, unsaid
    return (f"mlplab {__version__}: {layers}{act}, init {config.init}:{config.init_scale:g}{bias}, "
            f"{config.optimizer} lr {config.lr:g}, batch {config.batch_size}, {config.epochs} "
            f"epoch{'s' if config.epochs != 1 else ''}, "
            f"seed {config.seed}{_extras(config)}, on {device}")


def _extras(config) -> str:
    """The regularization and precision settings that are on, e.g. ', dropout 0.5, bf16'."""
    on = [f"{name.replace('_', ' ')} {getattr(config, name):g}"
          for name in ("dropout_input", "dropout", "max_norm", "label_smoothing", "ema", "noise")
          if getattr(config, name)]
    if config.batch_norm:
        on.insert(0, "batch norm")
    if config.schedule != "constant":
        on.insert(0, f"{config.schedule} schedule")
    if config.precision != "fp32":
        on.append(config.precision)
    if config.patience:
        on.append(f"early stopping (patience {config.patience}, min delta {config.min_delta:g})")
    return "".join(f", {x}" for x in on)


def _cells(h: dict) -> tuple:
    def pct(v):
        return "-" if v is None or v != v else f"{100 * v:.2f}%"

    def num(v):
        return "-" if v is None or v != v else f"{v:.4f}"

    return (h["epoch"], num(h["train_loss"]), num(h.get("val_loss")), pct(h.get("val_accuracy")),
            pct(h.get("test_accuracy")), f"{h['seconds']:.1f}")


def _row(cells) -> str:
    return "  ".join(f"{c!s:>10}" for c in cells)


def _verdict(result, save) -> str:
    if result.diverged:
        at = result.diverged_at
        return (f"diverged: the loss or a gradient became non-finite at epoch {at['epoch']}, step {at['step']}; "
                f"try a smaller --lr or init scale")
    line = f"test accuracy {100 * result.test_accuracy:.2f}% after {len(result.history)} epochs, {result.seconds:.1f} s"
    if result.best_epoch is not None:
        c = result.config
        why = {"converged": f"stopped: no val-loss improvement for {c.patience} epoch{'s' if c.patience != 1 else ''}",
               "budget": f"not converged within the {c.epochs}-epoch budget",
               "collapsed": "collapsed: validation accuracy near chance"}[result.outcome]
        line = (f"test accuracy {100 * result.test_accuracy:.2f}% at the best epoch {result.best_epoch} of "
                f"{len(result.history)} ({why}), {result.seconds:.1f} s")
    elif result.outcome == "collapsed":
        line += "; collapsed: validation accuracy near chance (try another --lr or --init)"
    return line + (f"; saved to {save}" if save else "")


def _check_writable(path: Path) -> None:
    from mlplab.files import check_regular_target

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"--save {path} is a folder; give a file name such as model.pt")
    if not parent.is_dir():
        raise FileNotFoundError(f"--save {path}: folder {parent} does not exist")
    try:
        check_regular_target(path)
    except ValueError as e:
        raise ValueError(f"--save {e}") from None
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"--save {path}: folder {parent} is not writable")


def _fail(message: str) -> int:
    print(f"mlplab {message}", file=sys.stderr)
    return 2


def unrecognized(command: str, parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """The error for arguments `mlplab COMMAND` does not take, with the closest options it does take."""
    import difflib

    # argparse keeps no public list of a parser's options; _actions is the one every argparse version has
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    close = [m for word in extra if word.startswith("-")
             for m in difflib.get_close_matches(word.split("=", 1)[0], options, n=3, cutoff=0.75)]
    hint = f"; did you mean {' or '.join(dict.fromkeys(close))}?" if close else ""
    return f"{command}: unrecognized arguments: {' '.join(extra)}{hint} (mlplab {command} --help lists the options)"


RESUMABLE = ("sweep", "study", "tune")  # commands whose rerun picks up where an interrupted run stopped


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        return _fail(unrecognized(args.command, parser.commands[args.command], extra))
    if getattr(args, "deterministic", False):  # cuBLAS reads this once, when it starts: set it before any CUDA work
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("mlplab: interrupted" + ("; the same command resumes it" if args.command in RESUMABLE else ""),
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`mlplab results S | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
