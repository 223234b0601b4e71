"""The meta-test harness: adaptation curves on held-out tasks, with honest statistics.

For each run (one run = one training seed) the learner is scored on the same held-out
tasks after 0, 1, ..., K units of adaptation. Per point of the curve we report the mean,
the interquartile mean and a 95% stratified-bootstrap CI of the IQM, stratified by seed.

A curve point's ``seen`` is how much of the task the learner had seen before that point
was measured, in the result's ``unit`` (0: nothing): gradient steps for MAML, earlier
episodes of the trial for RL² and the reference strategies; ``axis`` says it in words.
A result names the checkpoint iteration it scored for each run (``checkpoints``), and the
family options that meta-test changed from training (``task_changes``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np

from adaptrl import runs
from adaptrl.advisor.store import record_eval
from adaptrl.algos.base import AXES
from adaptrl.errors import UserError
from adaptrl.ops.stats import summarize
from adaptrl.tasks.base import RLFamily, Split, TaskFamily, meta_test_family

#: tasks scored per jitted call, to bound memory on large evaluations
CHUNK = 100


def score_tasks(curve_fn: Callable, family: TaskFamily, split: Split, num_tasks: int, *,
                key: jax.Array) -> dict[str, np.ndarray]:
    """Run ``curve_fn(tasks, key=...) -> {measure: [n, K+1]}`` over the first ``num_tasks``
    tasks of ``split`` in chunks; returns ``{measure: [num_tasks, K+1]}``."""
    split_key, eval_key = jax.random.split(key)
    tasks = family.tasks(split, num_tasks, key=split_key)
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, num_tasks, CHUNK):
        size = min(CHUNK, num_tasks - start)
        chunk = jax.tree.map(lambda x, s=start, n=size: x[s:s + n], tasks)
        res = curve_fn(chunk, key=jax.random.fold_in(eval_key, start))
        for k, v in res.items():
            out.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in out.items()}


def summarize_curves(per_seed: Sequence[dict[str, np.ndarray]], measure: str,
                     ) -> list[dict[str, Any]]:
    """Per curve point: mean, IQM and stratified-bootstrap CI over tasks and seeds."""
    steps = per_seed[0][measure].shape[1]
    curve = []
    for k in range(steps):
        point: dict[str, Any] = {"seen": k}
        stats = summarize([s[measure][:, k] for s in per_seed])
        point.update({key: stats[key] for key in ("mean", "iqm", "ci_low", "ci_high")})
        if "success" in per_seed[0]:
            point["success"] = float(np.mean([s["success"][:, k].mean() for s in per_seed]))
        curve.append(point)
    return curve


def _result(algo: str, tasks: str, family: TaskFamily, unit: str, axis: str, per_seed, *,
            split: Split, num_tasks: int, seed: int, checkpoints: list[dict[str, Any]],
            task_changes: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "algo": algo, "tasks": tasks, "split": split, "num_tasks": num_tasks,
        "seeds": len(per_seed), "checkpoints": checkpoints, "task_changes": task_changes,
        "unit": unit, "axis": axis, "measure": family.measure,
        "curve": summarize_curves(per_seed, family.measure),
    }
    if unit == "episodes":  # in-context learners: Duan et al.'s total reward per trial
        total = summarize([s[family.measure].sum(axis=1) for s in per_seed])
        result["trial_total"] = {k: total[k] for k in ("mean", "iqm", "ci_low", "ci_high")}
    if family.has_optimum:
        split_key = jax.random.split(jax.random.PRNGKey(seed))[0]
        tasks_ = family.tasks(split, num_tasks, key=split_key)
        result["optimum"] = float(np.mean(jax.vmap(family.optimum)(tasks_)))
        if "trial_total" in result:  # the optimum is per episode; a trial has several
            result["trial_optimum"] = result["optimum"] * len(result["curve"])
    return result


def _check_sizes(num_tasks: int, steps: int) -> None:
    if num_tasks < 1 or num_tasks > 100_000:
        raise UserError(f"--num-tasks must be between 1 and 100000, got {num_tasks}")
    if steps < 0 or steps > 1000:
        raise UserError(f"--adapt-steps must be between 0 and 1000, got {steps}")


def evaluate_runs(run_dirs: Sequence[Path], *, split: Split = "test", num_tasks: int = 40,
                  steps: int | None = None, seed: int = 0,
                  task_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Meta-test one or more runs of the same algorithm and family (one per seed), each
    from its newest checkpoint. ``task_changes`` moves the family's task distribution for
    an out-of-distribution meta-test (only its ``DISTRIBUTION_OPTIONS``)."""
    return score_runs(run_dirs, split=split, num_tasks=num_tasks, steps=steps, seed=seed,
                      task_changes=task_changes)[0]


def score_runs(run_dirs: Sequence[Path], *, split: Split = "test", num_tasks: int = 40,
               steps: int | None = None, seed: int = 0,
               task_changes: dict[str, Any] | None = None,
               ) -> tuple[dict[str, Any], list[dict[str, np.ndarray]], TaskFamily, Any]:
    """:func:`evaluate_runs`'s result (recorded in the results store), with what it was
    computed from: the per-task scores of each run (``{measure: [num_tasks, K+1]}``, one
    dict per seed), the meta-test family and the first run's algorithm (for protocols and
    comparisons that score them their own way)."""
    if not run_dirs:
        raise UserError("no run directory given")
    loaded = runs.iter_runs(run_dirs)
    first = loaded[0][1]
    for path, c in loaded[1:]:
        if (c.algo, c.tasks, c.task_options) != (first.algo, first.tasks, first.task_options):
            raise UserError(f"{path}: runs to pool must share algorithm and task family")
    changes = dict(task_changes or {})
    family = meta_test_family(first.task_options, changes)
    algorithm = first.algorithm()
    k = algorithm.default_eval_steps if steps is None else steps
    _check_sizes(num_tasks, k)
    per_seed, checkpoints = [], []
    for path, c in loaded:
        trained, state = runs.load_trained(path, c)
        checkpoints.append({"run": str(path), "iteration": int(state["iteration"])})
        # the policy trained on the run's family, scored on the (moved) meta-test family
        algorithm = dataclasses.replace(c, task_options=family).algorithm() if changes else trained

        def curve_fn(tasks, *, key, a=algorithm, s=state):
            return a.adaptation_curve(s, tasks, key=key, steps=k)

        if algorithm.jittable:  # else a host sampler steps the environments
            curve_fn = jax.jit(curve_fn)
        per_seed.append(score_tasks(curve_fn, family, split, num_tasks,
                                    key=jax.random.PRNGKey(seed)))
    result = _result(first.algo, first.tasks, family, algorithm.curve_unit,
                     algorithm.curve_axis(), per_seed, split=split, num_tasks=num_tasks,
                     seed=seed, checkpoints=checkpoints, task_changes=changes)
    record_eval(result, family, run_dirs, seed=seed)
    return result, per_seed, family, algorithm


def evaluate_reference(name: str, family: TaskFamily, family_name: str, *, steps: int,
                       split: Split = "test", num_tasks: int = 40, seed: int = 0,
                       task_changes: dict[str, Any] | None = None,
                       scores_out: list[dict[str, np.ndarray]] | None = None
                       ) -> dict[str, Any]:
    """Score a reference strategy (random, UCB1, Gittins, PSRL, ...) exactly as a learned
    agent: a trial of ``steps + 1`` episodes on the same held-out tasks. ``family`` is the
    registered family ``family_name`` with its options, ``task_changes`` those options
    that differ from a run's (or the registry's) for the record; ``scores_out``, if given,
    receives the per-task scores (as :func:`score_runs` returns them)."""
    from adaptrl.evaluation.reference import reference_curve

    _check_sizes(num_tasks, steps)
    per = score_tasks(
        lambda tasks, *, key: reference_curve(name, cast(RLFamily, family), tasks, key=key,
                                              episodes=steps + 1, family_name=family_name),
        family, split, num_tasks, key=jax.random.PRNGKey(seed))
    result = _result(name, family_name, family, "episodes", AXES["episodes"], [per],
                     split=split, num_tasks=num_tasks, seed=seed, checkpoints=[],
                     task_changes=dict(task_changes or {}))
    record_eval(result, family, seed=seed)
    if scores_out is not None:
        scores_out.append(per)
    return result


def jsonable(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by ``None``, so it serialises as strict JSON
    (a diverged adaptation step can make a mean infinite)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def gap_closed(result: dict[str, Any], step: int = 1) -> float | None:
    """Fraction of the gap between step 0 and the optimum closed after ``step`` steps."""
    if "optimum" not in result or len(result["curve"]) <= step:
        return None
    before, after = result["curve"][0]["mean"], result["curve"][step]["mean"]
    gap = result["optimum"] - before
    return float((after - before) / gap) if gap != 0 else None
