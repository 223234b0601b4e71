"""Jitted rollouts for JAX-native families: ``lax.scan`` over time, ``vmap`` over episodes
(and, at the call site, over tasks). No Python loop runs per step, episode or task."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptrl import policies
from adaptrl.tasks.base import RLFamily


class Trajectory(NamedTuple):
    """One episode, time-major; leading axes are added by ``vmap``."""

    obs: jax.Array  # [T, obs_dim] observation the action was taken in
    action: jax.Array  # [T] or [T, action_dim] sampled (unclipped) action
    reward: jax.Array  # [T]
    done: jax.Array  # [T] the episode ended after this step
    mask: jax.Array  # [T] 1.0 for steps taken before the episode ended, else 0.0
    log_prob: jax.Array  # [T] log π(a|s) under the sampling policy
    success: jax.Array  # [T] the family's success flag (False where it has none)
    t: jax.Array  # [T] step index within the episode


def _episode_step(family: RLFamily, policy: policies.Policy, params, task, carry, key):
    obs, state, alive, t = carry
    k_act, k_env = jax.random.split(key)
    dist = policy.apply(params, obs)
    action = policies.sample(dist, key=k_act)
    next_obs, next_state, reward, done, info = family.step(k_env, state, action, task)
    mask = alive.astype(jnp.float32)
    out = Trajectory(
        obs=obs, action=action, reward=reward * mask, done=done | (~alive), mask=mask,
        log_prob=policies.log_prob(dist, action),
        success=info.get("success", jnp.array(False)) & alive, t=t,
    )
    return (next_obs, next_state, alive & ~done, t + 1), out


def episode(family: RLFamily, policy: policies.Policy, params: Any, task: Any, *,
            key: jax.Array) -> Trajectory:
    """One episode of ``family.horizon`` steps; steps after termination are masked."""
    k_reset, k_steps = jax.random.split(key)
    obs, state = family.reset(k_reset, task)
    body = functools.partial(_episode_step, family, policy, params, task)
    init = (obs, state, jnp.array(True), jnp.array(0, jnp.int32))
    _, traj = jax.lax.scan(body, init, jax.random.split(k_steps, family.horizon))
    return traj


def episodes(family: RLFamily, policy: policies.Policy, params: Any, task: Any, *,
             key: jax.Array, num: int) -> Trajectory:
    """``num`` independent episodes of one task: arrays ``[num, T, ...]``."""
    keys = jax.random.split(key, num)
    return jax.vmap(lambda k: episode(family, policy, params, task, key=k))(keys)


def episode_return(traj: Trajectory) -> jax.Array:
    """Undiscounted return of each episode (sum over the last axis)."""
    return traj.reward.sum(axis=-1)


def episode_success(traj: Trajectory) -> jax.Array:
    """Whether the success flag was hit at any step of each episode."""
    return traj.success.any(axis=-1).astype(jnp.float32)
