"""The family checker: what the test suite asserts of every registered family, as a public
function a user runs on their own (``adaptrl check mypkg.envs:MyFamily``).

:func:`check_family` returns a list of problems, empty when the family passes:

* every family: tasks are pytrees with a leading batch axis; held-out tasks are
  deterministic and a longer draw starts with a shorter one; meta-train draws depend on the
  key and never coincide with held-out tasks, nor does any held-out task equal a task of
  the fixed meta-train pool (``train_pool``); task leaves are finite (families with
  ``finite_tasks``, such as cheetah-dir's two directions, share tasks between the splits);
* JAX-native RL families: ``reset``/``step`` trace under ``jit`` and ``vmap``, give the
  declared shapes and dtypes (float32 observations and rewards, bool done), are
  deterministic, and batched equals unbatched;
* host families: the environment resets with a task and a seed, observations fit the
  declared space, steps give finite float rewards and bool flags, and the same seed gives
  the same episode;
* regression families: ``data`` gives ``[n, input_dim]`` and ``[n, output_dim]`` arrays.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.tasks.base import HostFamily, RegressionFamily, RLFamily, TaskFamily


def _same(a: Any, b: Any) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb, strict=True))


def _check_tasks(family: TaskFamily, problems: list[str]) -> Any:
    try:
        test = family.tasks("test", 5)
        again = family.tasks("test", 8)
        train = family.tasks("train", 5, key=jax.random.PRNGKey(0))
        train_again = family.tasks("train", 5, key=jax.random.PRNGKey(0))
        other = family.tasks("train", 5, key=jax.random.PRNGKey(1))
    except Exception as e:  # noqa: BLE001 - the checker reports, it does not crash
        problems.append(f"sampling tasks raised {type(e).__name__}: {e}")
        return None
    leaves = jax.tree.leaves(test)
    if not leaves:
        problems.append("a task has no parameters (an empty pytree)")
        return None
    if any(np.shape(x)[:1] != (5,) for x in leaves + jax.tree.leaves(train)):
        problems.append("tasks(split, 5) must give leaves with leading axis 5")
        return None
    if not all(np.all(np.isfinite(np.asarray(x, np.float64))) for x in leaves):
        problems.append("task parameters are not finite")
    if not _same(test, family.tasks("test", 5)):
        problems.append("held-out tasks differ between two draws (not deterministic)")
    if not _same(jax.tree.map(lambda x: x[:5], again), test):
        problems.append("the first 5 of 8 held-out tasks differ from 5 held-out tasks")
    if not _same(train, train_again):
        problems.append("the same key gives different meta-train tasks")
    if not any(np.ptp(np.asarray(x)) > 0 for x in leaves + jax.tree.leaves(train)):
        problems.append("every task is the same: the family has no task variation")
    elif _same(train, other):
        problems.append("different keys give the same meta-train tasks")
    if not type(family).finite_tasks:
        if any(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(train), leaves, strict=True)
               if np.ptp(np.asarray(b)) > 0):
            problems.append("meta-train tasks coincide with held-out tasks")
        _check_pool(family, problems)
    return test


def _flat_tasks(tasks: Any) -> np.ndarray:
    """One row per task: all its parameters, flattened."""
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(tasks)]
    return np.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)


def _check_pool(family: TaskFamily, problems: list[str]) -> None:
    """A family with a fixed meta-train pool: its held-out tasks are none of the pool's."""
    pool = family.pool()
    if pool is None:
        return
    held_out = _flat_tasks(family.tasks("test", 30))
    rows = _flat_tasks(pool)
    if any((np.abs(rows - t).max(axis=1) == 0).any() for t in held_out):
        problems.append("a held-out task is in the meta-train pool")


def _zero_action(space: gym.Space):
    if isinstance(space, gym.spaces.Discrete):
        return jnp.array(0, jnp.int32)
    return jnp.zeros(space.shape, jnp.float32)


def _check_jax_env(family: RLFamily, tasks: Any, problems: list[str]) -> None:
    obs_shape = tuple(family.observation_space.shape)

    def run(task, key):
        obs, state = family.reset(key, task)
        obs2, _, r, d, _ = family.step(key, state, _zero_action(family.action_space), task)
        return obs, obs2, r, d

    tasks3 = jax.tree.map(lambda x: x[:3], tasks)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    try:
        out = jax.jit(jax.vmap(run))(tasks3, keys)
        out_again = jax.jit(jax.vmap(run))(tasks3, keys)
        single = jax.jit(run)(jax.tree.map(lambda x: x[1], tasks3), keys[1])
    except Exception as e:  # noqa: BLE001
        problems.append(f"reset/step do not trace under jit and vmap "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:200]})")
        return
    obs, obs2, r, d = out
    for what, o in (("reset", obs), ("step", obs2)):
        if o.shape != (3, *obs_shape):
            problems.append(f"{what} gives observations of shape {o.shape[1:]}, the "
                            f"observation space says {obs_shape}")
    if obs2.dtype != jnp.float32 or r.dtype != jnp.float32 or d.dtype != jnp.bool_:
        problems.append(f"dtypes must be float32 obs and reward, bool done; got {obs2.dtype}, "
                        f"{r.dtype}, {d.dtype}")
    if r.shape != (3,) or d.shape != (3,):
        problems.append("reward and done must be scalars per step")
    if not _same(out, out_again):
        problems.append("reset/step are not deterministic for a fixed key")
    if not all(np.allclose(np.asarray(a)[1], np.asarray(b), rtol=1e-5, atol=1e-6)
               for a, b in zip(out, single, strict=True)):
        problems.append("vmap-ed reset/step differ from unbatched ones")


def _host_episode(family: HostFamily, task: dict, seed: int, steps: int):
    env = family.make_env()
    try:
        obs, _ = env.reset(seed=seed, options={"task": task})
        space = family.action_space
        space.seed(seed)
        trace: list[Any] = [np.asarray(obs)]
        for _ in range(steps):
            obs, r, term, trunc, _ = env.step(space.sample())
            trace.append((np.asarray(obs), r, term, trunc))
            if term or trunc:
                break
        return trace
    finally:
        env.close()


def _check_host_env(family: HostFamily, tasks: Any, problems: list[str]) -> None:
    task = jax.tree.map(lambda x: np.asarray(x[0]), jax.device_get(tasks))
    space = family.observation_space
    try:
        trace = _host_episode(family, task, 0, min(family.horizon, 20))
        again = _host_episode(family, task, 0, min(family.horizon, 20))
    except Exception as e:  # noqa: BLE001
        problems.append(f"the environment raised {type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}")
        return
    first = trace[0]
    if first.shape != tuple(space.shape):
        problems.append(f"reset gives observations of shape {first.shape}, the observation "
                        f"space says {tuple(space.shape)}")
    if not np.issubdtype(first.dtype, np.floating):
        problems.append(f"observations must be floating point, got {first.dtype}")
    for obs, r, term, trunc in trace[1:]:
        if not isinstance(r, float | np.floating) or not np.isfinite(r):
            problems.append(f"step must give a finite float reward, got {r!r}")
            break
        if not isinstance(term, bool | np.bool_) or not isinstance(trunc, bool | np.bool_):
            problems.append("step must give bool terminated and truncated flags")
            break
        if obs.shape != tuple(space.shape) or not np.all(np.isfinite(obs)):
            problems.append("a step gave an observation of the wrong shape or non-finite")
            break
    flat = lambda tr: [np.asarray(x, np.float64) for item in tr  # noqa: E731
                       for x in (item if isinstance(item, tuple) else (item,))]
    if len(trace) != len(again) or not all(
            np.array_equal(a, b) for a, b in zip(flat(trace), flat(again), strict=True)):
        problems.append("the same task, seed and actions give different episodes")


def _check_regression(family: RegressionFamily, tasks: Any, problems: list[str]) -> None:
    task = jax.tree.map(lambda x: x[0], tasks)
    try:
        x, y = jax.jit(lambda k: family.data(k, task, 7))(jax.random.PRNGKey(0))
    except Exception as e:  # noqa: BLE001
        problems.append(f"data does not trace under jit ({type(e).__name__}: {e})")
        return
    if x.shape != (7, family.input_dim) or y.shape != (7, family.output_dim):
        problems.append(f"data(key, task, 7) gives {x.shape} and {y.shape}, expected "
                        f"{(7, family.input_dim)} and {(7, family.output_dim)}")


def check_family(family: TaskFamily) -> list[str]:
    """Problems found in ``family`` (empty if it passes every check)."""
    problems: list[str] = []
    if not isinstance(family, TaskFamily):
        return [f"{type(family).__name__} is not a TaskFamily"]
    if isinstance(family, RLFamily | HostFamily):
        try:
            spaces = family.observation_space, family.action_space
        except Exception as e:  # noqa: BLE001
            return [f"its spaces cannot be built ({type(e).__name__}: {e})"]
        if not isinstance(spaces[0], gym.spaces.Box) or len(spaces[0].shape) != 1:
            problems.append("the observation space must be a flat Box")
        if not isinstance(spaces[1], gym.spaces.Box | gym.spaces.Discrete):
            problems.append("the action space must be a Box or Discrete")
        if not isinstance(family.horizon, int) or family.horizon < 1:
            problems.append("horizon must be a positive integer")
    tasks = _check_tasks(family, problems)
    if tasks is None or problems:
        return problems
    if isinstance(family, RLFamily):
        _check_jax_env(family, tasks, problems)
    elif isinstance(family, HostFamily):
        _check_host_env(family, tasks, problems)
    elif isinstance(family, RegressionFamily):
        _check_regression(family, tasks, problems)
    return problems
