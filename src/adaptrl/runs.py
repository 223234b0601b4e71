"""Run directories: resolved configs, the training loop, metrics, checkpoints, resume.

A run directory holds::

    config.json              the fully resolved config (algorithm, family, every option)
    metrics.csv              one row per meta-iteration
    events.out.tfevents.*    the same metrics for TensorBoard
    checkpoints/ckpt-NNNNNNNN.msgpack + .json   training state + its metadata and SHA-256

Checkpoints hold the whole training state pytree — params, optimiser state, every RNG key,
the iteration, and whatever else an algorithm keeps in its state (replay buffers, value
networks) — serialised with msgpack (never pickle), so resuming continues bit-identically.
Task sampling has no state of its own: meta-train tasks are drawn from the state's key (or
from a fixed pool derived from ``split_seed``), so restoring the key restores the sampler.
Each checkpoint's JSON file holds its SHA-256, its size and the resolved config it belongs to.

Crash safety: config and checkpoint files are written to a temporary name, fsynced, then
renamed over the old one. ``metrics.csv`` is appended and fsynced before each checkpoint
commits; on resume it is rewritten (atomically) to the rows before the resumed iteration,
which drops both rows logged after the last checkpoint and a line cut short by a kill.
TensorBoard events after the resumed iteration are hidden with ``purge_step``.

Fault injection (testing aid): with ``ADAPTRL_FAULT_NAN_AT=N`` in the environment, the
update at iteration ``N`` returns a NaN loss and NaN parameters, as a diverged update would.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from adaptrl import config as cfg
from adaptrl.algos import algorithm_entry
from adaptrl.algos.base import Algorithm, State
from adaptrl.errors import UserError
from adaptrl.sampling.base import SamplerSettings, make_sampler
from adaptrl.tasks import family_entry, make_family

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
FAULT_ENV = "ADAPTRL_FAULT_NAN_AT"
#: run files larger than this are refused before they are read
MAX_JSON_BYTES = 10 * 2**20


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
        if self.keep_checkpoints > 10_000:
            raise ValueError("keep_checkpoints must be <= 10000")
        if not 0 <= self.seed < 2**31:
            raise ValueError("seed must be in [0, 2**31)")


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    algo: str
    tasks: str
    run: RunSettings
    algo_options: Any  # the algorithm's Config dataclass
    task_options: Any  # the family dataclass itself
    sampler: SamplerSettings = SamplerSettings()  # where host environments step (not identity)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION, "algo": self.algo, "tasks": self.tasks,
            **cfg.to_dict(self.run), "algo_options": cfg.to_dict(self.algo_options),
            "task_options": cfg.to_dict(self.task_options), "sampler": cfg.to_dict(self.sampler),
        }

    def algorithm(self) -> Algorithm:
        sampler = make_sampler(self.task_options, self.sampler) \
            if self.task_options.kind == "rl" else None
        return algorithm_entry(self.algo).cls(self.algo_options, self.task_options,
                                              sampler=sampler)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed by this config (the schedule —
        iterations, checkpoint cadence — may differ)."""
        full = self.to_json()
        return {k: full[k] for k in ("algo", "tasks", "seed", "algo_options", "task_options")}


def _set_path(layers: dict[str, dict[str, Any]], fields: dict[str, set[str]], path: list[str],
              value: Any) -> None:
    """Route one ``--set`` to the run, ``algo``, ``tasks`` or ``sampler`` layer."""
    if len(path) == 2 and path[0] in ("algo", "tasks", "sampler"):
        layers[path[0]][path[1]] = value
        return
    if len(path) != 1:
        raise UserError(f"--set key {cfg.short('.'.join(path))} must be KEY, algo.KEY or tasks.KEY")
    key = path[0]
    owners = [layer for layer, names in fields.items() if key in names]
    if not owners:
        valid = sorted(f"{layer}.{n}" if layer != "run" else n
                       for layer, names in fields.items() for n in names)
        raise UserError(f"unknown config key {cfg.short(key)} (valid: {', '.join(valid)})")
    if len(owners) > 1:
        raise UserError(f"config key {key!r} is ambiguous: use {' or '.join(f'{o}.{key}' for o in owners)}")
    layers[owners[0]][key] = value


ANNEAL = "lr_anneal_iterations"  # an algorithm option: the step size reaches 0 after it


def resolve(algo: str, tasks: str, *, file_data: dict[str, Any] | None = None,
            sets: Sequence[str] = (), overrides: dict[str, Any] | None = None) -> ResolvedConfig:
    """Defaults < the paper's settings for (algo, family) < YAML file < ``--set`` < flags."""
    entry = algorithm_entry(algo)
    fam = family_entry(tasks)
    cls = entry.cls
    paper = dict(cls.paper_defaults.get(tasks, {}))
    run_layer: dict[str, Any] = {"iterations": paper.pop("iterations", cls.default_iterations)}
    # a paper step size that anneals to 0 over the run follows the run's length, unless the
    # user sets its schedule (below)
    follow = paper.get(ANNEAL) == run_layer["iterations"]
    if follow:
        del paper[ANNEAL]
    layers = {"run": run_layer, "algo": {**entry.defaults, **paper}, "tasks": dict(fam.defaults),
              "sampler": {}}
    data = dict(file_data or {})
    for name in ("algo", "tasks", "sampler"):
        sub = data.pop(name, {})
        if not isinstance(sub, dict):
            raise UserError(f"config key {name!r} must be a mapping")
        layers[name].update(sub)
    layers["run"].update(data)
    fields = {
        "run": {f.name for f in dataclasses.fields(RunSettings)},
        "algo": {f.name for f in dataclasses.fields(cls.Config)},
        "tasks": {f.name for f in dataclasses.fields(cast(Any, fam.factory))},
    }
    for item in sets:
        path, value = cfg.parse_set(item)
        _set_path(layers, fields, path, value)
    layers["run"].update({k: v for k, v in (overrides or {}).items() if v is not None})
    if follow and ANNEAL not in layers["algo"]:
        layers["algo"][ANNEAL] = layers["run"]["iterations"]
    for key, value in entry.defaults.items():
        if layers["algo"].get(key) != value:
            raise UserError(f"{algo} fixes algo.{key}={value!r}; choose another algorithm name")
    return ResolvedConfig(
        algo=algo, tasks=tasks, run=cfg.from_dict(RunSettings, layers["run"]),
        algo_options=cfg.from_dict(cls.Config, layers["algo"], where="algo."),
        task_options=make_family(tasks, layers["tasks"]),
        sampler=cfg.from_dict(SamplerSettings, layers["sampler"], where="sampler."),
    )


def config_from_json(data: Any, *, source: str) -> ResolvedConfig:
    """Rebuild a resolved config from a run's ``config.json`` with full validation."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a run config")
    if data.get("format") != FORMAT_VERSION or isinstance(data.get("format"), bool):
        raise UserError(f"{source}: unsupported run format {cfg.short(data.get('format'))}")
    data = dict(data)
    data.pop("format")
    algo, tasks = data.pop("algo", None), data.pop("tasks", None)
    if not isinstance(algo, str) or not isinstance(tasks, str):
        raise UserError(f"{source}: config names no algorithm or task family")
    entry = algorithm_entry(algo)
    family_entry(tasks)
    algo_options = data.pop("algo_options", {})
    task_options = data.pop("task_options", {})
    sampler = data.pop("sampler", {})
    for name, sub in (("algo_options", algo_options), ("task_options", task_options),
                      ("sampler", sampler)):
        if not isinstance(sub, dict):
            raise UserError(f"{source}: {name} must be a mapping")
    for key, value in entry.defaults.items():
        if algo_options.get(key, value) != value:
            raise UserError(f"{source}: {algo} fixes algo.{key}={value!r}")
    try:
        return ResolvedConfig(
            algo=algo, tasks=tasks, run=cfg.from_dict(RunSettings, data),
            algo_options=cfg.from_dict(entry.cls.Config, algo_options, where="algo."),
            task_options=make_family(tasks, task_options),
            sampler=cfg.from_dict(SamplerSettings, sampler, where="sampler."),
        )
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


# ---- crash-safe files -------------------------------------------------------------------
_TMP = re.compile(r"^\..+\.tmp-\d+$")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary files left by a process killed mid-write (the run is locked, so no
    live writer owns them)."""
    for d in (run_dir, run_dir / CHECKPOINT_DIR):
        if d.is_dir():
            for p in d.iterdir():
                if _TMP.match(p.name):
                    with contextlib.suppress(OSError):
                        p.unlink()


def read_json(path: Path, *, what: str) -> Any:
    """Parse a small JSON run file; every failure is a one-line :class:`UserError`."""
    try:
        with open(path, "rb") as f:  # bounded read: the path may be a FIFO or /dev/zero
            raw = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no {what} found") from None
    except OSError as e:
        raise UserError(f"{path}: unreadable {what} ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise UserError(f"{path}: {what} is too large")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise UserError(f"{path}: malformed {what} (not valid JSON)") from None


@contextlib.contextmanager
def _locked(run_dir: Path):
    """Hold an exclusive lock on the run while training it (released by the OS on a kill)."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{run_dir}: another process is training this run") from None
        yield
    finally:
        os.close(fd)


# ---- checkpoints ------------------------------------------------------------------------
_CKPT = re.compile(r"^ckpt-(\d{8})\.json$")
_CKPT_DATA = re.compile(r"^ckpt-(\d{8})\.msgpack$")


def _dtype(x: Any) -> str:
    return str(x.dtype) if isinstance(x, np.ndarray | jax.Array) else str(np.asarray(x).dtype)


def _tree_signature(tree: Any) -> list[tuple[str, tuple[int, ...], str]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(p), tuple(np.shape(x)), _dtype(x)) for p, x in leaves]


def save_checkpoint(run_dir: Path, state: State, *, keep: int,
                    config: ResolvedConfig | None = None) -> Path:
    """Serialise ``state`` (msgpack), then commit it with a JSON file holding its hash and
    the config it belongs to; then delete all but the newest ``keep`` checkpoints.

    The JSON file is the commit record: it is written (atomically) only after the data file
    is durable, and :func:`list_checkpoints` only sees checkpoints that have one."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    it = int(state["iteration"])
    data = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(state)))
    base = ckpt_dir / f"ckpt-{it:08d}"
    atomic_write(base.with_suffix(".msgpack"), data)
    meta: dict[str, Any] = {"format": FORMAT_VERSION, "iteration": it,
                            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if config is not None:
        meta["config"] = config.to_json()
    atomic_write(base.with_suffix(".json"), json.dumps(meta).encode())
    prune_checkpoints(run_dir, keep=keep)
    return base.with_suffix(".msgpack")


def prune_checkpoints(run_dir: Path, *, keep: int) -> None:
    """Delete all but the newest ``keep`` committed checkpoints, and data files that a kill
    left without a commit record. Commit records go first, so a kill in here never leaves
    a record whose data file is gone."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not ckpt_dir.is_dir():
        return
    kept = set(list_checkpoints(run_dir)[-keep:])
    for p in ckpt_dir.iterdir():  # older commit records first, then data files
        m = _CKPT.match(p.name)
        if m and int(m.group(1)) not in kept:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    for p in ckpt_dir.iterdir():  # includes data files orphaned by a kill mid-save
        m = _CKPT_DATA.match(p.name)
        if m and int(m.group(1)) not in kept:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def list_checkpoints(run_dir: Path) -> list[int]:
    """Iterations of the committed checkpoints of a run, oldest first."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in ckpt_dir.iterdir() if (m := _CKPT.match(p.name)))


def _nbytes(tree: Any) -> int:
    return sum(int(np.prod(np.shape(x))) * np.dtype(_dtype(x)).itemsize
               for x in jax.tree.leaves(tree))


def load_checkpoint(run_dir: Path, template: State, iteration: int | None = None, *,
                    config: ResolvedConfig | None = None) -> State:
    """Load the newest (or the given) checkpoint, verified against its hash, its size,
    the config it was written for, and the structure, shapes and dtypes of ``template``.
    Never unpickles and never runs code: msgpack holds only arrays, numbers and strings."""
    its = list_checkpoints(run_dir)
    if not its:
        raise UserError(f"{run_dir}: no checkpoint to load")
    it = its[-1] if iteration is None else iteration
    base = run_dir / CHECKPOINT_DIR / f"ckpt-{it:08d}"
    earlier = [i for i in its if i < it]
    hint = f"; delete it to resume from iteration {earlier[-1]}" if earlier else ""
    meta = read_json(base.with_suffix(".json"), what="checkpoint metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        raise UserError(f"{base}.json: not checkpoint metadata{hint}")
    if config is not None and "config" in meta:
        saved = meta["config"]
        try:
            other = config_from_json(saved, source=f"{base}.json").identity()
        except UserError:
            raise UserError(f"{base}.json: checkpoint metadata holds no valid config{hint}") from None
        if other != config.identity():
            what = (f"{other['algo']} on {other['tasks']}"
                    if (other["algo"], other["tasks"]) != (config.algo, config.tasks)
                    else "different options")
            raise UserError(f"{base}.msgpack: checkpoint belongs to another run ({what}), "
                            f"not this run's {config.algo} on {config.tasks}")
    limit = 2 * _nbytes(template) + 2**20  # msgpack framing is small next to the arrays
    path = base.with_suffix(".msgpack")
    try:
        with open(path, "rb") as f:  # bounded read: the path may be a FIFO or /dev/zero
            data = f.read(limit + 1)
    except OSError:
        raise UserError(f"{path}: checkpoint file is missing or unreadable{hint}") from None
    if len(data) > limit:
        raise UserError(f"{path}: checkpoint is too large for this run's state{hint}")
    if meta.get("sha256") != hashlib.sha256(data).hexdigest():
        raise UserError(f"{path}: checkpoint is corrupt (hash mismatch){hint}")
    try:
        restored = serialization.msgpack_restore(data)
        state = serialization.from_state_dict(template, restored)
        signature = _tree_signature(state)
    except Exception:  # noqa: BLE001 - any decoding failure is a corrupt file
        raise UserError(f"{path}: checkpoint does not decode{hint}") from None
    if signature != _tree_signature(template):
        raise UserError(f"{path}: checkpoint does not match this run's algorithm{hint}")
    if int(state["iteration"]) != it:
        raise UserError(f"{path}: checkpoint holds iteration {int(state['iteration'])}, "
                        f"not {it}{hint}")
    bad = _nonfinite_leaves(state)
    if bad:
        raise UserError(f"{path}: checkpoint holds non-finite values in {bad[0]}{hint}")
    return jax.device_put(state)


# ---- metrics ----------------------------------------------------------------------------
def _read_metric_lines(path: Path) -> tuple[bytes | None, list[tuple[int, bytes, list[str]]]]:
    """The header line and the well-formed rows ``(iteration, raw line, fields)`` of a
    metrics CSV; a line cut short by a kill, or any malformed line, is skipped."""
    try:
        if not path.is_file():
            return None, []
        raw = path.read_bytes()
    except OSError:
        return None, []
    lines = raw.splitlines(keepends=True)
    complete = [ln for ln in lines if ln.endswith(b"\n")]
    if not complete:
        return None, []
    header, rows = complete[0], []
    try:
        columns = next(csv.reader([header.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None, []
    if not columns or columns[0] != "iteration":
        return None, []
    for ln in complete[1:]:
        try:
            fields = next(csv.reader([ln.decode("utf-8")]))
            values = [float(v) for v in fields]
        except (UnicodeDecodeError, csv.Error, StopIteration, ValueError):
            continue
        if len(values) != len(columns) or not values[0].is_integer():
            continue
        rows.append((int(values[0]), ln, fields))
    return header, rows


def _tensorboard():
    """tensorboardX's synchronous event writer and protos, imported without torch:
    tensorboardX imports torch at module level when it is installed (2 s and ~300 MB per
    process) though scalars never need it. A ``None`` entry in ``sys.modules`` makes that
    optional import fail; it is removed again so a later ``import torch`` works as usual."""
    blocked = "tensorboardX" not in sys.modules and "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2
    finally:
        if blocked and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return EventsWriter, event_pb2, summary_pb2


class MetricsLog:
    """Per-iteration metrics in CSV and TensorBoard.

    Rows are kept in memory and written — CSV appended, TensorBoard events written
    synchronously, both fsynced — by :meth:`flush`, which the training loop calls before
    each checkpoint commits. So everything up to a checkpoint is on disk when the
    checkpoint is. On resume from iteration ``start``, CSV rows at or past ``start`` (and a
    line cut short by a kill) are dropped, and a new event file opens with a
    ``SessionLog.START`` at step ``start`` (TensorBoard's purge marker), which hides the
    older files' events at those steps: nothing is duplicated and nothing is lost.
    """

    def __init__(self, run_dir: Path, *, start: int):
        self.path = run_dir / METRICS_FILE
        self.pending: list[dict[str, float]] = []
        self.pending_tb: list[tuple[float, int, str, float]] = []
        self.columns: list[str] | None = None
        if self.path.exists() or self.path.is_symlink():
            if not self.path.is_file():
                raise UserError(f"{self.path}: metrics file is not a regular file")
            header, rows = _read_metric_lines(self.path)
            kept = [ln for it, ln, _ in rows if it < start]
            if header is not None and kept:
                self.columns = next(csv.reader([header.decode("utf-8")]))
                atomic_write(self.path, header + b"".join(kept))
            else:
                atomic_write(self.path, b"")
        events_writer, self._event_pb2, self._summary_pb2 = _tensorboard()
        # the pid suffix keeps a writer started within the same second from reusing a file
        self.tb = events_writer(str(run_dir / "events"), f".{os.getpid()}")
        purge = self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)
        self.tb.write_event(self._event_pb2.Event(wall_time=time.time(), step=start,
                                                  session_log=purge))
        self.tb.flush()

    def add(self, row: dict[str, float], *, extra: dict[str, float] | None = None) -> None:
        """Queue one iteration's metrics; ``extra`` scalars go to TensorBoard only."""
        self.pending.append(row)
        step, now = int(row["iteration"]), time.time()
        for k, v in {**row, **(extra or {})}.items():
            if k != "iteration":
                self.pending_tb.append((now, step, k, float(v)))

    def flush(self) -> None:
        """Write pending rows durably (called before each checkpoint is committed)."""
        if self.pending_tb:
            Summary = self._summary_pb2.Summary
            for wall_time, step, tag, value in self.pending_tb:
                self.tb.write_event(self._event_pb2.Event(
                    wall_time=wall_time, step=step,
                    summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)])))
            self.tb.flush()  # flushes and fsyncs
            self.pending_tb.clear()
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

    def close(self) -> None:
        self.flush()
        self.tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """The run's metrics rows (a trailing line cut short by a kill is ignored)."""
    header, rows = _read_metric_lines(run_dir / METRICS_FILE)
    if header is None:
        return []
    columns = next(csv.reader([header.decode("utf-8")]))
    return [{k: float(v) for k, v in zip(columns, fields, strict=True)} for _, _, fields in rows]


# ---- training ---------------------------------------------------------------------------
class Diverged(UserError):
    """Training produced non-finite values; nothing from that iteration was saved."""


def _float_leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if np.issubdtype(np.dtype(_dtype(x)), np.floating)]


def _nonfinite_leaves(tree: Any) -> list[str]:
    return [f"state{name}" for name, x in _float_leaves(tree)
            if not bool(np.all(np.isfinite(np.asarray(x))))]


def fault_nan_at() -> int | None:
    """The iteration named by ``ADAPTRL_FAULT_NAN_AT`` (fault injection for tests), if any."""
    raw = os.environ.get(FAULT_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise UserError(f"{FAULT_ENV} must be an iteration number, got {cfg.short(raw)}")
    return int(raw)


def guarded_update(algorithm: Algorithm, *, nan_at: int | None = None):
    """The jitted update, returning ``(new_state, metrics, finite)`` where ``finite`` holds
    one flag per floating-point leaf of the new state (in :func:`_float_leaves` order).

    ``nan_at`` injects a fault: the update at that iteration returns a NaN loss metric and
    NaN parameters, as a diverged update would."""

    def step(state):
        new, metrics = algorithm.update(state)
        if nan_at is not None:
            poison = jnp.where(state["iteration"] == nan_at, jnp.nan, 0.0)
            metrics = dict(metrics)
            name = next((k for k in metrics if "loss" in k or "mse" in k), next(iter(metrics)))
            metrics[name] = metrics[name] + poison
            new = dict(new, params=jax.tree.map(lambda x: x + poison.astype(x.dtype),
                                                new["params"]))
        flags = [jnp.all(jnp.isfinite(x)) for _, x in _float_leaves(new)]
        return new, metrics, jnp.stack(flags) if flags else jnp.ones((0,), bool)

    # a host sampler collects outside jit; the algorithm jits its learning phases itself
    return jax.jit(step) if algorithm.jittable else step


def _available_memory() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None


def _check_memory(step, state: State, config: ResolvedConfig) -> None:
    """Compile the update and refuse a configuration whose one iteration needs more
    memory than the machine has (a huge batch would otherwise be killed by the OOM killer).
    ``jax.jit`` reuses this compilation for the first call."""
    try:
        stats = step.lower(state).compile().memory_analysis()
    except Exception:  # noqa: BLE001 - no estimate on this backend: skip the check
        return
    if stats is None:
        return
    need = sum(int(getattr(stats, f, 0) or 0) for f in (
        "temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes"))
    have = _available_memory()
    if have is not None and need > have:
        raise UserError(f"{config.algo} on {config.tasks}: one iteration needs "
                        f"{need / 2**30:.1f} GiB of memory, more than the "
                        f"{have / 2**30:.1f} GiB available; reduce the batch sizes")


def create_run(run_dir: Path, config: ResolvedConfig) -> None:
    if (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} already holds a run; use --resume or another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / CONFIG_FILE, json.dumps(config.to_json(), indent=2).encode())
    except OSError as e:
        raise UserError(f"{run_dir}: cannot create the run directory "
                        f"({e.strerror or type(e).__name__})") from None


def extend_run(run_dir: Path, iterations: int) -> ResolvedConfig:
    """Change a run's schedule to ``iterations`` meta-iterations (to train a finished run
    further on resume). Checkpoints stay valid: the schedule is not part of their identity,
    and the RNG key lives in the state, so the result equals a run made that long."""
    config = load_run(run_dir)
    done = list_checkpoints(run_dir)
    if done and iterations < done[-1]:
        raise UserError(f"{run_dir} is already at iteration {done[-1]}; cannot shorten it "
                        f"to {iterations}")
    anneal = getattr(config.algo_options, ANNEAL, 0)
    if anneal and iterations > anneal:
        raise UserError(f"{run_dir}: its step size reaches 0 at iteration {anneal} "
                        f"(algo.{ANNEAL}), so training to {iterations} would not change it; "
                        f"start a new run with --iterations {iterations}")
    new = dataclasses.replace(config, run=cfg.from_dict(
        RunSettings, {**cfg.to_dict(config.run), "iterations": iterations}))
    with _locked(run_dir):  # not while another process trains the run
        atomic_write(run_dir / CONFIG_FILE, json.dumps(new.to_json(), indent=2).encode())
    return new


def load_run(run_dir: Path) -> ResolvedConfig:
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    path = run_dir / CONFIG_FILE
    return config_from_json(read_json(path, what="run config"), source=str(path))


def load_trained(run_dir: Path, config: ResolvedConfig, iteration: int | None = None
                 ) -> tuple[Algorithm, State]:
    """The run's algorithm and its newest (or the given) checkpoint's state."""
    algorithm = config.algorithm()
    template = algorithm.init(key=jax.random.PRNGKey(config.run.seed))
    return algorithm, load_checkpoint(run_dir, template, iteration, config=config)


def train(run_dir: Path, *, resume: bool = False,
          on_iteration: Callable[[int, int, dict[str, float]], None] | None = None) -> State:
    """Train the run in ``run_dir`` to its configured number of iterations.

    With ``resume`` it continues from the newest checkpoint (or from the start if the run
    was killed before its first one). ``on_iteration(done, total, metrics)`` reports
    progress. Non-finite metrics or state stop training with :class:`Diverged` before
    anything of that iteration is saved; the newest checkpoint stays the last good one.
    """
    config = load_run(run_dir)
    algorithm = config.algorithm()
    nan_at = fault_nan_at()
    with _locked(run_dir):
        _remove_stale_temporaries(run_dir)
        template = algorithm.init(key=jax.random.PRNGKey(config.run.seed))
        if resume and list_checkpoints(run_dir):
            state = load_checkpoint(run_dir, template, config=config)
            prune_checkpoints(run_dir, keep=config.run.keep_checkpoints)  # a kill mid-prune
        elif list_checkpoints(run_dir):
            raise UserError(f"{run_dir} already has checkpoints; resume it (--resume) "
                            "instead of training it again")
        else:
            state = template
        start = int(state["iteration"])
        step = guarded_update(algorithm, nan_at=nan_at)
        total = config.run.iterations
        if start < total:
            _check_memory(step, state, config)
        log = MetricsLog(run_dir, start=start)
        leaf_names = [f"state{name}" for name, _ in _float_leaves(state)]
        try:
            for it in range(start, total):
                t0 = time.perf_counter()
                new_state, metrics, finite = step(state)
                metrics = {k: float(v) for k, v in metrics.items()}
                bad = [f"metric {k!r}" for k, v in metrics.items() if not math.isfinite(v)]
                bad += [leaf_names[i] for i in np.flatnonzero(~np.asarray(finite))]
                if bad:
                    log.flush()
                    last = list_checkpoints(run_dir)
                    kept = (f"checkpoint {last[-1]} is the latest" if last
                            else "no checkpoint yet")
                    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                    raise Diverged(f"non-finite {bad[0]}{more} at iteration {it}; update "
                                   f"discarded, {kept}")
                state = new_state
                row = {"iteration": it, **metrics}
                log.add(row, extra={"time/seconds_per_iteration": time.perf_counter() - t0})
                done = it + 1
                if done % config.run.checkpoint_every == 0 or done == total:
                    log.flush()
                    save_checkpoint(run_dir, state, keep=config.run.keep_checkpoints,
                                    config=config)
                if on_iteration:
                    on_iteration(done, total, row)
        finally:
            log.close()
    return state


def iter_runs(dirs: Iterable[Path]) -> list[tuple[Path, ResolvedConfig]]:
    return [(Path(d), load_run(Path(d))) for d in dirs]
