"""The host sampler: a host family's environments stepped in parallel worker processes
(or Ray actors), the policy in one jitted call per step on the whole batch.

Layout. Every episode (MAML) or trial (RL²) of a collection has its own environment
*slot*. The tasks are split into two halves, the *slot groups*; each group's slots are
split into contiguous blocks, one per worker, and each worker steps its block of each group
as one Gymnasium vector environment (``SyncVectorEnv``). The two groups are pipelined: the
main process sends one group's actions, computes the other group's actions while the
workers step the first (one jitted policy call per group and step), and so on, so the
workers' physics never waits for the policy. The arrays that come back have exactly the
layout and masking of the jitted samplers (:mod:`adaptrl.sampling.rollout`,
:mod:`adaptrl.sampling.trials`).

Seeding. Every random draw comes from the per-task keys the algorithm passes in: each
episode's environment seed and each step's action noise are functions of its own key, not
of the worker that steps it, so the same seed gives the same trajectories on every run, for
any number of workers, locally or on Ray.

The workers — processes here, Ray actors in :mod:`adaptrl.sampling.ray_workers` — their
explicit autoreset and their failure reports live in :mod:`adaptrl.sampling.workers`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptrl import policies
from adaptrl.sampling import trials as trial_rules
from adaptrl.sampling.base import Sampler
from adaptrl.sampling.rollout import Trajectory
from adaptrl.sampling.settings import SamplerSettings
from adaptrl.sampling.trials import Trial
from adaptrl.sampling.workers import ProcessPool, SamplerError
from adaptrl.tasks.base import HostFamily

__all__ = ["HostSampler", "SamplerError"]


# ---- the sampler --------------------------------------------------------------------------
def _episode_plan(keys: jax.Array, num: int, horizon: int):
    """Per task key: each episode's reset seed ``[N, num]`` and each step's action key
    ``[N, num, T, 2]`` — the split of :func:`adaptrl.sampling.rollout.episode`."""

    def one_episode(key):
        k_reset, k_steps = jax.random.split(key)
        step_keys = jax.random.split(k_steps, horizon)
        act_keys = jax.vmap(lambda k: jax.random.split(k)[0])(step_keys)
        return jax.random.randint(k_reset, (), 0, 2**31 - 1), act_keys

    return jax.vmap(lambda k: jax.vmap(one_episode)(jax.random.split(k, num)))(keys)


def _trial_plan(keys: jax.Array, steps: int):
    """Per trial key: the first reset seed ``[N]``, each step's action key ``[N, S, 2]``
    and the seed of a reset after each step ``[N, S]`` — the split of
    :func:`adaptrl.sampling.trials.trial`."""

    def one_trial(key):
        k_reset, k_steps = jax.random.split(key)
        split = jax.vmap(lambda k: jax.random.split(k, 3))(jax.random.split(k_steps, steps))
        seed = lambda k: jax.random.randint(k, (), 0, 2**31 - 1)  # noqa: E731
        return seed(k_reset), split[:, 0], jax.vmap(seed)(split[:, 2])

    return jax.vmap(one_trial)(keys)


def _act_episodes(policy, per_task, params, obs, keys):
    """Actions and log-probabilities for ``obs [N, E, d]`` under per-task (or shared)
    ``params`` — one step of :func:`adaptrl.sampling.rollout.episode` for every slot."""

    def one(p, o, k):
        dist = policy.apply(p, o)
        action = policies.sample(dist, key=k)
        return action, policies.log_prob(dist, action)

    per_episode = jax.vmap(one, in_axes=(None, 0, 0))
    return jax.vmap(per_episode, in_axes=(0 if per_task else None, 0, 0))(params, obs, keys)


def _act_trials(policy, greedy, params, h, obs, prev_action, prev_reward, prev_done, keys,
                context):
    """One policy step of every trial: ``(inputs, new memory, action, log_prob, value)``."""

    def one(h, o, pa, pr, pd, k, c):
        x = trial_rules.make_input(o, pa, pr, pd)
        return (x, *trial_rules.act(policy, params, c, greedy, h, x, k))

    ctx_axis = None if context is None else 0
    return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, ctx_axis))(
        h, obs, prev_action, prev_reward, prev_done, keys, context)


def _remember(action_space, alive, h_new, h, action, reward, ended, prev_action, prev_reward,
              prev_done):
    fn = functools.partial(trial_rules.remember, action_space)
    return jax.vmap(fn)(alive, h_new, h, action, reward, ended, prev_action, prev_reward,
                        prev_done)


class HostSampler(Sampler):
    """Collects episodes and trials of a :class:`~adaptrl.tasks.base.HostFamily` in worker
    processes (``settings.workers``, default one per core) or on a Ray cluster
    (``settings.ray``). Workers start on the first collection and are reused.

    The tasks of a collection are split into two halves, each a *slot group* spread over
    all workers, and the two are stepped in a pipeline: while the workers step one
    group's physics, the main process computes the other group's actions (and records its
    step), so neither the policy call nor the pipe's round trip leaves the workers idle.
    The split depends only on the number of tasks, never on the workers, so the same seed
    gives the same arrays for any number of them."""

    jittable = False

    def __init__(self, family: HostFamily, settings: SamplerSettings | None = None):
        self.family = family
        self.settings = settings or SamplerSettings()
        self._pool: Any = None
        self._blocks: list[list[np.ndarray]] = []  # [group][worker]: global slot indices
        self._plan_episodes = jax.jit(_episode_plan, static_argnums=(1, 2))
        self._plan_trials = jax.jit(_trial_plan, static_argnums=(1,))
        self._act_episodes = jax.jit(_act_episodes, static_argnums=(0, 1))
        self._act_trials = jax.jit(_act_trials, static_argnums=(0, 1))
        self._remember = jax.jit(functools.partial(_remember, family.action_space))

    # ---- workers ------------------------------------------------------------------------
    def num_workers(self) -> int:
        return self.settings.workers or os.cpu_count() or 1

    @staticmethod
    def _task_groups(n: int) -> list[slice]:
        """The tasks of each slot group: two halves (one group for a single task)."""
        return [slice(0, n)] if n < 2 else [slice(0, n // 2), slice(n // 2, n)]

    def _start(self, groups: list[slice], per_task: int) -> None:
        """Workers for the slot groups of ``groups`` (task ranges, ``per_task`` slots
        each), restarted if their number changes."""
        sizes = [(g.stop - g.start) * per_task for g in groups]
        n = max(1, min(self.num_workers(), *sizes))
        if self._pool is None or len(self._pool) != n:
            self.close()
            if self.settings.ray:
                from adaptrl.sampling.ray_workers import RayPool

                self._pool = RayPool(self.family, n, self.settings.ray, self.settings.timeout)
            else:
                self._pool = ProcessPool(self.family, n, self.settings.timeout)
        self._blocks = [np.array_split(np.arange(g.start * per_task, g.stop * per_task), n)
                        for g in groups]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _describers(self, group: int, tasks: list[dict], per_task: int):
        blocks = self._blocks[group]

        def task_name(slot: int) -> str:
            i = slot // per_task
            params = ", ".join(f"{k}={float(np.asarray(v).reshape(-1)[0]):.4g}"
                               if np.asarray(v).size == 1 else f"{k}=<{np.asarray(v).size}>"
                               for k, v in tasks[slot].items())
            return f"task {i} ({params})" if params else f"task {i}"

        def describe(w: int) -> str:
            block = blocks[w]
            first, last = int(block[0]) // per_task, int(block[-1]) // per_task
            where = f"task {first}" if first == last else f"tasks {first}-{last}"
            return f"{getattr(self.family, 'env_id', 'host')} worker {w} stepping {where}"

        return task_name, describe

    def _send(self, group: int, command: str, per_worker: list[tuple], tasks: list[dict],
              per_task: int) -> Any:
        _, describe = self._describers(group, tasks, per_task)
        try:
            return self._pool.send([(command, (group, *p)) for p in per_worker], describe)
        except SamplerError:
            self.close()
            raise

    def _receive(self, group: int, sent: Any, tasks: list[dict], per_task: int) -> list[Any]:
        task_name, describe = self._describers(group, tasks, per_task)
        try:
            replies = self._pool.receive(sent, len(self._blocks[group]), describe)
        except SamplerError:
            self.close()
            raise
        out = []
        for w, (status, value) in enumerate(replies):
            if status == "env_error":
                slot, message = value
                self.close()
                raise SamplerError(f"{task_name(int(self._blocks[group][w][slot]))}: {message}")
            if status == "error":
                self.close()
                raise SamplerError(f"{describe(w)}: {value}")
            out.append(value)
        return out

    def _reset_calls(self, group: int, tasks: list[dict], seeds: np.ndarray) -> list[tuple]:
        return [([tasks[i] for i in b], [int(seeds[i]) for i in b])
                for b in self._blocks[group]]

    def _reset(self, group: int, tasks: list[dict], seeds: np.ndarray,
               per_task: int) -> np.ndarray:
        calls = self._reset_calls(group, tasks, seeds)
        sent = self._send(group, "reset", calls, tasks, per_task)
        return np.concatenate(self._receive(group, sent, tasks, per_task))

    def _send_step(self, group: int, actions: np.ndarray, tasks: list[dict], per_task: int,
                   reset_seeds: np.ndarray | None = None) -> Any:
        """Start one step of ``group`` (``actions`` for its slots, in order); with
        ``reset_seeds`` (for every slot of the collection) its block is reset after it."""
        first = int(self._blocks[group][0][0])
        calls = []
        for b, reset in zip(self._blocks[group], self._reset_calls(group, tasks, reset_seeds)
                            if reset_seeds is not None else [None] * len(self._blocks[group]),
                            strict=True):
            calls.append((actions[b - first], reset))
        return self._send(group, "step", calls, tasks, per_task)

    def _receive_step(self, group: int, sent: Any, tasks: list[dict], per_task: int):
        parts = self._receive(group, sent, tasks, per_task)
        return tuple(np.concatenate(x) for x in zip(*parts, strict=True))

    def simulator_steps(self) -> np.ndarray:
        """Simulator steps taken by every slot's environment so far (a test aid)."""
        calls = [("simulator_steps", ()) for _ in self._blocks[0]]
        per_worker = [v for _, v in self._pool.receive(self._pool.send(calls, str),
                                                       len(calls), str)]
        steps = np.zeros(sum(len(b) for blocks in self._blocks for b in blocks), int)
        for g, blocks in enumerate(self._blocks):
            for w, b in enumerate(blocks):
                steps[b] = per_worker[w][g]
        return steps

    @staticmethod
    def _task_list(tasks: Any, repeat: int) -> list[dict[str, np.ndarray]]:
        host = jax.device_get(tasks)
        n = jax.tree.leaves(host)[0].shape[0]
        one = [jax.tree.map(lambda x, i=i: np.asarray(x[i]), host) for i in range(n)]
        return [t for t in one for _ in range(repeat)]

    # ---- MAML: episodes under per-task parameters ---------------------------------------
    def episodes(self, policy, params, tasks, *, keys, num, per_task=True):
        n = int(keys.shape[0])
        T = self.family.horizon
        seeds, act_keys = self._plan_episodes(keys, num, T)
        seeds, act_keys = np.asarray(seeds).reshape(n * num), np.asarray(act_keys)
        slot_tasks = self._task_list(tasks, num)
        groups = self._task_groups(n)
        self._start(groups, num)
        obs = [self._reset(g, slot_tasks, seeds, num) for g in range(len(groups))]
        group_params = [jax.tree.map(lambda x, s=s: x[s], params) if per_task else params
                        for s in groups]
        alive = [np.ones((s.stop - s.start) * num, bool) for s in groups]
        rec = [{k: [] for k in Trajectory._fields} for _ in groups]
        sent: list[Any] = [None] * len(groups)

        def act(g: int, t: int) -> None:
            m, s = len(alive[g]), groups[g]
            action, log_prob = self._act_episodes(
                policy, per_task, group_params[g], jnp.asarray(obs[g].reshape(
                    s.stop - s.start, num, -1)), act_keys[s, :, t])
            flat_action = np.asarray(action).reshape(m, *action.shape[2:])
            sent[g] = self._send_step(g, flat_action, slot_tasks, num)
            r = rec[g]
            r["obs"].append(obs[g])
            r["action"].append(flat_action)
            r["log_prob"].append(np.asarray(log_prob).reshape(m))
            r["mask"].append(alive[g].astype(np.float32))
            r["t"].append(np.full(m, t, np.int32))

        def observe(g: int) -> None:
            next_obs, reward, terminated, truncated, success = self._receive_step(
                g, sent[g], slot_tasks, num)
            r, a = rec[g], alive[g]
            r["reward"].append(np.where(a, reward, 0.0).astype(np.float32))
            r["done"].append(terminated | ~a)  # a time limit is not terminal
            r["success"].append(success & a)
            alive[g] = a & ~(terminated | truncated)
            obs[g] = next_obs

        for t in range(T):
            for g in range(len(groups)):
                if t:
                    observe(g)
                act(g, t)
        for g in range(len(groups)):
            observe(g)
        return Trajectory(**{k: jnp.asarray(np.concatenate(
            [np.stack(r[k], 1).reshape(s.stop - s.start, num, T, *r[k][0].shape[1:])
             for r, s in zip(rec, groups, strict=True)])) for k in Trajectory._fields})

    # ---- RL²: trials with the recurrent state kept across episodes -----------------------
    def trials(self, policy, params, tasks, *, keys, episodes, greedy=False):
        n, T = int(keys.shape[0]), self.family.horizon
        S = episodes * T
        first_seed, act_keys, reset_seeds = (np.asarray(x) for x in self._plan_trials(keys, S))
        slot_tasks = self._task_list(tasks, 1)
        context = None
        if getattr(policy, "context_dim", 0):
            context = jax.vmap(self.family.task_features)(tasks)
        groups = self._task_groups(n)
        self._start(groups, 1)
        h, prev = [], []
        for s in groups:
            m = s.stop - s.start
            h.append(jax.tree.map(lambda x, m=m: jnp.broadcast_to(x, (m, *x.shape)),
                                  policy.initial_carry()))
            prev.append([jnp.broadcast_to(x, (m, *x.shape))
                         for x in trial_rules.initial_inputs(self.family)])
        obs = [self._reset(g, slot_tasks, first_seed, 1) for g in range(len(groups))]
        alive = [np.ones(s.stop - s.start, bool) for s in groups]
        rec = [{k: [] for k in Trial._fields} for _ in groups]
        sent: list[Any] = [None] * len(groups)
        pending: list[Any] = [None] * len(groups)  # (new memory, action) of the step sent

        def act(g: int, step: int) -> None:
            sl = groups[g]
            x, h_new, action, log_prob, value = self._act_trials(
                policy, greedy, params, h[g], jnp.asarray(obs[g]), *prev[g],
                act_keys[sl, step], None if context is None else context[sl])
            np_action = np.asarray(action)
            last = (step % T) + 1 == T and step + 1 < S  # the next episode of the same task
            sent[g] = self._send_step(g, np_action, slot_tasks, 1,
                                      reset_seeds[:, step] if last else None)
            pending[g] = (h_new, action)
            r = rec[g]
            r["inputs"].append(np.asarray(x))
            r["action"].append(np_action)
            r["mask"].append(alive[g].astype(np.float32))
            r["log_prob"].append(np.asarray(log_prob))
            r["value"].append(np.asarray(value))

        def observe(g: int, step: int) -> None:
            next_obs, reward, terminated, truncated, success = self._receive_step(
                g, sent[g], slot_tasks, 1)
            end_of_episode = (step % T) + 1 == T
            a = alive[g]
            ended = (terminated | truncated | end_of_episode) & a
            r = rec[g]
            r["reward"].append(np.where(a, reward, 0.0).astype(np.float32))
            r["done"].append(ended)
            r["success"].append(success & a)
            h_new, action = pending[g]
            h[g], *prev[g] = self._remember(jnp.asarray(a), h_new, h[g], action,
                                            jnp.asarray(reward), jnp.asarray(ended), *prev[g])
            if end_of_episode:  # next_obs is the reset of the next episode (if any)
                obs[g], alive[g] = next_obs, np.ones_like(a)
            else:
                obs[g] = np.where(a[:, None], next_obs, obs[g])
                alive[g] = a & ~(terminated | truncated)

        for step in range(S):
            for g in range(len(groups)):
                if step:
                    observe(g, step - 1)
                act(g, step)
        for g in range(len(groups)):
            observe(g, S - 1)
        return Trial(**{k: jnp.asarray(np.concatenate([np.stack(r[k], 1) for r in rec]))
                        for k in Trial._fields})
