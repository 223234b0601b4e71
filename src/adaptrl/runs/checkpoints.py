"""Checkpoints: the whole training state pytree in msgpack (never pickle), committed by a
JSON file holding its SHA-256, its size and the resolved config it belongs to."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from adaptrl.algos.base import State
from adaptrl.errors import UserError
from adaptrl.runs.files import CHECKPOINT_DIR, atomic_write, read_json
from adaptrl.runs.settings import FORMAT_VERSION, ResolvedConfig, config_from_json

_CKPT = re.compile(r"^ckpt-(\d{8})\.json$")
_CKPT_DATA = re.compile(r"^ckpt-(\d{8})\.msgpack$")


def _dtype(x: Any) -> str:
    return str(x.dtype) if isinstance(x, np.ndarray | jax.Array) else str(np.asarray(x).dtype)


def _tree_signature(tree: Any) -> list[tuple[str, tuple[int, ...], str]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(p), tuple(np.shape(x)), _dtype(x)) for p, x in leaves]


def _float_leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if np.issubdtype(np.dtype(_dtype(x)), np.floating)]


def _nonfinite_leaves(tree: Any) -> list[str]:
    return [f"state{name}" for name, x in _float_leaves(tree)
            if not bool(np.all(np.isfinite(np.asarray(x))))]


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
