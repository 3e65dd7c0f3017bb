"""Running a sweep: claim the unfinished trials in the store, train them population by population, store each
population's results as soon as it finishes.

    >>> from mlplab.sweep import SweepSpec
    >>> report = run_sweep(SweepSpec.from_toml("lr.toml").trials(), "runs/lr.sqlite")
"""

from __future__ import annotations

import functools
import socket
import sys
import time
import traceback
from dataclasses import dataclass

import torch

from mlplab import data as data_mod
from mlplab import planner
from mlplab.config import TrainConfig
from mlplab.device import resolve_device
from mlplab.store import Store, trial_key
from mlplab.train import train_population


@dataclass
class SweepReport:
    trials: int  # asked for
    skipped: int  # already finished when the sweep started
    trained: int
    failed: int
    populations: int
    seconds: float
    lost: int = 0  # trained here, but another sweep had taken the lease over (its result counts, not ours)
    waited: int = 0  # trials another live sweep was running, waited for until they finished or their lease expired
    threads: int | None = None  # torch threads per population


BACKENDS = ("local", "ray")
POLL_SECONDS = 2.0  # how often a sweep looks at trials that another sweep is running


def run_sweep(trials: list[TrainConfig], store: Store | str, *, device="auto", sequential: bool = False,
              progress: bool | None = None, budget_bytes: int | None = None, name: str | None = None,
              log=None, backend: str = "local", address: str | None = None, train_fn=None,
              deterministic: bool = False, threads: int | None = None, wait: bool = True,
              keep_weights: frozenset[str] = frozenset()) -> SweepReport:
    """Train every trial not yet finished in `store`; return what was done.

    backend "local" trains the populations one after another in this process; "ray" submits each population as a
    Ray task (to a local Ray, or the cluster at `address`; a Ray runtime started here is shut down at the end) and
    stores results as tasks finish. `train_fn` replaces `train_population` (for tests). `deterministic` turns on
    PyTorch's deterministic algorithms in every task. `threads`: torch threads per population (None: leave torch's
    setting; changed only while the sweep runs). Trials that another live sweep holds are waited for (`wait`), so
    that on return every trial is finished or failed. `progress` None: a bar on a terminal, else one `log` line per
    population. The reported weights of the trials whose keys are in `keep_weights` are stored too (`Store.weights`).
    """
    from tqdm import tqdm

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    budget = budget_bytes if budget_bytes is not None else planner.memory_budget(dev)
    planner.check_fits(trials, budget)  # before anything is claimed or allocated
    own_store = not isinstance(store, Store)
    store = Store(store) if own_store else store
    tty = sys.stderr.isatty()
    enabled = tty if progress is None else progress
    lines = log if (progress is None and not tty and log) else None  # piped output: one line per population
    bar = tqdm(total=0, unit="trial", desc="sweep", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
    train_fn = train_fn or train_population
    if deterministic:
        train_fn = functools.partial(train_fn, deterministic=True)
    saved_threads = torch.get_num_threads()
    task_threads = threads if threads is not None else (RAY_TASK_CPUS if backend == "ray" else saved_threads)
    started_ray = False
    totals = {"trained": 0, "failed": 0, "lost": 0, "populations": 0, "waited": 0}
    tried: set = set()  # keys run (or failed) by this sweep: never claimed twice in one run
    skipped = None
    try:
        if threads is not None and backend == "local":
            torch.set_num_threads(threads)
        with store.heartbeat():
            while True:
                todo = store.claim([t for t in trials if trial_key(t) not in tried], sweep=name)
                if skipped is None:
                    skipped = len(trials) - len(todo) - len(store.held_elsewhere(trials))
                tried.update(trial_key(t) for t in todo)
                if todo:
                    pops = planner.sequential(todo) if sequential else planner.plan(
                        todo, budget, params_cap=planner.max_params(dev))
                    if log:
                        _log_plan(log, trials, todo, pops, dev, budget, backend)
                    bar.total += len(todo)
                    bar.refresh()
                    started_ray |= _execute(pops, store, dev, bar, train_fn, address, backend, task_threads, totals,
                                            lines, log, frozenset(keep_weights))
                    continue  # leases of others may have run out meanwhile: claim again before waiting
                others = store.held_elsewhere(trials)
                if not others or not wait:
                    break
                if log:
                    log(f"waiting for {len(others)} trial(s) that another sweep is running (taken over if its lease "
                        f"of {store.lease_seconds:.0f} s runs out)")
                totals["waited"] = max(totals["waited"], len(others))
                while store.held_elsewhere(others) == others:
                    time.sleep(POLL_SECONDS)
    finally:
        bar.close()
        if threads is not None and backend == "local":
            torch.set_num_threads(saved_threads)
        if started_ray:
            import ray

            ray.shutdown()
        if own_store:
            store.close()
    return SweepReport(trials=len(trials), skipped=skipped or 0, trained=totals["trained"], failed=totals["failed"],
                       populations=totals["populations"], seconds=time.perf_counter() - t0, lost=totals["lost"],
                       waited=totals["waited"], threads=task_threads)


def _log_plan(log, trials, todo, pops, dev, budget, backend) -> None:
    log(f"{len(trials)} trials: {len(todo)} to train in {len(pops)} population(s) on {dev} (memory budget "
        f"{budget / 2**30:.1f} GiB per population, backend {backend})")
    for pop in pops[:12]:
        log(f"  {pop.describe()}  (~{pop.bytes / 2**20:.0f} MiB)")
    if len(pops) > 12:
        log(f"  ... and {len(pops) - 12} more")


def _execute(pops, store, dev, bar, train_fn, address, backend, threads, totals, lines, log, keep) -> bool:
    """Run the populations, storing each as it finishes; returns whether a Ray runtime was started here."""
    pending = {id(p): p for p in pops}
    progress = _Progress(pops)
    started = [False]
    execute = _run_ray if backend == "ray" else _run_local
    try:
        for pop, results, error in execute(pops, dev, bar, train_fn, address, threads, started, keep):
            if error is not None:  # a broken population is stored as failed, the sweep goes on
                store.fail(list(pop.configs), error)
                totals["failed"] += pop.size
            else:
                written = store.finish(results, threads=threads, keep_weights=keep)
                totals["trained"] += written
                totals["lost"] += pop.size - written
                if written < pop.size and log:
                    log(f"{pop.size - written} result(s) not stored: another sweep took their lease over")
            totals["populations"] += 1
            del pending[id(pop)]
            bar.update(pop.size)
            if lines:
                lines(progress.line(pop))
    finally:
        if pending:  # interrupted: hand back what we claimed but did not run
            store.release([c for p in pending.values() for c in p.configs])
    return started[0]


class _Progress:
    """A line per finished population for output that is not a terminal: done/total, elapsed, estimate left (from
    the work done so far, counted as parameters x examples x epochs of every model)."""

    def __init__(self, pops):
        self.cost = {id(p): sum(_cost(c) for c in p.configs) for p in pops}
        self.total_cost = sum(self.cost.values()) or 1
        self.total = sum(p.size for p in pops)
        self.n_pops = len(pops)
        self.done = self.done_pops = 0
        self.done_cost = 0
        self.t0 = time.perf_counter()

    def line(self, pop) -> str:
        self.done += pop.size
        self.done_pops += 1
        self.done_cost += self.cost[id(pop)]
        elapsed = time.perf_counter() - self.t0
        left = elapsed * (self.total_cost - self.done_cost) / max(self.done_cost, 1)
        return (f"[{self.done}/{self.total} trials, {self.done_pops}/{self.n_pops} populations] {_clock(elapsed)} "
                f"elapsed, ~{_clock(left)} left ({pop.describe()})")


def _cost(c: TrainConfig) -> int:
    sizes = [planner.IN_DIM, *c.hidden, planner.N_CLASSES]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * c.epochs * max(1, planner.N_TRAIN - c.val_size)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _run_local(pops, dev, bar, train_fn, address, threads, started, keep):
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


def _run_ray(pops, dev, bar, train_fn, address, threads, started, keep):
    """Submit every population as a Ray task (the data goes to the object store once); yield as tasks finish."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install 'mlplab[ray]' (or pip install ray)") from None
    if start_ray(ray, address):
        started[0] = True
    refs: dict = {}
    remote = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=False)(_ray_task)
    futures = {}
    for pop in pops:
        c0 = pop.configs[0]
        splits_ref = _splits(refs, c0, ray.put)  # each dataset goes to the object store once
        opts = {"num_cpus": threads, "memory": max(1, pop.bytes)}
        if dev.type == "cuda":
            opts["num_gpus"] = 1
        mine = keep & {trial_key(c) for c in pop.configs}
        futures[remote.options(**opts).remote(list(pop.configs), splits_ref, str(dev), train_fn, threads, mine)] = pop
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


def _ray_task(configs, splits, device, train_fn, threads, keep=frozenset()):
    """Runs on a Ray worker: train one population, return its results without the parameters (but those of the
    trials in `keep`, whose weights the store keeps)."""
    import torch

    torch.set_num_threads(threads)
    results = train_fn(configs, device=device, splits=splits, progress=False)
    for r in results:
        if trial_key(r.config) not in keep:
            r.params = {}
    return results


def start_ray(ray, address: str | None) -> bool:
    """Connect to (or start) Ray unless this process already has it; True when this call started it. A cluster that
    cannot be reached is a one-line ConnectionError saying what to do, instead of Ray's own."""
    if ray.is_initialized():
        return False
    check_ray_address(address)
    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    except ConnectionError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConnectionError(f"--backend ray could not reach a Ray cluster ({first}); start one with `ray start "
                              "--head`, or leave out --address to start a local one") from None
    return True


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """A ValueError at once when nothing listens at a HOST:PORT (or ray://HOST:PORT) address, instead of Ray's
    minutes of retries. None and "auto" are left to Ray."""
    if not address or address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address must be 'auto' or HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValueError(f"--address {address}: nothing answers there ({e.strerror or e}); start the cluster with "
                         "`ray start --head` or check the address") from None


def _splits(cache: dict, c: TrainConfig, put=lambda splits: splits):
    """The splits config `c` trains on, loaded once per (data, val_size) into `cache` (through `put`, e.g. ray.put)."""
    key = (c.data, c.val_size)
    if key not in cache:
        cache[key] = put(data_mod.make_splits(data_mod.load_dataset(c.data), c.val_size))
    return cache[key]
