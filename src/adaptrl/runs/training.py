"""The training loop: meta-iterations from the start or from the newest checkpoint, with
the NaN guard, the memory guard and checkpoints at the configured cadence.

Fault injection (testing aid): with ``ADAPTRL_FAULT_NAN_AT=N`` in the environment, the
update at iteration ``N`` returns a NaN loss and NaN parameters, as a diverged update would.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from adaptrl import config as cfg
from adaptrl.algos.base import Algorithm, State
from adaptrl.errors import UserError
from adaptrl.runs.checkpoints import (
    _float_leaves,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    refuse_uncommitted,
    save_checkpoint,
)
from adaptrl.runs.directory import extended, load_run, write_config
from adaptrl.runs.files import _locked, _remove_stale_temporaries
from adaptrl.runs.metrics import MetricsLog
from adaptrl.runs.settings import ResolvedConfig

FAULT_ENV = "ADAPTRL_FAULT_NAN_AT"


class Diverged(UserError):
    """Training produced non-finite values; nothing from that iteration was saved."""


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


def train(run_dir: Path, *, resume: bool = False, iterations: int | None = None,
          on_iteration: Callable[[int, int, dict[str, float]], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> State:
    """Train the run in ``run_dir`` to its configured number of iterations.

    With ``resume`` it continues from the newest checkpoint (or from the start if the run
    was killed before its first one); ``iterations`` then changes the run's schedule (to
    train a finished run further, see :func:`~adaptrl.runs.directory.extended`).
    Everything is validated — the schedule, the checkpoint, the memory one iteration
    needs — before anything is written, so a refused call changes nothing on disk.
    ``on_iteration(done, total, metrics)`` reports progress. Non-finite metrics or state
    stop training with :class:`Diverged` before anything of that iteration is saved; the
    newest checkpoint stays the last good one.

    ``should_stop()`` is asked at each iteration boundary (the command line asks whether
    SIGINT or SIGTERM arrived); when it is true, training stops there, checkpoints the
    iterations done since the last checkpoint, and returns the state, whose ``iteration``
    is then below the total. Resuming continues exactly as if it had not stopped.
    """
    t_start = time.perf_counter()
    config = load_run(run_dir)
    if iterations is not None and not resume:
        raise UserError(f"{run_dir}: a new run takes its iterations from its config; "
                        "iterations= extends a resumed run")
    algorithm = config.algorithm()
    nan_at = fault_nan_at()
    with _locked(run_dir):
        # ---- validate: the schedule, the newest checkpoint, the memory guard
        new = config if iterations is None else extended(run_dir, config, iterations)
        template = algorithm.init(key=jax.random.PRNGKey(config.run.seed))
        if resume:
            refuse_uncommitted(run_dir)
        if resume and list_checkpoints(run_dir):
            state = load_checkpoint(run_dir, template, config=config)
        elif list_checkpoints(run_dir):
            raise UserError(f"{run_dir} already has checkpoints; resume it (--resume) "
                            "instead of training it again")
        else:
            state = template
        start = int(state["iteration"])
        step = guarded_update(algorithm, nan_at=nan_at)
        total = new.run.iterations
        if start < total:
            _check_memory(step, state, config)
        # ---- then write: the new schedule, and clean-up after a kill
        if new != config:
            write_config(run_dir, new)
            config = new
        _remove_stale_temporaries(run_dir)
        if resume:
            prune_checkpoints(run_dir, keep=config.run.keep_checkpoints)  # a kill mid-prune
        log = MetricsLog(run_dir, start=start)
        leaf_names = [f"state{name}" for name, _ in _float_leaves(state)]
        saved = start  # the newest checkpoint's iteration (0: none, or the template's)
        try:
            for it in range(start, total):
                if should_stop is not None and should_stop():
                    break
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
                    saved = done
                if on_iteration:
                    on_iteration(done, total, row)
            if int(state["iteration"]) > saved:  # stopped between checkpoints: keep the work
                log.flush()
                save_checkpoint(run_dir, state, keep=config.run.keep_checkpoints, config=config)
        finally:
            log.close()
        if int(state["iteration"]) >= total and start < total:  # finished in this sitting
            from adaptrl.advisor.store import record_run

            record_run(run_dir, config, wall_s=time.perf_counter() - t_start)
    return state
