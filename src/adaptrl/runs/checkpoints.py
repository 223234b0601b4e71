"""Checkpoints: the whole training state pytree in msgpack (never pickle), committed by a
JSON file holding its SHA-256, its size and the resolved config it belongs to."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from adaptrl.algos.base import State
from adaptrl.config import short
from adaptrl.errors import UserError
from adaptrl.runs.files import CHECKPOINT_DIR, _fsync_dir, atomic_write, read_json
from adaptrl.runs.settings import FORMAT_VERSION, ResolvedConfig, config_from_json

_CKPT = re.compile(r"^ckpt-(\d{8})\.json$")
_CKPT_DATA = re.compile(r"^ckpt-(\d{8})\.msgpack$")
_SAVING = re.compile(r"^ckpt-(\d{8})\.saving$")


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


def _saving_marker(ckpt_dir: Path, it: int) -> Path:
    return ckpt_dir / f"ckpt-{it:08d}.saving"


def save_checkpoint(run_dir: Path, state: State, *, keep: int,
                    config: ResolvedConfig | None = None) -> Path:
    """Serialise ``state`` (msgpack), then commit it with a JSON file holding its hash and
    the config it belongs to; then delete all but the newest ``keep`` checkpoints.

    The JSON file is the commit record: it is written (atomically) only after the data file
    is durable, and :func:`list_checkpoints` only sees checkpoints that have one. A marker
    ``ckpt-N.saving`` exists while a save is under way, so a data file that a kill left
    without its record (harmless: the previous checkpoint is the newest) is told apart
    from one whose record went missing later (reported by :func:`refuse_uncommitted`)."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    it = int(state["iteration"])
    data = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(state)))
    base = ckpt_dir / f"ckpt-{it:08d}"
    marker = _saving_marker(ckpt_dir, it)
    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644))
    _fsync_dir(ckpt_dir)
    atomic_write(base.with_suffix(".msgpack"), data)
    meta: dict[str, Any] = {"format": FORMAT_VERSION, "iteration": it,
                            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if config is not None:
        meta["config"] = config.to_json()
    atomic_write(base.with_suffix(".json"), json.dumps(meta).encode())
    os.unlink(marker)
    prune_checkpoints(run_dir, keep=keep)
    return base.with_suffix(".msgpack")


def prune_checkpoints(run_dir: Path, *, keep: int) -> None:
    """Delete all but the newest ``keep`` committed checkpoints, data files that a kill
    left without a commit record, and the markers of saves a kill cut short. Commit
    records go first, so a kill in here never leaves a record whose data file is gone.
    Called only by the process that trains the run (it holds the run's lock)."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not ckpt_dir.is_dir():
        return
    kept = set(list_checkpoints(run_dir)[-keep:])
    for pattern in (_CKPT, _CKPT_DATA, _SAVING):  # records, then data files, then markers
        for p in ckpt_dir.iterdir():  # data files include those orphaned by a kill mid-save
            m = pattern.match(p.name)
            if m and (pattern is _SAVING or int(m.group(1)) not in kept):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def refuse_uncommitted(run_dir: Path) -> None:
    """Refuse a run whose newest checkpoint data file has lost its metadata (``.json``):
    loading would silently use an older checkpoint (or none). A data file that a kill
    left mid-save (its ``.saving`` marker is there) is not refused."""
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not ckpt_dir.is_dir():
        return
    its = list_checkpoints(run_dir)
    newest = its[-1] if its else -1
    names = {p.name for p in ckpt_dir.iterdir()}
    lost = sorted(int(m.group(1)) for n in names if (m := _CKPT_DATA.match(n))
                  and int(m.group(1)) > newest and f"ckpt-{m.group(1)}.saving" not in names)
    if lost:
        path = ckpt_dir / f"ckpt-{lost[-1]:08d}.msgpack"
        then = f"resume from iteration {newest}" if its else "train from the start"
        raise UserError(f"{path}: checkpoint of iteration {lost[-1]} has no metadata file "
                        f"({path.stem}.json); delete it to {then}")


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
    if iteration is None:
        refuse_uncommitted(run_dir)
    its = list_checkpoints(run_dir)
    if not its:
        raise UserError(f"{run_dir}: no checkpoint to load")
    it = its[-1] if iteration is None else iteration
    base = run_dir / CHECKPOINT_DIR / f"ckpt-{it:08d}"
    earlier = [i for i in its if i < it]
    hint = f"; delete it to resume from iteration {earlier[-1]}" if earlier else ""
    try:
        meta = read_json(base.with_suffix(".json"), what="checkpoint metadata")
    except UserError as e:
        raise UserError(f"{e}{hint}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        raise UserError(f"{base}.json: not checkpoint metadata{hint}")
    fmt, meta_it = meta.get("format"), meta.get("iteration")
    if fmt != FORMAT_VERSION or isinstance(fmt, bool):
        raise UserError(f"{base}.json: unsupported checkpoint format {short(fmt)} (this "
                        f"version reads {FORMAT_VERSION}){hint}")
    if meta_it != it or isinstance(meta_it, bool):
        raise UserError(f"{base}.json: metadata says iteration {short(meta_it)}, but the "
                        f"file is checkpoint {it}{hint}")
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
    if meta.get("bytes") != len(data) or isinstance(meta.get("bytes"), bool):
        raise UserError(f"{base}.json: metadata says {short(meta.get('bytes'))} bytes, but "
                        f"{path.name} holds {len(data)}{hint}")
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
