"""Per-task replay buffers as fixed-size JAX arrays (PEARL's per-task buffers, Rakelly et
al. 2019): a pytree that lives in the training state, so it is saved in every checkpoint
and a resumed run continues from exactly the data it had.

A buffer holds ``P`` tasks (the training pool) of ``capacity`` transitions each: arrays
``[P, capacity, ...]``, the number of transitions ``size [P]`` and the next write position
``ptr [P]`` of each task. Writes go round the ring (the oldest transitions are overwritten);
samples are uniform, with replacement, over a task's stored transitions.

Transitions come from episodes (:class:`~adaptrl.sampling.rollout.Trajectory`): step ``t``
is kept if it was really taken (``mask``) and its next observation is known — every step
but the last of an episode that ran to its horizon, whose next observation no sampler
returns (a step that *terminated* the episode is kept: its target does not bootstrap).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from adaptrl.sampling.rollout import Trajectory


class Transitions(NamedTuple):
    """Flat transitions ``[..., n, ...]``."""

    obs: jax.Array  # [n, obs_dim]
    action: jax.Array  # [n, action_dim] the action the environment received
    reward: jax.Array  # [n]
    next_obs: jax.Array  # [n, obs_dim]
    terminal: jax.Array  # [n] 1.0 where the step ended the episode by termination


class Buffer(NamedTuple):
    data: Transitions  # arrays [P, capacity, ...]
    size: jax.Array  # [P] int32 transitions stored per task
    ptr: jax.Array  # [P] int32 next write position per task


def empty(tasks: int, capacity: int, obs_dim: int, action_dim: int) -> Buffer:
    z = lambda *shape: jnp.zeros((tasks, capacity, *shape), jnp.float32)  # noqa: E731
    data = Transitions(z(obs_dim), z(action_dim), z(), z(obs_dim), z())
    zeros = jnp.zeros((tasks,), jnp.int32)
    return Buffer(data, zeros, zeros)


def from_episodes(traj: Trajectory) -> tuple[Transitions, jax.Array]:
    """Transitions of episodes ``[E, T, ...]`` flattened to ``[E * T, ...]``, and the flag
    ``[E * T]`` of those to keep (see the module docstring)."""
    horizon = traj.obs.shape[-2]
    next_obs = jnp.concatenate([traj.obs[:, 1:], traj.obs[:, -1:]], axis=1)
    last = jnp.arange(horizon) == horizon - 1
    keep = (traj.mask > 0) & (traj.done | ~last)
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    tr = Transitions(flat(traj.obs), flat(traj.action).astype(jnp.float32),
                     flat(traj.reward), flat(next_obs), flat(traj.done).astype(jnp.float32))
    return tr, flat(keep)


def add(buffer: Buffer, tasks: jax.Array, data: Transitions, keep: jax.Array) -> Buffer:
    """Append each task's kept transitions: ``tasks [n]`` distinct pool indices, ``data``
    arrays ``[n, m, ...]`` and ``keep [n, m]``; at most ``capacity`` of them per task."""
    capacity = buffer.data.reward.shape[1]
    order = jnp.argsort(~keep, axis=1, stable=True)  # kept transitions first, in order
    data = jax.tree.map(lambda x: jnp.take_along_axis(
        x, order.reshape(*order.shape, *([1] * (x.ndim - 2))), axis=1), data)
    count = keep.sum(1).astype(jnp.int32)
    j = jnp.arange(keep.shape[1])
    pos = (buffer.ptr[tasks][:, None] + j) % capacity
    pos = jnp.where(j < count[:, None], pos, capacity)  # out of range: dropped
    rows = tasks[:, None]
    new = jax.tree.map(lambda b, x: b.at[rows, pos].set(x, mode="drop"), buffer.data, data)
    return Buffer(new, buffer.size.at[tasks].set(jnp.minimum(buffer.size[tasks] + count,
                                                             capacity)),
                  buffer.ptr.at[tasks].set((buffer.ptr[tasks] + count) % capacity))


def clear(buffer: Buffer, tasks: jax.Array) -> Buffer:
    """Forget the transitions of ``tasks [n]`` (their arrays are overwritten from the start)."""
    return buffer._replace(size=buffer.size.at[tasks].set(0), ptr=buffer.ptr.at[tasks].set(0))


def sample(buffer: Buffer, task: jax.Array, n: int, *, key: jax.Array) -> Transitions:
    """``n`` transitions of one task, uniformly with replacement: arrays ``[n, ...]``."""
    idx = jax.random.randint(key, (n,), 0, jnp.maximum(buffer.size[task], 1))
    return jax.tree.map(lambda x: x[task, idx], buffer.data)
