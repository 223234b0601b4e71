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

One module per concept: :mod:`~adaptrl.runs.settings` (config resolution),
:mod:`~adaptrl.runs.files` (file names, atomic writes, the run lock),
:mod:`~adaptrl.runs.checkpoints`, :mod:`~adaptrl.runs.metrics` (metrics logging),
:mod:`~adaptrl.runs.directory` (create, load and extend a run) and
:mod:`~adaptrl.runs.training` (the training loop and resume).
"""

from adaptrl.runs.checkpoints import (
    _tree_signature,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    refuse_uncommitted,
    save_checkpoint,
)
from adaptrl.runs.directory import (
    NewRun,
    Trained,
    create_run,
    discard_new_run,
    extend_run,
    extended,
    iter_runs,
    load_run,
    load_trained,
    write_config,
)
from adaptrl.runs.files import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    MAX_JSON_BYTES,
    METRICS_FILE,
    _locked,
    atomic_write,
    read_json,
)
from adaptrl.runs.metrics import MetricsLog, _read_metric_lines, read_metrics
from adaptrl.runs.settings import (
    ANNEAL,
    FORMAT_VERSION,
    ResolvedConfig,
    RunSettings,
    config_from_json,
    resolve,
)
from adaptrl.runs.training import FAULT_ENV, Diverged, fault_nan_at, guarded_update, train

__all__ = [
    "ANNEAL",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "FAULT_ENV",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MAX_JSON_BYTES",
    "METRICS_FILE",
    "Diverged",
    "MetricsLog",
    "NewRun",
    "ResolvedConfig",
    "RunSettings",
    "Trained",
    "_locked",
    "_read_metric_lines",
    "_tree_signature",
    "atomic_write",
    "config_from_json",
    "create_run",
    "discard_new_run",
    "extend_run",
    "extended",
    "fault_nan_at",
    "guarded_update",
    "iter_runs",
    "list_checkpoints",
    "load_checkpoint",
    "load_run",
    "load_trained",
    "prune_checkpoints",
    "read_json",
    "read_metrics",
    "refuse_uncommitted",
    "resolve",
    "save_checkpoint",
    "train",
    "write_config",
]
