"""Run directories: resolved configs, the training loop, metrics, checkpoints, resume.

A run directory holds::

    config.json              the fully resolved config (algorithm, family, every option)
    metrics.csv              one row per meta-iteration
    events.out.tfevents.*    the same metrics for TensorBoard
    checkpoints/ckpt-NNNNNNNN.msgpack + .json   training state + its metadata and SHA-256

Checkpoints hold the whole training state pytree — params, optimiser state, RNG key,
iteration — serialised with msgpack (never pickle), so resuming continues bit-identically.
Every file is written to a temporary name, fsynced, then renamed over the old one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from adaptrl import config as cfg
from adaptrl.algos import algorithm_entry
from adaptrl.algos.base import Algorithm, State
from adaptrl.errors import UserError
from adaptrl.tasks import family_entry, make_family

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Run-level options (the algorithm's and the family's live in their own configs)."""

    seed: int = 0
    # seed of every random draw of the run
    iterations: int = 100
    # number of meta-iterations
    checkpoint_every: int = 10
    # save a checkpoint every N meta-iterations (and at the end)
    keep_checkpoints: int = 3
    # how many of the newest checkpoints to keep

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("checkpoint_every and keep_checkpoints must be >= 1")


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    algo: str
    tasks: str
    run: RunSettings
    algo_options: Any  # the algorithm's Config dataclass
    task_options: Any  # the family dataclass itself

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION, "algo": self.algo, "tasks": self.tasks,
            **cfg.to_dict(self.run), "algo_options": cfg.to_dict(self.algo_options),
            "task_options": cfg.to_dict(self.task_options),
        }

    def algorithm(self) -> Algorithm:
        return algorithm_entry(self.algo).cls(self.algo_options, self.task_options)


def _set_path(layers: dict[str, dict[str, Any]], fields: dict[str, set[str]], path: list[str],
              value: Any) -> None:
    """Route one ``--set`` to the run, ``algo`` or ``tasks`` layer."""
    if len(path) == 2 and path[0] in ("algo", "tasks"):
        layers[path[0]][path[1]] = value
        return
    if len(path) != 1:
        raise UserError(f"--set key {'.'.join(path)!r} must be KEY, algo.KEY or tasks.KEY")
    key = path[0]
    owners = [layer for layer, names in fields.items() if key in names]
    if not owners:
        valid = sorted(f"{layer}.{n}" if layer != "run" else n
                       for layer, names in fields.items() for n in names)
        raise UserError(f"unknown config key {key!r} (valid: {', '.join(valid)})")
    if len(owners) > 1:
        raise UserError(f"config key {key!r} is ambiguous: use {' or '.join(f'{o}.{key}' for o in owners)}")
    layers[owners[0]][key] = value


def resolve(algo: str, tasks: str, *, file_data: dict[str, Any] | None = None,
            sets: Sequence[str] = (), overrides: dict[str, Any] | None = None) -> ResolvedConfig:
    """Defaults < the paper's settings for (algo, family) < YAML file < ``--set`` < flags."""
    entry = algorithm_entry(algo)
    fam = family_entry(tasks)
    cls = entry.cls
    paper = dict(cls.paper_defaults.get(tasks, {}))
    run_layer: dict[str, Any] = {"iterations": paper.pop("iterations", cls.default_iterations)}
    layers = {"run": run_layer, "algo": {**entry.defaults, **paper}, "tasks": dict(fam.defaults)}
    data = dict(file_data or {})
    for name in ("algo", "tasks"):
        sub = data.pop(name, {})
        if not isinstance(sub, dict):
            raise UserError(f"config key {name!r} must be a mapping")
        layers[name].update(sub)
    layers["run"].update(data)
    fields = {
        "run": {f.name for f in dataclasses.fields(RunSettings)},
        "algo": {f.name for f in dataclasses.fields(cls.Config)},
        "tasks": {f.name for f in dataclasses.fields(fam.factory)},
    }
    for item in sets:
        path, value = cfg.parse_set(item)
        _set_path(layers, fields, path, value)
    layers["run"].update({k: v for k, v in (overrides or {}).items() if v is not None})
    for key, value in entry.defaults.items():
        if layers["algo"].get(key) != value:
            raise UserError(f"{algo} fixes algo.{key}={value!r}; choose another algorithm name")
    return ResolvedConfig(
        algo=algo, tasks=tasks, run=cfg.from_dict(RunSettings, layers["run"]),
        algo_options=cfg.from_dict(cls.Config, layers["algo"], where="algo."),
        task_options=make_family(tasks, layers["tasks"]),
    )


def config_from_json(data: Any, *, source: str) -> ResolvedConfig:
    """Rebuild a resolved config from a run's ``config.json`` with full validation."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a run config")
    if data.get("format") != FORMAT_VERSION:
        raise UserError(f"{source}: unsupported run format {data.get('format')!r}")
    data = dict(data)
    data.pop("format")
    algo, tasks = data.pop("algo", None), data.pop("tasks", None)
    if not isinstance(algo, str) or not isinstance(tasks, str):
        raise UserError(f"{source}: config names no algorithm or task family")
    entry = algorithm_entry(algo)
    algo_options = data.pop("algo_options", {})
    task_options = data.pop("task_options", {})
    return ResolvedConfig(
        algo=algo, tasks=tasks, run=cfg.from_dict(RunSettings, data),
        algo_options=cfg.from_dict(entry.cls.Config, algo_options, where="algo."),
        task_options=make_family(tasks, task_options),
    )


# ---- crash-safe files -------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: Path, *, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no {what} found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable {what} ({type(e).__name__})") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise UserError(f"{path}: malformed {what} (not valid JSON)") from None


# ---- checkpoints ------------------------------------------------------------------------
_CKPT = re.compile(r"^ckpt-(\d{8})\.json$")


def _tree_signature(tree: Any) -> list[tuple[str, tuple[int, ...], str]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(p), tuple(np.shape(x)), str(np.asarray(x).dtype))
            for p, x in leaves]


def save_checkpoint(run_dir: Path, state: State, *, keep: int) -> Path:
    """Serialise ``state`` (msgpack), then commit it with a JSON file holding its hash."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    it = int(state["iteration"])
    data = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(state)))
    base = ckpt_dir / f"ckpt-{it:08d}"
    atomic_write(base.with_suffix(".msgpack"), data)
    meta = {"iteration": it, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    atomic_write(base.with_suffix(".json"), json.dumps(meta).encode())
    for old in list_checkpoints(run_dir)[:-keep]:
        for suffix in (".json", ".msgpack"):
            with contextlib.suppress(FileNotFoundError):
                (ckpt_dir / f"ckpt-{old:08d}{suffix}").unlink()
    return base.with_suffix(".msgpack")


def list_checkpoints(run_dir: Path) -> list[int]:
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in ckpt_dir.iterdir() if (m := _CKPT.match(p.name)))


def load_checkpoint(run_dir: Path, template: State, iteration: int | None = None) -> State:
    """Load the newest (or the given) checkpoint, verified against its hash and against the
    structure, shapes and dtypes of ``template``."""
    its = list_checkpoints(run_dir)
    if not its:
        raise UserError(f"{run_dir}: no checkpoint to load")
    it = its[-1] if iteration is None else iteration
    base = run_dir / CHECKPOINT_DIR / f"ckpt-{it:08d}"
    meta = read_json(base.with_suffix(".json"), what="checkpoint metadata")
    try:
        data = base.with_suffix(".msgpack").read_bytes()
    except OSError:
        raise UserError(f"{base}.msgpack: checkpoint file is missing") from None
    if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
        earlier = [i for i in its if i < it]
        hint = f"; delete it to resume from iteration {earlier[-1]}" if earlier else ""
        raise UserError(f"{base}.msgpack: checkpoint is corrupt (hash mismatch){hint}")
    try:
        restored = serialization.msgpack_restore(data)
        state = serialization.from_state_dict(template, restored)
    except Exception:  # noqa: BLE001 - any decoding failure is a corrupt file
        raise UserError(f"{base}.msgpack: checkpoint does not decode") from None
    if _tree_signature(state) != _tree_signature(template):
        raise UserError(f"{base}.msgpack: checkpoint does not match this run's algorithm")
    return jax.tree.map(jnp.asarray, state)


# ---- metrics ----------------------------------------------------------------------------
class MetricsLog:
    """Per-iteration metrics in CSV and TensorBoard; on resume, rows at or past the resumed
    iteration (written after the last checkpoint) are dropped so nothing is duplicated."""

    def __init__(self, run_dir: Path, *, start: int):
        self.path = run_dir / METRICS_FILE
        self.pending: list[dict[str, float]] = []
        self.columns: list[str] | None = None
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) < start]
            if rows:
                self.columns = list(rows[0])
            buf = io.StringIO()
            if self.columns:
                w = csv.DictWriter(buf, self.columns)
                w.writeheader()
                w.writerows(rows)
            atomic_write(self.path, buf.getvalue().encode())
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(str(run_dir), purge_step=start, flush_secs=30)

    def add(self, row: dict[str, float]) -> None:
        self.pending.append(row)
        for k, v in row.items():
            if k != "iteration":
                self.tb.add_scalar(k, v, int(row["iteration"]))

    def flush(self) -> None:
        """Append pending rows durably (called before each checkpoint is committed)."""
        if not self.pending:
            return
        new = self.columns is None
        self.columns = self.columns or list(self.pending[0])
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            if new:
                w.writeheader()
            w.writerows(self.pending)
            f.flush()
            os.fsync(f.fileno())
        self.pending.clear()
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


# ---- training ---------------------------------------------------------------------------
class Diverged(UserError):
    """Training produced non-finite values; nothing from that iteration was saved."""


def _finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guarded_update(algorithm: Algorithm) -> Callable[[State], tuple[State, dict, jax.Array]]:
    """The jitted update, plus a flag that the new state is finite everywhere."""

    def step(state):
        new, metrics = algorithm.update(state)
        return new, metrics, _finite(new)

    return jax.jit(step)


def create_run(run_dir: Path, config: ResolvedConfig) -> None:
    if (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} already holds a run; use --resume or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG_FILE, json.dumps(config.to_json(), indent=2).encode())


def load_run(run_dir: Path) -> ResolvedConfig:
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    path = run_dir / CONFIG_FILE
    return config_from_json(read_json(path, what="run config"), source=str(path))


def train(run_dir: Path, *, resume: bool = False,
          on_iteration: Callable[[int, int, dict[str, float]], None] | None = None,
          nan_at: int | None = None) -> State:
    """Train the run in ``run_dir`` to its configured number of iterations.

    ``on_iteration(done, total, metrics)`` reports progress. ``nan_at`` (testing aid)
    poisons the state at that iteration to exercise the divergence guard.
    """
    config = load_run(run_dir)
    algorithm = config.algorithm()
    template = algorithm.init(key=jax.random.PRNGKey(config.run.seed))
    state = load_checkpoint(run_dir, template) if resume and list_checkpoints(run_dir) else template
    start = int(state["iteration"])
    log = MetricsLog(run_dir, start=start)
    step = guarded_update(algorithm)
    total = config.run.iterations
    try:
        for it in range(start, total):
            if nan_at is not None and it == nan_at:
                state = jax.tree.map(
                    lambda x: x * jnp.nan if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
            t0 = time.perf_counter()
            new_state, metrics, finite = step(state)
            metrics = {k: float(v) for k, v in metrics.items()}
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad or not bool(finite):
                what = f"metric {bad[0]!r}" if bad else "parameters"
                log.flush()
                last = list_checkpoints(run_dir)
                kept = f"checkpoint {last[-1]} kept" if last else "no checkpoint yet"
                raise Diverged(f"non-finite {what} at iteration {it}; update discarded, {kept}")
            state = new_state
            row = {"iteration": it, **metrics}
            log.add(row)
            log.tb.add_scalar("time/seconds_per_iteration", time.perf_counter() - t0, it)
            done = it + 1
            if done % config.run.checkpoint_every == 0 or done == total:
                log.flush()
                save_checkpoint(run_dir, state, keep=config.run.keep_checkpoints)
            if on_iteration:
                on_iteration(done, total, row)
    finally:
        log.close()
    return state


def iter_runs(dirs: Iterable[Path]) -> list[tuple[Path, ResolvedConfig]]:
    return [(Path(d), load_run(Path(d))) for d in dirs]
