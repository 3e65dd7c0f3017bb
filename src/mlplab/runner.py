"""Running a sweep: claim the unfinished trials in the store, train them population by population, store each
population's results as soon as it finishes.

    >>> from mlplab.sweep import SweepSpec
    >>> report = run_sweep(SweepSpec.from_toml("lr.toml").trials(), "runs/lr.sqlite")
"""

from __future__ import annotations

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


def run_sweep(trials: list[TrainConfig], store: Store | str, *, device="auto", sequential: bool = False,
              progress: bool | None = None, budget_bytes: int | None = None, name: str | None = None,
              log=None) -> SweepReport:
    """Train every trial not yet finished in `store`; return what was done."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    own_store = not isinstance(store, Store)
    store = Store(store) if own_store else store
    dev = resolve_device(device)
    todo = store.claim(trials, sweep=name)
    budget = budget_bytes if budget_bytes is not None else planner.memory_budget(dev)
    pops = planner.sequential(todo) if sequential else planner.plan(todo, budget)
    if log:
        log(f"{len(trials)} trials: {len(trials) - len(todo)} already in the store, {len(todo)} to train "
            f"in {len(pops)} population(s) on {dev} (memory budget {budget / 2**30:.1f} GiB per population)")
        for pop in pops[:12]:
            log(f"  {pop.describe()}  (~{pop.size * pop.bytes_per_model / 2**20:.0f} MiB)")
        if len(pops) > 12:
            log(f"  ... and {len(pops) - 12} more")
    enabled = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(todo), unit="trial", desc="sweep", disable=not enabled, file=sys.stderr,
               dynamic_ncols=True)
    splits_cache: dict = {}
    trained = failed = 0
    pending = list(pops)
    try:
        while pending:
            pop = pending.pop(0)
            c0 = pop.configs[0]

            def on_epoch(epoch, rows, pop=pop, c0=c0):
                bar.set_postfix_str(f"{pop.describe()} epoch {epoch}/{c0.epochs}")

            on_epoch(0, [])
            try:
                splits = _splits(splits_cache, c0)
                results = train_population(list(pop.configs), device=dev, splits=splits, progress=False,
                                           on_epoch=on_epoch)
            except (KeyboardInterrupt, SystemExit):
                pending.insert(0, pop)
                raise
            except Exception as e:  # a broken population is stored as failed, the sweep goes on
                store.fail(list(pop.configs), f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")
                failed += pop.size
                bar.update(pop.size)
                continue
            store.finish(results)
            trained += pop.size
            bar.update(pop.size)
    finally:
        bar.close()
        if pending:  # interrupted: hand back what we claimed but did not run
            store.release([c for p in pending for c in p.configs])
        if own_store:
            store.close()
    return SweepReport(trials=len(trials), skipped=len(trials) - len(todo), trained=trained, failed=failed,
                       populations=len(pops), seconds=time.perf_counter() - t0)


def _splits(cache: dict, c: TrainConfig):
    key = (c.data, c.val_size)
    if key not in cache:
        cache[key] = data_mod.make_splits(data_mod.load_dataset(c.data), c.val_size)
    return cache[key]
