"""What the advisor knows about a family and a strategy, as numbers.

Family features are descriptive (spaces, horizon, discrete or continuous) and cheaply
measured: a random policy's (for regression: the zero predictor's) performance on 200
held-out tasks (10 episodes each) — its mean, its spread across tasks, how many of its
steps are rewarded at all (sparse rewards: about 1% of point-nav-sparse's, every step of
point-nav's) — and, where the family knows its exact optimum, the gap to it. They also
fix the scale on which the advisor compares strategies across families: :func:`normalised`
maps a score to 0 at the random policy and 1 at the optimum (or the best score known for
the family).

A *strategy* is an algorithm plus its settings; :func:`strategy_vector` reads the settings
that matter across algorithms (outer update, inner step size and steps, width, length of
training, learning rate) from a run's config.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: held-out tasks the cheap features are measured on
FEATURE_TASKS = 200
#: episodes of the random policy per task (a one-pull bandit episode is one Bernoulli draw:
#: one episode per task would put the random level, the 0 of the normalised score, within
#: about 0.08 of its true value)
RANDOM_EPISODES = 10
#: names of :func:`family_vector`'s entries
FAMILY_FEATURES = ("log_obs_dim", "log_actions", "discrete", "regression", "log_horizon",
                   "spread_over_gap", "has_optimum", "reward_density")
#: names of :func:`strategy_vector`'s entries
STRATEGY_FEATURES = ("gradient_based", "maml_trpo", "maml_ppo", "maml_vpg", "rl2",
                     "task_embedding", "pearl", "log_inner_lr", "inner_steps", "log_width",
                     "log_iterations", "log_lr", "log_trial_episodes")
#: the algorithms that adapt by gradient steps (the others adapt by memory or by context)
GRADIENT_BASED = ("maml-trpo", "maml-ppo", "maml-vpg")


def measure_family(tasks: str, family: Any) -> dict[str, Any]:
    """Descriptive and measured features of ``family`` (the registered ``tasks``)."""
    import jax
    import jax.numpy as jnp

    from adaptrl.evaluation.harness import score_tasks

    out: dict[str, Any] = {"tasks": tasks, "kind": family.kind, "measure": family.measure,
                           "higher_is_better": bool(family.higher_is_better),
                           "feature_tasks": FEATURE_TASKS}
    key = jax.random.PRNGKey(0)
    if family.kind == "regression":
        out.update(obs_dim=family.input_dim, actions=family.output_dim, discrete=False,
                   horizon=0)

        def zero_predictor(batch, *, key):
            keys = jax.random.split(key, jax.tree.leaves(batch)[0].shape[0])
            ys = jax.vmap(lambda k, t: family.data(k, t, 100)[1])(keys, batch)
            return {family.measure: jnp.mean(ys**2, axis=(1, 2))[:, None]}

        per = score_tasks(zero_predictor, family, "test", FEATURE_TASKS, key=key)
        out["reward_density"] = 1.0  # every point is labelled
    else:
        from adaptrl.evaluation.reference import reference_curve

        space = family.action_space
        discrete = hasattr(space, "n")
        out.update(obs_dim=int(np.prod(family.observation_space.shape)),
                   actions=int(space.n) if discrete else int(np.prod(space.shape)),
                   discrete=discrete, horizon=int(family.horizon))
        per = score_tasks(lambda batch, *, key: reference_curve(
            "random", family, batch, key=key, episodes=RANDOM_EPISODES, family_name=tasks),
            family, "test", FEATURE_TASKS, key=key)
        out["reward_density"] = float(np.mean(per["rewarded"]))
    random = np.asarray(per[family.measure]).mean(1)  # per task, over its episodes
    out["random_mean"] = float(random.mean())
    out["random_spread"] = float(random.std())
    out["has_optimum"] = bool(family.has_optimum)
    if family.has_optimum:
        test = family.tasks("test", FEATURE_TASKS)
        out["optimum"] = float(np.mean(jax.vmap(family.optimum)(test)))
    return out


#: what :func:`measure_family` records that :func:`family_vector` reads
MEASURED = ("kind", "obs_dim", "actions", "discrete", "horizon", "random_mean",
            "random_spread", "reward_density")


def complete(f: dict[str, Any]) -> bool:
    """Whether features ``f`` (a store's cache, perhaps measured by an older version) hold
    every entry :func:`family_vector` reads, measured on :data:`FEATURE_TASKS` tasks."""
    return all(k in f for k in MEASURED) and f.get("feature_tasks") == FEATURE_TASKS


def family_vector(f: dict[str, Any]) -> list[float]:
    """:data:`FAMILY_FEATURES` of a family's features."""
    gap = abs(f["optimum"] - f["random_mean"]) if f.get("has_optimum") else 0.0
    scale = gap or abs(f["random_mean"]) or 1.0
    return [math.log1p(f["obs_dim"]), math.log1p(f["actions"]), float(f["discrete"]),
            float(f["kind"] == "regression"), math.log1p(f["horizon"]),
            f["random_spread"] / scale, float(f.get("has_optimum", False)),
            f["reward_density"]]


def strategy_vector(algo: str, options: dict[str, Any], iterations: int) -> list[float]:
    """:data:`STRATEGY_FEATURES` of a strategy: the kind of learner (gradient-based or not),
    the algorithm (one-hot) and its settings. A setting the algorithm has not gets a fixed
    value (0 for the inner step size and steps of a learner that takes no gradient steps at
    meta-test time, 1 episode for a learner with no trials), so rows stay comparable."""
    width = options.get("hidden", 64)
    width = width[0] if isinstance(width, list | tuple) else width
    gradient = algo in GRADIENT_BASED
    lr = options.get("outer_lr" if gradient else "lr", 1e-3)
    return [float(gradient), float(algo == "maml-trpo"), float(algo == "maml-ppo"),
            float(algo == "maml-vpg"), float(algo == "rl2"), float(algo == "task-embedding"),
            float(algo == "pearl"),
            math.log10(float(options.get("inner_lr", 0.1)) + 1e-3) if gradient else 0.0,
            float(options.get("inner_steps", 1)) if gradient else 0.0,
            math.log2(max(1, int(width))), math.log10(max(1, iterations)),
            math.log10(float(lr)), math.log2(max(1, int(options.get("trial_episodes", 1))))]


def normalised(score: float, f: dict[str, Any], best: float | None = None) -> float:
    """``score`` on a per-family scale: 0 at the random policy, 1 at the exact optimum or,
    where the family knows none, at ``best`` (the best score known for it)."""
    top = f["optimum"] if f.get("has_optimum") else best
    if top is None:
        top = score
    sign = 1.0 if f["higher_is_better"] else -1.0
    gap = sign * (top - f["random_mean"])
    if gap <= 0:
        gap = max(f["random_spread"], 1e-9)
    return sign * (score - f["random_mean"]) / gap


def env_steps(config: Any) -> int | None:
    """Environment steps (labelled points for regression) a run's training takes."""
    o, it = config.algo_options, config.run.iterations
    fam = config.task_options
    if config.algo.startswith("maml-"):
        if fam.kind == "regression":
            return int(it * o.meta_batch_size * 2 * o.shots)
        return int(it * o.meta_batch_size * o.episodes_per_task * (o.inner_steps + 1)
                   * fam.horizon)
    if config.algo == "rl2":
        return int(it * o.trials_per_iteration * o.trial_episodes * fam.horizon)
    return None
