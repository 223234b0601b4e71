"""A run directory as a whole: create it, load its config, extend its schedule (to train a
finished run further), and load its trained state."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import jax

from adaptrl import config as cfg
from adaptrl.algos.base import Algorithm, State
from adaptrl.errors import UserError
from adaptrl.runs.checkpoints import list_checkpoints, load_checkpoint
from adaptrl.runs.files import (
    _TMP,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    _locked,
    atomic_write,
    read_json,
)
from adaptrl.runs.settings import (
    ANNEAL,
    RUN_FLAGS,
    ResolvedConfig,
    RunSettings,
    config_from_json,
)


@dataclasses.dataclass(frozen=True)
class NewRun:
    """What :func:`create_run` found and made, so :func:`discard_new_run` can undo it."""

    run_dir: Path
    made_dirs: tuple[Path, ...]  # directories it created, outermost first
    existing: frozenset[str]  # names already in the run directory


def create_run(run_dir: Path, config: ResolvedConfig) -> NewRun:
    """Make a run directory holding ``config`` (``config.json``)."""
    if (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} already holds a run; use --resume or another --out")
    missing = [d for d in (run_dir, *run_dir.parents) if not d.exists()][::-1]
    try:
        existing = frozenset(os.listdir(run_dir)) if run_dir.is_dir() else frozenset()
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
    except OSError as e:
        raise UserError(f"{run_dir}: cannot create the run directory "
                        f"({e.strerror or type(e).__name__})") from None
    return NewRun(run_dir, tuple(missing), existing)


def _run_file(name: str) -> bool:
    """Whether ``name`` is a file that creating or training a run writes."""
    return (name in (CONFIG_FILE, METRICS_FILE, LOCK_FILE) or _TMP.match(name) is not None
            or name.startswith("events.out.tfevents."))


def discard_new_run(new: NewRun) -> bool:
    """Undo :func:`create_run` after training failed before its first checkpoint: remove
    the files that creating and training the run wrote, and the directories it made if
    they are then empty, so that the same command can be retried. Nothing that was there
    before is touched, and a run with a committed checkpoint is kept (it can be resumed).
    Returns whether the run was removed."""
    run_dir = new.run_dir
    if not run_dir.is_dir() or list_checkpoints(run_dir):
        return False
    with contextlib.suppress(OSError):
        for p in run_dir.iterdir():
            if p.name in new.existing:
                continue
            if p.name == CHECKPOINT_DIR and p.is_dir() and not p.is_symlink():
                for q in p.iterdir():
                    if q.is_file() and (q.name.startswith("ckpt-") or _TMP.match(q.name)):
                        q.unlink()
                p.rmdir()
            elif _run_file(p.name) and not p.is_dir():
                p.unlink()
    for d in reversed(new.made_dirs):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty
    return True


def extended(run_dir: Path, config: ResolvedConfig, iterations: int) -> ResolvedConfig:
    """``config`` with its schedule changed to ``iterations`` meta-iterations, refused where
    that cannot train the run further or would shorten it; validates only, writes nothing.
    Checkpoints stay valid: the schedule is not part of their identity, and the RNG key
    lives in the state, so the result equals a run made that long."""
    done = list_checkpoints(run_dir)
    if done and iterations < done[-1]:
        raise UserError(f"{run_dir} is already at iteration {done[-1]}; cannot shorten it "
                        f"to {iterations}")
    anneal = getattr(config.algo_options, ANNEAL, 0)
    if anneal and iterations > anneal:
        raise UserError(f"{run_dir}: its step size reaches 0 at iteration {anneal} "
                        f"(algo.{ANNEAL}), so training to {iterations} would not change it; "
                        f"start a new run with --iterations {iterations}")
    return dataclasses.replace(config, run=cfg.from_dict(
        RunSettings, {**cfg.to_dict(config.run), "iterations": iterations}, names=RUN_FLAGS))


def write_config(run_dir: Path, config: ResolvedConfig) -> None:
    """Replace the run's ``config.json`` (atomically)."""
    atomic_write(run_dir / CONFIG_FILE, json.dumps(config.to_json(), indent=2).encode())


def extend_run(run_dir: Path, iterations: int) -> ResolvedConfig:
    """Change a run's schedule to ``iterations`` meta-iterations (to train a finished run
    further on resume); see :func:`extended`."""
    new = extended(run_dir, load_run(run_dir), iterations)
    with _locked(run_dir):  # not while another process trains the run
        write_config(run_dir, new)
    return new


def load_run(run_dir: Path) -> ResolvedConfig:
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    path = run_dir / CONFIG_FILE
    return config_from_json(read_json(path, what="run config"), source=str(path))


class Trained(NamedTuple):
    """A run's algorithm and a checkpoint's state; unpacks as ``algorithm, state``."""

    algorithm: Algorithm
    state: State

    @property
    def checkpoint_iteration(self) -> int:
        """The iteration of the checkpoint that was loaded."""
        return int(self.state["iteration"])


def load_trained(run_dir: Path, config: ResolvedConfig, iteration: int | None = None
                 ) -> Trained:
    """The run's algorithm and its newest (or the given) checkpoint's state. A newest
    checkpoint that is corrupt or has lost its metadata is refused (one line naming the
    file), never silently replaced by an older one."""
    algorithm = config.algorithm()
    template = algorithm.init(key=jax.random.PRNGKey(config.run.seed))
    return Trained(algorithm, load_checkpoint(run_dir, template, iteration, config=config))


def iter_runs(dirs: Iterable[Path]) -> list[tuple[Path, ResolvedConfig]]:
    return [(Path(d), load_run(Path(d))) for d in dirs]
