"""The policy's half of the host sampler, run inside every worker on its block of slots.

Each worker of :class:`~adaptrl.sampling.host.HostSampler` receives, once per collection,
the policy, its parameters, its slots' tasks, reset seeds and per-step action keys, and
runs the whole collection itself: one jitted policy call on its block per step, the block's
environments stepped in between, every array recorded locally and sent back once at the
end. No message crosses a pipe per step and the main process is idle while the workers
run, so the physics has every core (an earlier design computed the actions in the main
process, one round trip per step: 41% slower than raw stepping on 2 cores).

Determinism. Every slot's action must depend only on its own parameters, observation and
key, not on how many slots a worker holds: XLA's matrix product gives rows that differ in
the last bits between batch sizes. So the policy runs on fixed *chunks* of :data:`CHUNK`
slots that share parameters (episodes of one task under MAML's per-task parameters; any
consecutive slots under shared ones), padded to full size, vmapped over chunks; workers
hold whole chunks (:func:`chunks`). A slot's chunk and its row in it never depend on the
workers, so the arrays are the same for any number of them, locally or on Ray. The rules of
a trial (inputs, memory, masking) are those of :mod:`adaptrl.sampling.trials`; the layouts
those of :mod:`adaptrl.sampling.rollout`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptrl import policies
from adaptrl.sampling import trials as trial_rules
from adaptrl.sampling.rollout import Trajectory
from adaptrl.sampling.trials import Trial

#: most slots per policy chunk (see the module's docstring)
CHUNK = 16


def chunks(tasks: int, per_task: int, shared: bool) -> tuple[int, list[tuple[int, int]]]:
    """The chunks of a collection of ``per_task`` consecutive slots for each of ``tasks``
    tasks: their size, and in slot order ``(task whose parameters it uses, slots)``. Under
    ``shared`` parameters chunks run across tasks (their task is 0); otherwise each task's
    slots are split into chunks of (nearly) equal size."""
    if shared:
        total = tasks * per_task
        size = min(CHUNK, total)
        return size, [(0, min(size, total - i)) for i in range(0, total, size)]
    size = -(-per_task // -(-per_task // CHUNK))  # ceil(per_task / ceil(per_task / CHUNK))
    return size, [(t, min(size, per_task - i)) for t in range(tasks)
                  for i in range(0, per_task, size)]


def _layout(size: int, block: list[tuple[int, int]]):
    """A block's chunks as ``(params index [k], slot of each padded row [k * size],
    padded row of each slot [B])``; padding rows repeat their chunk's first slot."""
    index = np.array([p for p, _ in block], int)
    gather = np.zeros(len(block) * size, int)
    rows, first = [], 0
    for j, (_, count) in enumerate(block):
        gather[j * size:(j + 1) * size] = first
        gather[j * size:j * size + count] = np.arange(first, first + count)
        rows.append(np.arange(j * size, j * size + count))
        first += count
    return index, gather, np.concatenate(rows)


def _chunked(fn, params, per_slot_args, gather, real):
    """``fn(params, *slot args)`` on every slot: gathered to padded chunks
    ``[k, size, ...]`` (``k``: the leading axis of ``params``), vmapped over rows
    (parameters fixed) and chunks, and scattered back to slots."""
    k = jax.tree.leaves(params)[0].shape[0]
    size = gather.shape[0] // k
    padded = jax.tree.map(lambda x: x[gather].reshape(k, size, *x.shape[1:]), per_slot_args)
    rows = jax.vmap(lambda p, a: jax.vmap(lambda *b: fn(p, *b))(*a))
    out = rows(params, padded)
    return jax.tree.map(lambda x: x.reshape(k * size, *x.shape[2:])[real], out)


@functools.partial(jax.jit, static_argnums=0)
def _act_episodes(policy, params, obs, keys, t, gather, real):
    """Every slot's action and its log-probability at step ``t`` (``keys [B, T, 2]`` stay
    on the device for the whole collection)."""

    def one(p, o, k):
        dist = policy.apply(p, o)
        action = policies.sample(dist, key=k)
        return action, policies.log_prob(dist, action)

    return _chunked(one, params, (obs, keys[:, t]), gather, real)


def _trial_step(action_space, policy, greedy, params, memory, last, obs, keys, s, context,
                gather, real):
    """One step of every trial: remember the previous step (``last``: alive, new memory,
    action, reward, ended; nothing is remembered where ``alive`` is False, as on the first
    step), then act with ``keys[:, s]``. Returns the memory ``(h, prev action, prev reward,
    prev done)`` and ``(inputs, new memory, action, log_prob, value)``."""
    alive, h_new, action, reward, ended = last
    remember = functools.partial(trial_rules.remember, action_space)
    memory = jax.vmap(remember)(alive, h_new, *memory[:1], action, reward, ended, *memory[1:])
    h, *prev = memory

    def one(p, h, o, pa, pr, pd, k, c=None):
        x = trial_rules.make_input(o, pa, pr, pd)
        return (x, *trial_rules.act(policy, p, c, greedy, h, x, k))

    args = (h, obs, *prev, keys[:, s])
    return memory, _chunked(one, params, args if context is None else (*args, context),
                            gather, real)


@functools.lru_cache(maxsize=8)
def _trial_stepper(family):
    """:func:`_trial_step` jitted for ``family`` (its action space decides the action's
    encoding; Gymnasium spaces cannot be static arguments)."""
    return jax.jit(functools.partial(_trial_step, family.action_space), static_argnums=(0, 1))


def _per_chunk(params: Any, block: tuple[int, list[tuple[int, int]]]):
    """``params`` (a leading axis over the block's tasks) gathered to one copy per chunk,
    and the block's padded layout."""
    index, gather, real = _layout(*block)
    return (jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[index]), params),
            jnp.asarray(gather), jnp.asarray(real))


def episodes(core, policy, params: Any, block: tuple[int, list[tuple[int, int]]],
             tasks: list[dict], seeds: list[int], keys: np.ndarray) -> dict[str, np.ndarray]:
    """The block's episodes, in its chunks ``block`` (:func:`chunks`: their size, and
    each one's task index into ``params``' leading axis and number of slots): slot ``i``
    resets with ``seeds[i]`` and acts with ``keys[i, t]`` at step ``t``. The
    :class:`~adaptrl.sampling.rollout.Trajectory` fields as arrays ``[B, T, ...]``."""
    params, gather, real = _per_chunk(params, block)
    steps, step_keys = keys.shape[1], jnp.asarray(keys)  # on the device for the whole loop
    obs = core.reset(tasks, seeds)
    alive = np.ones(len(tasks), bool)
    rec: dict[str, list] = {k: [] for k in Trajectory._fields}
    for t in range(steps):
        action, log_prob = _act_episodes(policy, params, obs, step_keys, t, gather, real)
        action = np.asarray(action)
        next_obs, reward, terminated, truncated, success = core.step(action)
        rec["obs"].append(obs)
        rec["action"].append(action)
        rec["log_prob"].append(np.asarray(log_prob))
        rec["mask"].append(alive.astype(np.float32))
        rec["t"].append(np.full(len(alive), t, np.int32))
        rec["reward"].append(np.where(alive, reward, 0.0).astype(np.float32))
        rec["done"].append(terminated | ~alive)  # a time limit is not terminal
        rec["success"].append(success & alive)
        alive = alive & ~(terminated | truncated)
        obs = next_obs
        core.beat()
    return {k: np.stack(v, 1) for k, v in rec.items()}


def trials(core, policy, params: Any, block: tuple[int, list[tuple[int, int]]],
           tasks: list[dict], first_seeds: list[int], keys: np.ndarray, reset_seeds: np.ndarray,
           context: np.ndarray | None, horizon: int, greedy: bool) -> dict[str, np.ndarray]:
    """The block's trials under the shared recurrent-policy ``params`` (a leading axis of
    one) in chunks ``block``: slot ``i`` resets with ``first_seeds[i]``, acts with
    ``keys[i, s]`` at step ``s`` and, at the end of each episode but the last, resets with
    ``reset_seeds[i, s]``. The :class:`~adaptrl.sampling.trials.Trial` fields as arrays
    ``[B, S, ...]``."""
    n, steps, step_keys = len(tasks), keys.shape[1], jnp.asarray(keys)
    params, gather, real = _per_chunk(params, block)
    h = jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), policy.initial_carry())
    prev = [jnp.broadcast_to(x, (n, *x.shape)) for x in trial_rules.initial_inputs(core.family)]
    memory = (h, *prev)
    ctx = None if context is None else jnp.asarray(context)
    step = _trial_stepper(core.family)
    obs = core.reset(tasks, first_seeds)
    alive = np.ones(n, bool)
    # the first step remembers nothing (alive False); its "new memory" and action are dummies
    action0 = np.zeros((n, *core.family.action_space.shape),
                       core.family.action_space.dtype)
    last = (np.zeros(n, bool), h, action0, np.zeros(n, np.float32), np.zeros(n, bool))
    rec: dict[str, list] = {k: [] for k in Trial._fields}
    for s in range(steps):
        memory, (x, h_new, action, log_prob, value) = step(
            policy, greedy, params, memory, last, obs, step_keys, s, ctx, gather, real)
        np_action = np.asarray(action)
        end_of_episode = (s % horizon) + 1 == horizon
        then_reset = (tasks, [int(v) for v in reset_seeds[:, s]]) \
            if end_of_episode and s + 1 < steps else None  # the next episode of each task
        next_obs, reward, terminated, truncated, success = core.step(np_action, then_reset)
        ended = (terminated | truncated | end_of_episode) & alive
        rec["inputs"].append(np.asarray(x))
        rec["action"].append(np_action)
        rec["mask"].append(alive.astype(np.float32))
        rec["log_prob"].append(np.asarray(log_prob))
        rec["value"].append(np.asarray(value))
        rec["reward"].append(np.where(alive, reward, 0.0).astype(np.float32))
        rec["done"].append(ended)
        rec["success"].append(success & alive)
        last = (alive, h_new, action, reward, ended)
        if end_of_episode:  # next_obs is the reset of the next episode (if any)
            obs, alive = next_obs, np.ones_like(alive)
        else:
            obs = np.where(alive[:, None], next_obs, obs)
            alive = alive & ~(terminated | truncated)
        core.beat()
    return {k: np.stack(v, 1) for k, v in rec.items()}
