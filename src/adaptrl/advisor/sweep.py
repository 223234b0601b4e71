"""``adaptrl sweep``: a grid (or a random subset of one) of strategies x seeds, each trial
a training run plus its meta-test (:func:`adaptrl.advisor.strategies.run_trial`), recorded
in the results store.

Locally the trials run in a process pool over the machine's cores. With ``--ray ADDRESS``
they run on an existing Ray cluster through Ray Tune, one trial per run, and the driver
records each finished trial's run directory in the store (so the output directory must be
on a filesystem every node sees; on one machine it is). Either way a finished trial (its
run complete and meta-tested) is never run again: a killed sweep resumes where it was.

A grid file (YAML)::

    algo: maml-vpg                 # or a list: part of the grid
    set: {iterations: 10, algo.hidden: [16]}     # fixed --set options
    grid: {algo.inner_lr: [0.1, 0.5]}            # every combination
    random: 0                      # > 0: that many combinations drawn at random (seed 0)
    eval: {num_tasks: 20, adapt_steps: 1}
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from adaptrl.advisor.strategies import EVAL_DEFAULTS, Strategy, run_trial
from adaptrl.errors import UserError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def parse_grid(data: Any, *, source: str) -> tuple[list[Strategy], dict[str, Any]]:
    """The strategies and meta-test settings of a parsed grid file."""
    import numpy as np

    if not isinstance(data, dict):
        raise UserError(f"{source}: a grid file is a mapping (algo, set, grid, random, eval)")
    unknown = set(data) - {"algo", "set", "grid", "random", "eval"}
    if unknown:
        raise UserError(f"{source}: unknown key {sorted(unknown)[0]!r} "
                        "(valid: algo, set, grid, random, eval)")
    algos = data.get("algo")
    algos = [algos] if isinstance(algos, str) else algos
    fixed, grid = data.get("set") or {}, data.get("grid") or {}
    if not algos or not all(isinstance(a, str) for a in algos):
        raise UserError(f"{source}: 'algo' names an algorithm or a list of them")
    if not isinstance(fixed, dict) or not isinstance(grid, dict) or not all(
            isinstance(v, list) and v for v in grid.values()):
        raise UserError(f"{source}: 'set' is a mapping and 'grid' a mapping of KEY: [values]")
    ev = data.get("eval") or {}
    if not isinstance(ev, dict) or set(ev) - set(EVAL_DEFAULTS):
        raise UserError(f"{source}: 'eval' takes {', '.join(EVAL_DEFAULTS)}")
    keys = list(grid)
    combos = [(a, dict(zip(keys, vals, strict=True)))
              for a in algos for vals in itertools.product(*(grid[k] for k in keys))]
    n = data.get("random", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UserError(f"{source}: 'random' is a number of combinations >= 0")
    if n and n < len(combos):
        pick = np.random.default_rng(0).choice(len(combos), n, replace=False)
        combos = [combos[i] for i in sorted(pick)]
    strategies = []
    for algo, values in combos:
        label = "-".join([algo, *(f"{k.split('.')[-1]}={json.dumps(v)}"
                                  for k, v in values.items())])
        strategies.append(Strategy(_UNSAFE.sub("_", label)[:120], algo,
                                   tuple({**fixed, **values}.items())))
    return strategies, {**EVAL_DEFAULTS, **ev}


def load_grid(path: Path) -> tuple[list[Strategy], dict[str, Any]]:
    from adaptrl import config as cfg

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the grid ({type(e).__name__})") from None
    return parse_grid(cfg.load_yaml(text, source=str(path)), source=str(path))


def _finished(tasks: str, s: Strategy, seed: int, root: Path, ev: dict[str, Any],
              task_sets: dict[str, Any]) -> bool:
    """Whether the trial's run is complete and meta-tested with ``ev`` (read back, not
    rerun); :func:`run_trial` makes the same check."""
    from adaptrl import runs
    from adaptrl.advisor.store import EVALS_DIR
    from adaptrl.advisor.strategies import trial_dir

    d = trial_dir(root, s, seed)
    if not (d / runs.CONFIG_FILE).is_file() or not (d / EVALS_DIR).is_dir():
        return False
    done = runs.list_checkpoints(d)
    return bool(done) and done[-1] >= runs.load_run(d).run.iterations


def _local_trial(args: tuple) -> dict[str, Any]:
    tasks, s, seed, root, task_sets, ev = args
    return run_trial(tasks, s, seed, root, task_sets=task_sets, evaluation=ev)


def _ray_trial(config: dict[str, Any]) -> None:
    """A Ray Tune trainable: one trial, its score reported to Tune."""
    from ray import tune

    config = config["trial"]
    s = Strategy(config["name"], config["algo"], tuple(map(tuple, config["sets"])))
    r = run_trial(config["tasks"], s, config["seed"], Path(config["root"]),
                  task_sets=config["task_sets"], evaluation=config["eval"])
    tune.report({"score": r["score"], "run_dir": r["run_dir"]})


def sweep(tasks: str, strategies: list[Strategy], *, seeds: int, root: Path,
          evaluation: dict[str, Any], task_sets: dict[str, Any] | None = None,
          ray_address: str | None = None, workers: int | None = None,
          on_trial=None) -> list[dict[str, Any]]:
    """Run every (strategy, seed) trial; returns ``{"strategy", "seed", "run_dir",
    "score"}`` per trial, in grid order. ``on_trial(trial)`` reports each one as it ends."""
    from adaptrl.advisor.strategies import resolve_strategy

    if seeds < 1 or seeds > 1000:
        raise UserError(f"--seeds must be between 1 and 1000, got {seeds}")
    task_sets = dict(task_sets or {})
    for s in strategies:  # refuse a bad grid before anything runs
        resolve_strategy(s, tasks, seed=0, task_sets=task_sets)
    if ray_address:
        from adaptrl.sampling.ray_workers import check_reachable

        check_reachable(ray_address)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    trials = [(tasks, s, seed, root, task_sets, evaluation)
              for s in strategies for seed in range(seeds)]
    todo = [t for t in trials if not _finished(t[0], t[1], t[2], root, evaluation, task_sets)]
    done = [t for t in trials if t not in todo]
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for t in done:  # read back: no rerun
        r = _local_trial(t)
        out[(t[1].name, t[2])] = r
        if on_trial:
            on_trial({**r, "resumed": True})
    if todo and ray_address:
        _ray_sweep(ray_address, todo, root, out, on_trial)
    elif todo:
        import concurrent.futures as cf
        import multiprocessing as mp

        n = workers or min(len(todo), os.cpu_count() or 1)
        with cf.ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_local_trial, t): t for t in todo}
            for f in cf.as_completed(futures):
                r = f.result()
                t = futures[f]
                out[(t[1].name, t[2])] = r
                if on_trial:
                    on_trial(r)
    return [{k: v for k, v in out[(t[1].name, t[2])].items() if k != "result"}
            for t in trials]


def _ray_sweep(address: str, todo: list[tuple], root: Path, out: dict, on_trial) -> None:
    """The trials on the Ray cluster at ``address`` through Ray Tune; the driver records
    each finished trial's run directory in the store."""
    try:
        import ray
        from ray import tune
    except ImportError as e:
        raise UserError(f"--ray needs Ray Tune: pip install 'adaptrl[ray]' ({e})") from None
    from adaptrl.advisor.store import default_path, ingest, open_store
    from adaptrl.advisor.strategies import trial_dir

    by_name = {}
    for tasks, s, seed, _, task_sets, ev in todo:
        by_name[f"{s.name}-seed{seed}"] = {
            "tasks": tasks, "name": s.name, "algo": s.algo,
            "sets": [list(kv) for kv in s.sets], "seed": seed, "root": str(root),
            "task_sets": task_sets, "eval": ev}
    env = {"ADAPTRL_STORE": "off"}  # the driver records: the store is its file
    for k in ("JAX_PLATFORMS", "ADAPTRL_CACHE_DIR"):
        if k in os.environ:
            env[k] = os.environ[k]
    import logging

    ray.init(address=address, logging_level=logging.ERROR, runtime_env={"env_vars": env})
    try:
        tuner = tune.Tuner(
            tune.with_resources(_ray_trial, {"cpu": 1}),
            param_space={"trial": tune.grid_search(list(by_name.values()))},
            run_config=tune.RunConfig(name="adaptrl-sweep", storage_path=str(root / "ray"),
                                      verbose=0),
        )
        with contextlib.redirect_stdout(sys.stderr):  # Tune's tables: stdout is the result
            grid = tuner.fit()
    finally:
        ray.shutdown()
    errors = [grid[i].error for i in range(len(grid)) if grid[i].error is not None]
    path = default_path()
    store = open_store(path) if path is not None else None
    try:
        for tasks, s, seed, _, task_sets, ev in todo:
            d = trial_dir(root, s, seed)
            if not _finished(tasks, s, seed, root, ev, task_sets):
                continue
            if store is not None:
                ingest(store, d)
            r = _local_trial((tasks, s, seed, root, task_sets, ev))  # read back
            out[(s.name, seed)] = r
            if on_trial:
                on_trial(r)
    finally:
        if store is not None:
            store.close()
    if errors:
        raise UserError(f"{len(errors)} trial(s) failed on the Ray cluster: "
                        f"{' '.join(str(errors[0]).split())[:300]}")
