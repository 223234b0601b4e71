"""A run directory as a whole: create it, load its config, extend its schedule (to train a
finished run further), and load its trained state."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

import jax

from adaptrl import config as cfg
from adaptrl.algos.base import Algorithm, State
from adaptrl.errors import UserError
from adaptrl.runs.checkpoints import list_checkpoints, load_checkpoint
from adaptrl.runs.files import CONFIG_FILE, _locked, atomic_write, read_json
from adaptrl.runs.settings import ANNEAL, ResolvedConfig, RunSettings, config_from_json


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


def iter_runs(dirs: Iterable[Path]) -> list[tuple[Path, ResolvedConfig]]:
    return [(Path(d), load_run(Path(d))) for d in dirs]
