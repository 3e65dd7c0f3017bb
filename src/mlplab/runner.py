"""Running a sweep: claim the unfinished trials in the store, train them population by population, store each
population's results as soon as it finishes.

    >>> from mlplab.sweep import SweepSpec
    >>> report = run_sweep(SweepSpec.from_toml("lr.toml").trials(), "runs/lr.sqlite")
"""

from __future__ import annotations

import functools
import sys
import time
import traceback
from dataclasses import dataclass

from mlplab import data as data_mod
from mlplab import planner
from mlplab.config import TrainConfig
from mlplab.device import resolve_device
from mlplab.store import Store
from mlplab.train import train_population


@dataclass
class SweepReport:
    trials: int  # asked for
    skipped: int  # already finished (or running elsewhere)
    trained: int
    failed: int
    populations: int
    seconds: float


BACKENDS = ("local", "ray")


def run_sweep(trials: list[TrainConfig], store: Store | str, *, device="auto", sequential: bool = False,
              progress: bool | None = None, budget_bytes: int | None = None, name: str | None = None,
              log=None, backend: str = "local", address: str | None = None, train_fn=None,
              deterministic: bool = False) -> SweepReport:
    """Train every trial not yet finished in `store`; return what was done.

    backend "local" trains the populations one after another in this process; "ray" submits each population as a
    Ray task (to a local Ray, or the cluster at `address`) and stores results as tasks finish. `train_fn` replaces
    `train_population` (for tests). `deterministic` turns on PyTorch's deterministic algorithms in every task.
    """
    from tqdm import tqdm

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    t0 = time.perf_counter()
    own_store = not isinstance(store, Store)
    store = Store(store) if own_store else store
    dev = resolve_device(device)
    todo = store.claim(trials, sweep=name)
    budget = budget_bytes if budget_bytes is not None else planner.memory_budget(dev)
    pops = planner.sequential(todo) if sequential else planner.plan(todo, budget)
    if log:
        log(f"{len(trials)} trials: {len(trials) - len(todo)} already in the store, {len(todo)} to train "
            f"in {len(pops)} population(s) on {dev} (memory budget {budget / 2**30:.1f} GiB per population, "
            f"backend {backend})")
        for pop in pops[:12]:
            log(f"  {pop.describe()}  (~{pop.size * pop.bytes_per_model / 2**20:.0f} MiB)")
        if len(pops) > 12:
            log(f"  ... and {len(pops) - 12} more")
    enabled = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(todo), unit="trial", desc="sweep", disable=not enabled, file=sys.stderr,
               dynamic_ncols=True)
    trained = failed = 0
    pending = {id(p): p for p in pops}
    execute = _run_ray if backend == "ray" else _run_local
    train_fn = train_fn or train_population
    if deterministic:
        train_fn = functools.partial(train_fn, deterministic=True)
    try:
        for pop, results, error in execute(pops, dev, bar, train_fn, address):
            if error is not None:  # a broken population is stored as failed, the sweep goes on
                store.fail(list(pop.configs), error)
                failed += pop.size
            else:
                store.finish(results)
                trained += pop.size
            del pending[id(pop)]
            bar.update(pop.size)
    finally:
        bar.close()
        if pending:  # interrupted: hand back what we claimed but did not run
            store.release([c for p in pending.values() for c in p.configs])
        if own_store:
            store.close()
    return SweepReport(trials=len(trials), skipped=len(trials) - len(todo), trained=trained, failed=failed,
                       populations=len(pops), seconds=time.perf_counter() - t0)


def _run_local(pops, dev, bar, train_fn, address):
    """Train the populations one after another here; yield (population, results, error)."""
    cache: dict = {}
    for pop in pops:
        c0 = pop.configs[0]

        def on_epoch(epoch, rows, pop=pop, c0=c0):
            bar.set_postfix_str(f"{pop.describe()} epoch {epoch}/{c0.epochs}")

        on_epoch(0, [])
        try:
            results = train_fn(list(pop.configs), device=dev, splits=_splits(cache, c0), progress=False,
                               on_epoch=on_epoch)
        except Exception as e:
            yield pop, None, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
            continue
        yield pop, results, None


def _run_ray(pops, dev, bar, train_fn, address):
    """Submit every population as a Ray task (the data goes to the object store once); yield as tasks finish."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install 'mlplab[ray]' (or pip install ray)") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    refs: dict = {}
    remote = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=False)(_ray_task)
    futures = {}
    for pop in pops:
        c0 = pop.configs[0]
        splits_ref = _splits(refs, c0, ray.put)  # each dataset goes to the object store once
        opts = {"num_cpus": RAY_TASK_CPUS, "memory": max(1, pop.size * pop.bytes_per_model)}
        if dev.type == "cuda":
            opts["num_gpus"] = 1
        futures[remote.options(**opts).remote(list(pop.configs), splits_ref, str(dev), train_fn, RAY_TASK_CPUS)] = pop
    bar.set_postfix_str(f"{len(futures)} Ray tasks")
    while futures:
        done, _ = ray.wait(list(futures), num_returns=1)
        for ref in done:
            pop = futures.pop(ref)
            try:
                results = ray.get(ref)
            except Exception as e:  # the worker died more often than Ray retries, or the task raised
                yield pop, None, f"{type(e).__name__}: {str(e)[:2000]}"
                continue
            yield pop, results, None


RAY_RETRIES = 2  # a task whose worker dies is run again this many times before its trials are stored as failed
RAY_TASK_CPUS = 1  # CPUs (and torch threads) per task: populations are the unit of parallelism


def _ray_task(configs, splits, device, train_fn, threads):
    """Runs on a Ray worker: train one population, return its results without the parameters."""
    import torch

    torch.set_num_threads(threads)
    results = train_fn(configs, device=device, splits=splits, progress=False)
    for r in results:
        r.params = {}
    return results


def _splits(cache: dict, c: TrainConfig, put=lambda splits: splits):
    """The splits config `c` trains on, loaded once per (data, val_size) into `cache` (through `put`, e.g. ray.put)."""
    key = (c.data, c.val_size)
    if key not in cache:
        cache[key] = put(data_mod.make_splits(data_mod.load_dataset(c.data), c.val_size))
    return cache[key]
