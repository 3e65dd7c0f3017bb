"""The result store: one SQLite file (WAL mode), one row per trial, keyed by a hash of its resolved config.

    >>> store = Store("runs/lr.sqlite")
    >>> todo = store.claim(trials)            # leases them to us; skips finished ones and live leases of others
    >>> with store.heartbeat():               # keeps our leases alive while we train
    ...     store.finish(results)             # one transaction per population; only the lease holder may finish
    >>> rows = Store("runs/lr.sqlite", create=False).records()   # read-only: plain dicts; `frame()` for pandas

A row holds the config as JSON, status (pending/running/done/diverged/failed), the per-epoch history, final
metrics, wall seconds, the torch thread count, the mlplab version, numerics version and git commit. A claim is a
lease: the row names its owner (host, pid and a random token) and an expiry that the running sweep renews
(`heartbeat`). A sweep killed at any moment leaves rows of the populations in flight as "running"; the next sweep
takes them over once the lease has expired, or at once when the owner is a process on this machine that has
ended. Finished rows are never rewritten, so nothing finished is ever lost or run twice.

A sweep may also keep the reported weights of chosen trials (`finish(..., keep_weights=keys)`, read back with
`weights(key)`), for analyses that need the trained networks themselves, so that they are not trained twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import sqlite3
import stat
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

from mlplab import NUMERICS_VERSION, __version__
from mlplab.config import LATER_FIELDS, TrainConfig

SCHEMA_VERSION = 1
FINISHED = ("done", "diverged")
METRICS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
LEASE_SECONDS = 300.0  # a claim expires this long after its last renewal; a sweep renews every LEASE_SECONDS / 10
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
SIDE_FILES = ("-wal", "-shm", "-journal")  # what SQLite keeps beside a database while it is open (or after a crash)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'diverged', 'failed')),
    owner TEXT,
    sweep TEXT,
    history TEXT,
    train_loss REAL, val_loss REAL, val_accuracy REAL, test_loss REAL, test_accuracy REAL,
    diverged_at TEXT,
    seconds REAL,
    population INTEGER,
    device TEXT,
    error TEXT,
    version TEXT,
    git_commit TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status);
CREATE TABLE IF NOT EXISTS weights (key TEXT PRIMARY KEY, params BLOB NOT NULL, updated REAL NOT NULL);
"""
# Columns added after stores already existed (added to an older store when it is opened for writing).
_LATER_COLUMNS = {"lease_until": "REAL", "owner_process": "TEXT", "numerics": "INTEGER", "threads": "INTEGER"}


_DEFAULTS = TrainConfig().to_dict()


def trial_key(config: TrainConfig) -> str:
    """A stable hash of the resolved config (the seed included) and the numerics version. Fields added in later
    versions are left out while at their defaults, and numerics version 1 (the one before it was counted) is left
    out, so a store written before they existed still matches the same trials."""
    d = {k: v for k, v in config.to_dict().items() if k not in LATER_FIELDS or v != _DEFAULTS[k]}
    if NUMERICS_VERSION != 1:
        d["__numerics__"] = NUMERICS_VERSION
    canon = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:20]


def git_commit() -> str | None:
    """The commit of mlplab's own checkout, when mlplab runs from one (an editable install of its repository);
    None for an installed copy, even one that happens to sit inside some other git repository."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        if top.returncode != 0 or (Path(top.stdout.strip()) / "src" / "mlplab").resolve() != here:
            return None
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# -- who holds a lease ----------------------------------------------------------------------------------------------


def _machine() -> str:
    """This machine and PID namespace: hosts (or containers) with the same name still differ here."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(Path(path).read_text().strip() if "boot_id" in path else str(os.stat(path).st_ino))
        except OSError:
            parts.append("-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), so that a reused PID is told apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19]  # field 22 of stat; the command name in () may hold spaces


def new_owner() -> tuple[str, str]:
    """(owner, process) for a new lease holder: "host:pid:token", and "machine:pid:start time"."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{secrets.token_hex(6)}", f"{_machine()}:{pid}:{_start_time(pid) or '-'}"


def process_ended(process: str | None) -> bool:
    """True only when `process` ("machine:pid:start") is known to have ended: same machine, and its PID is gone
    or now belongs to a process that started at another time. Another machine's process is never judged."""
    if not process:
        return False
    machine, pid, start = (process.split(":") + ["", "", ""])[:3]
    if machine != _machine() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    now = _start_time(int(pid))
    return start != "-" and now is not None and now != start


class Store:
    """The store at `path`. create=True (sweeps) creates it if missing and opens it for writing; create=False
    opens an existing store read-only and never writes to it (a read-only file or folder works)."""

    def __init__(self, path: str | os.PathLike, create: bool = True, lease_seconds: float = LEASE_SECONDS):
        self.path = Path(path)
        self.readonly = not create
        self.lease_seconds = lease_seconds
        self.owner, self.process = new_owner()
        _check_not_special(self.path, reader=self.readonly)
        exists = self.path.exists() and self.path.stat().st_size > 0  # empty: another sweep is creating it
        if not exists and not create:
            raise FileNotFoundError(f"{self.path}: no such store")
        if self.readonly:
            self.db = _open_readonly(self.path)
            self.commit = None
            return
        if exists:
            _check_is_store(self.path)
        elif self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path.parent if str(self.path.parent) else ".", os.W_OK | os.X_OK) or (
                exists and not os.access(self.path, os.W_OK)):
            raise PermissionError(f"{self.path}: the store (or its folder) is not writable; a sweep needs to write "
                                  "it (`mlplab results` reads a read-only store)")
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=60000")
            _retry_locked(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Idempotent, and one transaction: another process sees no tables, or the tables and the format row.
            _retry_locked(lambda: self.db.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} INSERT OR IGNORE INTO meta VALUES ('format', "
                f"'mlplab-store-{SCHEMA_VERSION}'); COMMIT;"))
            self._add_later_columns()
        except sqlite3.DatabaseError as e:
            raise ValueError(describe_database_error(self.path, e)) from None
        self.commit = git_commit()

    def _add_later_columns(self) -> None:
        with self._tx():
            have = {r[1] for r in self.db.execute("PRAGMA table_info(trials)")}
            for name, kind in _LATER_COLUMNS.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE trials ADD COLUMN {name} {kind}")

    def close(self):
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _tx(self):
        return _Transaction(self.db)

    # -- claiming and finishing ------------------------------------------------------------------------------------
    def claim(self, configs: list[TrainConfig], sweep: str | None = None) -> list[TrainConfig]:
        """Lease the configs that are not finished, nor leased by another live holder, to us; return those."""
        now = time.time()
        claimed = []
        with self._tx():
            for cfg in configs:
                key = trial_key(cfg)
                row = self.db.execute("SELECT status, owner, lease_until, owner_process FROM trials WHERE key = ?",
                                      (key,)).fetchone()
                if row is not None:
                    status, who, until, process = row
                    if status in FINISHED or (status == "running" and who != self.owner
                                              and _lease_live(until, process, now)):
                        continue
                self.db.execute(
                    "INSERT INTO trials (key, config, status, owner, owner_process, lease_until, sweep, version, "
                    "numerics, git_commit, updated) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET status='running', owner=excluded.owner, "
                    "owner_process=excluded.owner_process, lease_until=excluded.lease_until, sweep=excluded.sweep, "
                    "error=NULL, updated=excluded.updated",
                    (key, json.dumps(cfg.to_dict()), self.owner, self.process, now + self.lease_seconds, sweep,
                     __version__, NUMERICS_VERSION, self.commit, now))
                claimed.append(cfg)
        return claimed

    def renew(self) -> int:
        """Extend every lease we hold by `lease_seconds` from now; returns how many rows we still hold."""
        with self._tx():
            return self.db.execute("UPDATE trials SET lease_until=? WHERE owner=? AND status='running'",
                                   (time.time() + self.lease_seconds, self.owner)).rowcount

    @contextlib.contextmanager
    def heartbeat(self, every: float | None = None):
        """Renew our leases every `every` seconds (default lease_seconds / 10) from a background thread, on its
        own connection, while the block runs (training holds the main thread for minutes)."""
        every = self.lease_seconds / 10 if every is None else every
        stop = threading.Event()

        def beat():
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            try:
                while not stop.wait(every):
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("UPDATE trials SET lease_until=? WHERE owner=? AND status='running'",
                                   (time.time() + self.lease_seconds, self.owner))
            finally:
                db.close()

        thread = threading.Thread(target=beat, name="mlplab-store-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def finish(self, results, threads: int | None = None, keep_weights: frozenset[str] = frozenset()) -> int:
        """Store finished TrainResults (one transaction: a population lands whole or not at all). Only rows whose
        lease we still hold are written; returns how many were (fewer: another sweep took a lease over). The
        reported weights of trials whose key is in `keep_weights` are stored too (see `weights`)."""
        written = 0
        with self._tx():
            for r in results:
                s = r.summary()
                key = trial_key(r.config)
                mine = self.db.execute(
                    "UPDATE trials SET status=?, owner=NULL, owner_process=NULL, lease_until=NULL, history=?, "
                    "train_loss=?, val_loss=?, val_accuracy=?, test_loss=?, test_accuracy=?, diverged_at=?, "
                    "seconds=?, population=?, device=?, threads=?, version=?, numerics=?, git_commit=?, updated=? "
                    "WHERE key=? AND owner=? AND status='running'",
                    ("diverged" if r.diverged else "done", json.dumps(s["history"]), *[s[m] for m in METRICS],
                     json.dumps(s["diverged_at"]), s["seconds"], r.extra.get("population_size"), s["device"],
                     threads, __version__, NUMERICS_VERSION, self.commit, time.time(), key,
                     self.owner)).rowcount
                written += mine
                if mine and key in keep_weights and r.params:
                    from mlplab.checkpoint import params_to_bytes

                    self.db.execute("INSERT OR REPLACE INTO weights VALUES (?, ?, ?)",
                                    (key, params_to_bytes(r.params), time.time()))
        return written

    def fail(self, configs: list[TrainConfig], error: str) -> int:
        """Mark configs we hold as failed with the error (they are retried by the next sweep); returns how many."""
        with self._tx():
            return sum(self.db.execute(
                "UPDATE trials SET status='failed', owner=NULL, owner_process=NULL, lease_until=NULL, error=?, "
                "updated=? WHERE key=? AND owner=? AND status='running'",
                (error, time.time(), trial_key(cfg), self.owner)).rowcount for cfg in configs)

    def release(self, configs: list[TrainConfig]) -> None:
        """Give back claimed rows that were not run (e.g. after Ctrl-C)."""
        with self._tx():
            for cfg in configs:
                self.db.execute("UPDATE trials SET status='pending', owner=NULL, owner_process=NULL, "
                                "lease_until=NULL WHERE key=? AND status='running' AND owner=?",
                                (trial_key(cfg), self.owner))

    # -- reading ----------------------------------------------------------------------------------------------------
    def status(self, configs: list[TrainConfig]) -> dict[str, str]:
        """key -> status for the given configs (missing ones are 'pending')."""
        keys = [trial_key(c) for c in configs]
        found = dict(self.db.execute("SELECT key, status FROM trials").fetchall())
        return {k: found.get(k, "pending") for k in keys}

    def held_elsewhere(self, configs: list[TrainConfig]) -> list[TrainConfig]:
        """The configs that another live lease holder is running now."""
        now = time.time()
        rows = {k: (o, u, p) for k, o, u, p in self.db.execute(
            "SELECT key, owner, lease_until, owner_process FROM trials WHERE status='running'")}
        out = []
        for c in configs:
            row = rows.get(trial_key(c))
            if row is not None and row[0] != self.owner and _lease_live(row[1], row[2], now):
                out.append(c)
        return out

    def records(self, status: tuple[str, ...] | None = None) -> list[dict]:
        """One flat dict per trial: its config keys, status and final metrics (history as a list)."""
        cur = self.db.execute("SELECT * FROM trials ORDER BY rowid")
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            r = dict(zip(cols, row))
            for name in _LATER_COLUMNS:  # an older store read without writing: the columns it lacks are empty
                r.setdefault(name, None)
            if status and r["status"] not in status:
                continue
            cfg = json.loads(r.pop("config"))
            r["history"] = json.loads(r["history"]) if r["history"] else []
            r["diverged_at"] = json.loads(r["diverged_at"]) if r["diverged_at"] else None
            out.append({**cfg, **r})
        return out

    def weights(self, key: str) -> dict | None:
        """The reported weights kept for trial `key` ({name: tensor (1, ...)}, on the CPU), or None when none were
        kept (not asked for, not finished, or a store older than kept weights)."""
        from mlplab.checkpoint import params_from_bytes  # torch: loaded only when weights are read

        try:
            row = self.db.execute("SELECT params FROM weights WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:  # a store written before weights were kept, opened read-only
            return None
        return None if row is None else params_from_bytes(row[0])

    def frame(self, status: tuple[str, ...] | None = None):
        """The records as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.records(status))

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())


def shown_status(record: dict, now: float) -> str:
    """A record's status as `mlplab results` shows it: "stale" for a running trial whose lease has expired or whose
    holder is a process on this machine that has ended (the next sweep takes it over), else the stored status."""
    if record["status"] == "running" and not _lease_live(record.get("lease_until"), record.get("owner_process"), now):
        return "stale"
    return record["status"]


def _lease_live(until: float | None, process: str | None, now: float) -> bool:
    """Whether a running row's lease still holds: not expired, and its holder not known to have ended."""
    return until is not None and until > now and not process_ended(process)


def describe_database_error(path: Path, e: sqlite3.DatabaseError) -> str:
    """One true sentence for an SQLite error on the store at `path`."""
    text = str(e)
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return (f"{path} is damaged ({text}); the rows that are still readable may be saved with "
                f"`sqlite3 {path} .recover`")
    if "readonly" in text or "read-only" in text:
        return f"{path} is read-only ({text}); a sweep needs to write the store"
    if "unable to open" in text:
        return f"{path}: cannot open the store ({text}); check the file and its folder"
    return f"{path}: {text}"


def _check_not_special(path: Path, reader: bool = False) -> None:
    """A store is a regular file: refuse a device, FIFO, socket or folder at that path (nothing is opened). A reader
    given a folder is told the stores it holds; a writer, a file name to create there."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        fix = _stores_in(path) if reader else f"give the store's file, e.g. {path / 'runs.sqlite'}"
        raise IsADirectoryError(f"{path} is a folder; {fix}")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a device, FIFO or socket); give a store file")


def _stores_in(folder: Path, most: int = 10) -> str:
    """What to give instead of `folder`: the SQLite files named *.sqlite it holds, or that it holds none."""
    found = sorted(str(p) for p in folder.glob("*.sqlite") if _starts_with(p, SQLITE_HEADER))
    if not found:
        return "it holds no *.sqlite store; give a store's file (one that `mlplab sweep` or `mlplab study` wrote)"
    more = f" and {len(found) - most} more" if len(found) > most else ""
    return f"give one of the stores it holds: {', '.join(found[:most])}{more}"


def _starts_with(path: Path, head: bytes) -> bool:
    """Whether `path` is a regular file that begins with `head` (False when it cannot be read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return f.read(len(head)) == head
    except OSError:
        return False


def _open_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing store for reading only: no WAL switch, no schema, nothing written."""
    db = _check_is_store(path, keep=True)
    if db is None:
        raise ValueError(f"{path}: the store is being created by another process right now; try again in a moment")
    return db


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to the SQLite file at `path`. A WAL store in a folder we cannot write (where SQLite
    cannot create its index file) is opened as an immutable snapshot instead.

    A WAL database read through `mode=ro` makes SQLite create its -wal and -shm files, and only a read-write
    connection removes them on close. So when no other connection has the store open (none of its side files
    exist) and we may write there, the connection is read-write with `query_only` on: SQLite refuses every write
    through it, and closing it (the last connection) removes the side files it made, leaving the folder as it was.
    Side files that were there before (a sweep running now, or one killed) are left to their owner."""
    uri = "file:" + urllib.parse.quote(str(path.resolve()))
    last: sqlite3.DatabaseError | None = None
    tidy = ("?mode=rw",) if _may_tidy(path) else ()
    for extra in (*tidy, "?mode=ro", "?mode=ro&immutable=1"):
        db = sqlite3.connect(uri + extra, uri=True, timeout=60, isolation_level=None)
        try:
            if extra == "?mode=rw":
                db.execute("PRAGMA query_only=ON")
            _retry_locked(lambda db=db: db.execute("SELECT name FROM sqlite_master").fetchall())
            return db
        except sqlite3.DatabaseError as e:
            db.close()
            last = e
            if not (isinstance(e, sqlite3.OperationalError) and ("unable to open" in str(e) or "readonly" in str(e))):
                break
    raise ValueError(describe_database_error(path, last))


def _may_tidy(path: Path) -> bool:
    """Whether a reader may open `path` read-write (query_only) so that SQLite removes its side files on close:
    no side file exists (no other connection, nothing to recover) and the file and its folder are writable."""
    folder = path.parent if str(path.parent) else Path(".")
    return (not any(Path(f"{path}{s}").exists() for s in SIDE_FILES) and os.access(path, os.W_OK)
            and os.access(folder, os.W_OK | os.X_OK))


def _retry_locked(fn, seconds: float = 60.0):
    """Run fn, retrying while another process holds the lock (switching to WAL does not wait by itself)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _check_is_store(path: Path, keep: bool = False) -> sqlite3.Connection | None:
    """A clear error for a file that is not an mlplab store (nothing is written to it). With keep=True (a reader,
    which can only be given an existing store), returns the read-only connection (None while another process is
    creating the store's tables)."""
    fix = "give an existing store" if keep else "give a new path or an existing store"
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    if head != SQLITE_HEADER:
        raise ValueError(f"{path} is not an mlplab store (not an SQLite file); {fix}")
    db = _connect_ro(path)
    try:
        tables = {r[0] for r in _retry_locked(lambda: db.execute("SELECT name FROM sqlite_master").fetchall())}
        if not tables:
            db.close()
            return None  # a store another sweep is creating right now
        row = db.execute("SELECT value FROM meta WHERE key='format'").fetchone() if "meta" in tables else None
    except sqlite3.DatabaseError as e:
        db.close()
        raise ValueError(describe_database_error(path, e)) from None
    if not row or not str(row[0]).startswith("mlplab-store-") or "trials" not in tables:
        db.close()
        raise ValueError(f"{path} is an SQLite file but not an mlplab store; {fix}")
    if keep:
        return db
    db.close()
    return None


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error: writers queue on the lock instead of failing."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
