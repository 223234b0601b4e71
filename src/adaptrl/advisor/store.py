"""The results store: every finished training run and every meta-test, in one local SQLite
file (no server).

Run directories stay the source of truth: a finished run leaves ``summary.json`` (budget:
environment steps, wall time) and each meta-test of it ``evals/*.json`` (the harness's
result) in its directory, and ``adaptrl store rebuild DIR...`` rebuilds the store from
them. The store is a fast index over them that the advisor fits on.

Safety: the database runs in WAL mode with a busy timeout, so several processes (a sweep's
trials, a training run beside an ``advise``) write at once; every write is one transaction,
so a kill leaves the store as it was before or after it, never half-written. A rebuild
writes a new file beside the old one and renames it over it.

Where: ``$ADAPTRL_STORE`` if set (``off`` records nothing), else
``~/.local/share/adaptrl/results.sqlite``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adaptrl.errors import UserError

STORE_ENV = "ADAPTRL_STORE"
SCHEMA_VERSION = 1
#: seconds a writer waits for another one's transaction before giving up
BUSY_TIMEOUT_S = 60.0
SUMMARY_FILE = "summary.json"
EVALS_DIR = "evals"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_dir TEXT PRIMARY KEY,      -- absolute path of the run directory
    algo TEXT NOT NULL,
    tasks TEXT NOT NULL,           -- registered family name
    family_key TEXT NOT NULL,      -- hash of (tasks, task options)
    config TEXT NOT NULL,          -- the run's resolved config.json
    seed INTEGER NOT NULL,
    iterations INTEGER NOT NULL,
    env_steps INTEGER,             -- environment steps (or labelled points) of training
    wall_s REAL,                   -- wall time of training, all sittings
    final_metrics TEXT NOT NULL,   -- the last metrics.csv row
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS evals (
    key TEXT PRIMARY KEY,          -- hash of the result: one row per distinct meta-test
    run_dirs TEXT NOT NULL,        -- JSON list of the runs scored (empty: a reference)
    algo TEXT NOT NULL,            -- algorithm, or the reference strategy's name
    tasks TEXT NOT NULL,
    family_key TEXT NOT NULL,
    family TEXT NOT NULL,          -- the family's options (JSON)
    split TEXT NOT NULL,
    num_tasks INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    measure TEXT NOT NULL,
    score REAL,                    -- the curve's last point (mean)
    result TEXT NOT NULL,          -- the harness's result (JSON)
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS families (
    family_key TEXT PRIMARY KEY,
    tasks TEXT NOT NULL,
    family TEXT NOT NULL,
    features TEXT NOT NULL         -- JSON of adaptrl.advisor.features.family_features
);
"""


def default_path() -> Path | None:
    """The store's path, or None when recording is off (``ADAPTRL_STORE=off``)."""
    raw = os.environ.get(STORE_ENV, "").strip()
    if raw.lower() == "off":
        return None
    if raw:
        return Path(raw).expanduser()
    return Path.home() / ".local" / "share" / "adaptrl" / "results.sqlite"


def family_key(tasks: str, options: dict[str, Any]) -> str:
    """The identity of a family variant: its name and its options (``split_seed`` aside:
    it changes only which held-out tasks are drawn)."""
    opts = {k: v for k, v in options.items() if k != "split_seed"}
    raw = json.dumps([tasks, opts], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Store:
    """A connection to the results store at ``path`` (created if missing)."""

    def __init__(self, path: Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserError(f"{self.path}: no results store (record runs first, or "
                            "`adaptrl store rebuild DIR...`)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            with self.transaction():
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    self.db.execute(stmt)
                row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self.db.execute("INSERT INTO meta VALUES ('schema', ?)",
                                    (str(SCHEMA_VERSION),))
                elif row[0] != str(SCHEMA_VERSION):
                    raise UserError(f"{self.path}: results store of schema {row[0]!r}, "
                                    f"this adaptrl reads {SCHEMA_VERSION}; rebuild it")
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a readable results store ({e})") from None
        except OSError as e:
            raise UserError(f"{self.path}: cannot open the results store "
                            f"({e.strerror or type(e).__name__})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting up
        to the busy timeout for another writer), and an exception rolls everything back."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- writes ----------------------------------------------------------------------
    def add_run(self, row: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (row["run_dir"], row["algo"], row["tasks"],
                 family_key(row["tasks"], row["config"]["task_options"]),
                 json.dumps(row["config"]), row["seed"], row["iterations"], row["env_steps"],
                 row["wall_s"], json.dumps(row["final_metrics"]), time.time()))

    def add_eval(self, result: dict[str, Any], family_options: dict[str, Any], *,
                 seed: int = 0) -> str:
        """Record one meta-test result (the harness's dict; evaluation ``seed``); returns
        its key. The same result recorded twice is one row."""
        from adaptrl.evaluation.harness import jsonable

        result = jsonable(result)
        key = _hash({"result": result, "family": family_options, "seed": seed})
        run_dirs = [str(Path(c["run"]).resolve()) for c in result.get("checkpoints") or []]
        curve = result["curve"]
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO evals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, json.dumps(run_dirs), result["algo"], result["tasks"],
                 family_key(result["tasks"], family_options), json.dumps(family_options,
                                                                          default=str),
                 result.get("split", "test"), int(result["num_tasks"]),
                 seed, result.get("measure", "return"),
                 curve[-1]["mean"] if curve else None, json.dumps(result, allow_nan=False),
                 time.time()))
        return key

    def set_features(self, key: str, tasks: str, options: dict[str, Any],
                     features: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO families VALUES (?,?,?,?)",
                       (key, tasks, json.dumps(options, default=str), json.dumps(features)))

    # ---- reads -----------------------------------------------------------------------
    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        try:
            cur = self.db.execute(sql, tuple(args))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a readable results store ({e})") from None

    def runs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM runs ORDER BY run_dir")

    def evals(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM evals ORDER BY recorded_at, key")

    def features(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT features FROM families WHERE family_key=?", (key,))
        return json.loads(rows[0]["features"]) if rows else None

    def counts(self) -> dict[str, int]:
        return {t: self._rows(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]
                for t in ("runs", "evals", "families")}


def open_store(path: Path | None = None, *, create: bool = True) -> Store:
    """The store at ``path`` (default :func:`default_path`)."""
    path = path or default_path()
    if path is None:
        raise UserError(f"{STORE_ENV}=off: no results store")
    return Store(path, create=create)


# ---- the hooks: called by the training loop and the meta-test harness -----------------
def _warn(what: str, e: BaseException) -> None:
    print(f"warning: results store: {what} not recorded ({type(e).__name__}: {e})",
          file=sys.stderr)


def run_summary(run_dir: Path, config: Any, wall_s: float | None) -> dict[str, Any]:
    """The store row of a finished run, from its directory (and this sitting's time)."""
    from adaptrl.advisor.features import env_steps
    from adaptrl.runs import read_json, read_metrics

    path = run_dir / SUMMARY_FILE
    earlier = read_json(path, what="run summary") if path.is_file() else {}
    metrics = read_metrics(run_dir)
    total_wall = wall_s if wall_s is not None else earlier.get("wall_s")
    if wall_s is not None and earlier.get("iterations", 0) and \
            earlier.get("wall_s") is not None and earlier["iterations"] < config.run.iterations:
        total_wall = earlier["wall_s"] + wall_s  # a resumed run: add this sitting
    return {"run_dir": str(run_dir.resolve()), "algo": config.algo, "tasks": config.tasks,
            "config": config.to_json(), "seed": config.run.seed,
            "iterations": config.run.iterations, "env_steps": env_steps(config),
            "wall_s": total_wall, "final_metrics": metrics[-1] if metrics else {}}


def record_run(run_dir: Path, config: Any, *, wall_s: float) -> None:
    """Write ``summary.json`` into the finished run's directory (atomically) and record
    the run in the store. A store that cannot be written is a warning, never an error:
    the run directory holds everything, and a rebuild recovers it."""
    from adaptrl.runs import atomic_write

    try:
        row = run_summary(run_dir, config, wall_s)
        atomic_write(run_dir / SUMMARY_FILE, json.dumps(
            {k: row[k] for k in ("env_steps", "wall_s", "iterations")}).encode())
    except (OSError, UserError) as e:
        _warn(f"run {run_dir}", e)
        return
    path = default_path()
    if path is None:
        return
    try:
        with Store(path) as store:
            store.add_run(row)
    except (OSError, UserError, sqlite3.Error) as e:
        _warn(f"run {run_dir}", e)


def record_eval(result: dict[str, Any], family: Any, run_dirs: Iterable[Path] = (), *,
                seed: int = 0) -> None:
    """Write a meta-test ``result`` of ``family`` (evaluation ``seed``) into each scored
    run's ``evals/`` (atomically) and record it in the store; failures are warnings (see
    :func:`record_run`)."""
    from adaptrl import config as cfg
    from adaptrl.evaluation.harness import jsonable
    from adaptrl.runs import atomic_write

    options = jsonable(cfg.to_dict(family))
    record = {"result": jsonable(result), "family": options, "seed": seed}
    data = json.dumps(record, allow_nan=False, default=str).encode()
    name = f"{_hash(record)}.json"
    for d in run_dirs:
        try:
            (Path(d) / EVALS_DIR).mkdir(exist_ok=True)
            atomic_write(Path(d) / EVALS_DIR / name, data)
        except OSError as e:
            _warn(f"meta-test of {d}", e)
    path = default_path()
    if path is None:
        return
    try:
        with Store(path) as store:
            store.add_eval(result, options, seed=seed)
    except (OSError, UserError, sqlite3.Error) as e:
        _warn("meta-test", e)


# ---- rebuild ---------------------------------------------------------------------------
def _run_dirs(dirs: Iterable[Path]) -> Iterator[Path]:
    """Every run directory at or under each of ``dirs`` (a directory with config.json)."""
    from adaptrl.runs import CONFIG_FILE

    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise UserError(f"{d}: no such directory")
        if (d / CONFIG_FILE).is_file():
            yield d
        else:
            for cfg_file in sorted(d.rglob(CONFIG_FILE)):
                yield cfg_file.parent


def read_run_dir(d: Path) -> tuple[dict[str, Any] | None, list[tuple[dict, dict, int]]]:
    """What run directory ``d`` holds for the store: its run row (when it finished) and
    its meta-test records ``(result, family options, seed)``."""
    from adaptrl import runs

    config = runs.load_run(d)
    done = runs.list_checkpoints(d)
    row = None
    if done and done[-1] >= config.run.iterations and (d / SUMMARY_FILE).is_file():
        row = run_summary(d, config, None)
    evals = []
    edir = d / EVALS_DIR
    for f in sorted(edir.glob("*.json")) if edir.is_dir() else []:
        data = runs.read_json(f, what="meta-test record")
        if not isinstance(data, dict) or "result" not in data or "family" not in data:
            raise UserError(f"{f}: not a meta-test record")
        evals.append((data["result"], data["family"], int(data.get("seed", 0))))
    return row, evals


def ingest(store: Store, d: Path) -> None:
    """Record run directory ``d`` (its run and meta-tests) in ``store``."""
    row, evals = read_run_dir(d)
    if row is not None:
        store.add_run(row)
    for result, fam, seed in evals:
        store.add_eval(result, fam, seed=seed)


def rebuild(path: Path, dirs: Iterable[Path]) -> dict[str, int]:
    """Rebuild the store at ``path`` from run directories: a new file is written beside
    it and renamed over it only when complete. Returns the counts of what it holds."""
    rows, evals = [], []
    for d in _run_dirs(dirs):
        row, ev = read_run_dir(d)
        rows += [row] if row is not None else []
        evals += ev
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.rebuild-{os.getpid()}")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    try:
        with Store(tmp) as store:
            old = None
            if path.is_file():
                with contextlib.suppress(UserError, sqlite3.Error):
                    old = Store(path, create=False)
            if old is not None:  # keep measured family features: they are costly
                with contextlib.suppress(UserError, sqlite3.Error):
                    for r in old._rows("SELECT * FROM families"):
                        store.set_features(r["family_key"], r["tasks"],
                                           json.loads(r["family"]), json.loads(r["features"]))
                old.close()
            for row in rows:
                store.add_run(row)
            for result, fam, seed in evals:
                store.add_eval(result, fam, seed=seed)
            counts = store.counts()
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.db.execute("PRAGMA journal_mode = DELETE")
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
    finally:
        for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            p.unlink(missing_ok=True)
    return counts
