"""The result store: one SQLite file (WAL mode), one row per trial, keyed by a hash of its resolved config.

    >>> store = Store("runs/lr.sqlite")
    >>> todo = store.claim(trials)            # marks them running; skips done, diverged and live-running ones
    >>> store.finish(results)                 # one transaction per population
    >>> rows = store.records()                # plain dicts; `frame()` gives a pandas DataFrame

A row holds the config as JSON, status (pending/running/done/diverged/failed), the per-epoch history, final
metrics, wall seconds, the mlplab version and git commit. A sweep killed at any moment leaves rows of the
populations in flight as "running" under a dead owner; the next sweep takes them over. Finished rows are never
rewritten, so nothing finished is ever lost or run twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from mlplab import __version__
from mlplab.config import LATER_FIELDS, TrainConfig

SCHEMA_VERSION = 1
FINISHED = ("done", "diverged")
METRICS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")

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
"""


_DEFAULTS = TrainConfig().to_dict()


def trial_key(config: TrainConfig) -> str:
    """A stable hash of the resolved config (the seed included). Fields added in later versions are left out while
    at their defaults, so a store written before they existed still matches the same trials."""
    d = {k: v for k, v in config.to_dict().items() if k not in LATER_FIELDS or v != _DEFAULTS[k]}
    canon = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:20]


def git_commit() -> str | None:
    """The commit of the checkout mlplab runs from, when it runs from one."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    """Whether the process that claimed a row still runs (always assumed for another host)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class Store:
    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        exists = self.path.exists() and self.path.stat().st_size > 0  # empty: another sweep is creating it
        if not exists and not create:
            raise FileNotFoundError(f"{self.path}: no such store")
        if exists:
            _check_is_store(self.path)
        elif self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=60000")
        _retry_locked(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Idempotent, and one transaction: another process sees no tables, or the tables and the format row.
        _retry_locked(lambda: self.db.executescript(
            f"BEGIN IMMEDIATE; {_SCHEMA} INSERT OR IGNORE INTO meta VALUES ('format', 'mlplab-store-{SCHEMA_VERSION}');"
            " COMMIT;"))
        self.commit = git_commit()

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
        """Mark the configs not finished (nor running in a live process) as running by us; return those."""
        owner = _owner()
        claimed = []
        with self._tx():
            for cfg in configs:
                key = trial_key(cfg)
                row = self.db.execute("SELECT status, owner FROM trials WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    status, who = row
                    if status in FINISHED or (status == "running" and who != owner and _owner_alive(who)):
                        continue
                self.db.execute(
                    "INSERT INTO trials (key, config, status, owner, sweep, version, git_commit, updated) "
                    "VALUES (?, ?, 'running', ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET status='running', "
                    "owner=excluded.owner, sweep=excluded.sweep, error=NULL, updated=excluded.updated",
                    (key, json.dumps(cfg.to_dict()), owner, sweep, __version__, self.commit, time.time()))
                claimed.append(cfg)
        return claimed

    def finish(self, results) -> None:
        """Store finished TrainResults (one transaction: a population lands whole or not at all)."""
        with self._tx():
            for r in results:
                s = r.summary()
                self.db.execute(
                    "UPDATE trials SET status=?, owner=NULL, history=?, train_loss=?, val_loss=?, val_accuracy=?, "
                    "test_loss=?, test_accuracy=?, diverged_at=?, seconds=?, population=?, device=?, version=?, "
                    "git_commit=?, updated=? WHERE key=?",
                    ("diverged" if r.diverged else "done", json.dumps(s["history"]), *[s[m] for m in METRICS],
                     json.dumps(s["diverged_at"]), s["seconds"], r.extra.get("population_size"), s["device"],
                     __version__, self.commit, time.time(), trial_key(r.config)))

    def fail(self, configs: list[TrainConfig], error: str) -> None:
        """Mark configs as failed with the error (they are retried by the next sweep)."""
        with self._tx():
            for cfg in configs:
                self.db.execute("UPDATE trials SET status='failed', owner=NULL, error=?, updated=? WHERE key=?",
                                (error, time.time(), trial_key(cfg)))

    def release(self, configs: list[TrainConfig]) -> None:
        """Give back claimed rows that were not run (e.g. after Ctrl-C)."""
        owner = _owner()
        with self._tx():
            for cfg in configs:
                self.db.execute("UPDATE trials SET status='pending', owner=NULL WHERE key=? AND status='running' "
                                "AND owner=?", (trial_key(cfg), owner))

    # -- reading ----------------------------------------------------------------------------------------------------
    def status(self, configs: list[TrainConfig]) -> dict[str, str]:
        """key -> status for the given configs (missing ones are 'pending')."""
        keys = [trial_key(c) for c in configs]
        found = dict(self.db.execute("SELECT key, status FROM trials").fetchall())
        return {k: found.get(k, "pending") for k in keys}

    def records(self, status: tuple[str, ...] | None = None) -> list[dict]:
        """One flat dict per trial: its config keys, status and final metrics (history as a list)."""
        cur = self.db.execute("SELECT * FROM trials ORDER BY rowid")
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            r = dict(zip(cols, row))
            if status and r["status"] not in status:
                continue
            cfg = json.loads(r.pop("config"))
            r["history"] = json.loads(r["history"]) if r["history"] else []
            r["diverged_at"] = json.loads(r["diverged_at"]) if r["diverged_at"] else None
            out.append({**cfg, **r})
        return out

    def frame(self, status: tuple[str, ...] | None = None):
        """The records as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.records(status))

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())


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


def _check_is_store(path: Path) -> None:
    """A clear error for a file that is not an mlplab store (nothing is written to it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    if head != b"SQLite format 3\x00":
        raise ValueError(f"{path} is not an mlplab store (not an SQLite file); give a new path or an existing store")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        tables = {r[0] for r in _retry_locked(lambda: db.execute("SELECT name FROM sqlite_master").fetchall())}
        if not tables:
            return  # a store another sweep is creating right now
        row = db.execute("SELECT value FROM meta WHERE key='format'").fetchone() if "meta" in tables else None
    except sqlite3.DatabaseError:
        row = None
    finally:
        db.close()
    if not row or not str(row[0]).startswith("mlplab-store-"):
        raise ValueError(f"{path} is an SQLite file but not an mlplab store; give a new path or an existing store")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error: writers queue on the lock instead of failing."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
