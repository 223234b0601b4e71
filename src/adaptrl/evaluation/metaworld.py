"""Meta-World's meta-test protocol, as ``adaptrl eval RUN --protocol metaworld``.

On every held-out task (ML1: held-out goals; ML10/ML45: goals of the held-out task types)
the learner first adapts — ``adapt`` gradient steps for MAML, each on fresh episodes of the
task, or ``adapt`` episodes of the trial for RL² — and is then scored on further episodes:
MAML's ``eval_episodes`` after the last step, or RL²'s next ``scored`` episodes of the same
trial. An episode is a success if the task's success flag is raised at *any* step
(``metaworld.evaluation`` toggles terminate-on-success off for meta-learning evaluation
too; the flag is the same). A task's success rate is the fraction of its scored episodes
that succeed; a task type's is the mean over its tasks; the overall success rate is the
mean over task types, as in ``metaworld.evaluation.metalearning_evaluation``. The return
of the scored episodes is reported beside it, and the whole adaptation curve with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from adaptrl.errors import UserError
from adaptrl.evaluation.harness import score_runs
from adaptrl.ops.stats import _pooled
from adaptrl.tasks.metaworld import MetaWorld, metaworld_version

PROTOCOLS = ("curve", "metaworld")


def mean_ci(per_seed: Sequence[np.ndarray], *, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over tasks and seeds and its stratified-bootstrap CI (strata: seeds)."""
    samples = [np.asarray(s, np.float64).ravel() for s in per_seed]
    pooled = np.concatenate(samples)
    mean = float(pooled.mean())
    if pooled.size < 2 or np.ptp(pooled) == 0:
        return mean, mean, mean
    res = stats.bootstrap(samples, _pooled(np.mean), n_resamples=resamples,
                          confidence_level=confidence, method="percentile", vectorized=True,
                          rng=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def metaworld_protocol(run_dirs: Sequence[Path], *, num_tasks: int | None = None,
                       adapt: int | None = None, scored: int = 3, seed: int = 0,
                       task_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score runs (one per seed) on held-out Meta-World tasks by Meta-World's protocol.

    ``num_tasks``: held-out tasks (default: every test task of the benchmark, 50 goals per
    type); ``adapt``: gradient steps (MAML) or adaptation episodes (RL²) before scoring
    (default: the algorithm's own evaluation steps); ``scored``: scored episodes of an
    in-context learner's trial (MAML scores its ``eval_episodes``). Returns the harness'
    result (the adaptation curve) with a ``"metaworld"`` entry: per-type and overall
    success and return of the scored episodes, with 95% CIs over tasks and seeds."""
    from adaptrl import runs

    if not run_dirs:
        raise UserError("no run directory given")
    family = runs.load_run(Path(run_dirs[0])).task_options
    if not isinstance(family, MetaWorld):
        raise UserError(f"--protocol metaworld needs a Meta-World run (ml1-*, ml10, ml45); "
                        f"{run_dirs[0]} trained on {type(family).__name__}")
    if scored < 1 or scored > 100:
        raise UserError(f"--scored-episodes must be between 1 and 100, got {scored}")
    n = len(family.task_list(1)) if num_tasks is None else num_tasks
    algo = runs.load_run(Path(run_dirs[0])).algorithm()
    k = algo.default_eval_steps if adapt is None else adapt
    in_context = algo.curve_unit == "episodes"
    steps = k + scored - 1 if in_context else k
    result, per_seed, family, _ = score_runs(run_dirs, split="test", num_tasks=n, steps=steps,
                                             seed=seed, task_changes=task_changes)
    assert isinstance(family, MetaWorld)
    scored_slice = slice(k, k + scored) if in_context else slice(k, k + 1)
    success = [s["success"][:, scored_slice].mean(1) for s in per_seed]
    returns = [s["return"][:, scored_slice].mean(1) for s in per_seed]
    tasks = family.tasks("test", n)
    types = [family.task_type({"split": 1, "index": i}) for i in np.asarray(tasks["index"])]
    per_type = {}
    for name in dict.fromkeys(types):
        rows = np.array([t == name for t in types])
        s_mean, s_lo, s_hi = mean_ci([s[rows] for s in success], seed=seed)
        r_mean, r_lo, r_hi = mean_ci([r[rows] for r in returns], seed=seed)
        per_type[name] = {"tasks": int(rows.sum()), "success": s_mean,
                          "success_ci": [s_lo, s_hi], "return": r_mean,
                          "return_ci": [r_lo, r_hi]}
    by_type = [np.mean([per_type[t]["success"] for t in per_type])]
    s_mean, s_lo, s_hi = mean_ci(success, seed=seed)
    r_mean, r_lo, r_hi = mean_ci(returns, seed=seed)
    result["metaworld"] = {
        "benchmark": family.benchmark, "env_name": family.env_name,
        "metaworld_version": metaworld_version(), "reward_version": family.reward_version,
        "horizon": family.horizon, "adapt": k,
        "adapt_unit": "episodes" if in_context else "gradient_steps",
        "scored_episodes": scored if in_context else algo.config.eval_episodes,
        "success": float(by_type[0]), "success_over_tasks": s_mean,
        "success_ci": [s_lo, s_hi], "return": r_mean, "return_ci": [r_lo, r_hi],
        "per_type": per_type}
    return result
