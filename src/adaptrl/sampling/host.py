"""The host sampler: a host family's environments stepped in parallel worker processes
(or Ray actors), each worker running the policy on its own block of environments.

Layout. Every episode (MAML) or trial (RL²) of a collection has its own environment
*slot*; the slots are split into contiguous blocks, one per worker, and each worker steps
its block as one Gymnasium vector environment (``SyncVectorEnv``). A collection is one
message to each worker — the policy, its parameters and the block's tasks, seeds and
action keys — and one reply with the block's recorded arrays
(:mod:`adaptrl.sampling.worker_rollouts`); the main process only plans and gathers. The
arrays have exactly the layout and masking of the jitted samplers
(:mod:`adaptrl.sampling.rollout`, :mod:`adaptrl.sampling.trials`).

Seeding. Every random draw comes from the per-task keys the algorithm passes in: each
episode's environment seed and each step's action noise are functions of its own key, not
of the worker that steps it, and each slot's action depends only on its own inputs, so the
same seed gives the same trajectories on every run, for any number of workers, locally or
on Ray.

The workers — processes here, Ray actors in :mod:`adaptrl.sampling.ray_workers` — their
explicit autoreset and their failure reports live in :mod:`adaptrl.sampling.workers`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from adaptrl.sampling import worker_rollouts
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


class HostSampler(Sampler):
    """Collects episodes and trials of a :class:`~adaptrl.tasks.base.HostFamily` in worker
    processes (``settings.workers``, default one per core) or on a Ray cluster
    (``settings.ray``). Workers start on the first collection and are reused; each runs
    the policy on its block of slots, so a collection costs one message each way."""

    jittable = False

    def __init__(self, family: HostFamily, settings: SamplerSettings | None = None):
        self.family = family
        self.settings = settings or SamplerSettings()
        self._pool: Any = None
        self._blocks: list[np.ndarray] = []  # [worker]: global slot indices
        self._chunks: list[tuple[int, list]] = []  # [worker]: (size, its policy chunks)
        self._plan_episodes = jax.jit(_episode_plan, static_argnums=(1, 2))
        self._plan_trials = jax.jit(_trial_plan, static_argnums=(1,))

    # ---- workers ------------------------------------------------------------------------
    def num_workers(self) -> int:
        return self.settings.workers or os.cpu_count() or 1

    def _start(self, plan: tuple[int, list[tuple[int, int]]]) -> None:
        """Workers for a collection's policy chunks (:func:`worker_rollouts.chunks`; at
        most one worker per chunk), restarted if their number changes; each worker gets
        a contiguous run of whole chunks."""
        size, chunks = plan
        n = max(1, min(self.num_workers(), len(chunks)))
        if self._pool is None or len(self._pool) != n:
            self.close()
            if self.settings.ray:
                from adaptrl.sampling.ray_workers import RayPool

                self._pool = RayPool(self.family, n, self.settings.ray, self.settings.timeout)
            else:
                self._pool = ProcessPool(self.family, n, self.settings.timeout)
        ends = np.cumsum([c for _, c in chunks])
        self._chunks, self._blocks = [], []
        for part in np.array_split(np.arange(len(chunks)), n):
            first = int(ends[part[0]] - chunks[part[0]][1])
            self._chunks.append((size, [chunks[j] for j in part]))
            self._blocks.append(np.arange(first, int(ends[part[-1]])))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _describers(self, tasks: list[dict], per_task: int):
        def task_name(slot: int) -> str:
            i = slot // per_task
            params = ", ".join(f"{k}={float(np.asarray(v).reshape(-1)[0]):.4g}"
                               if np.asarray(v).size == 1 else f"{k}=<{np.asarray(v).size}>"
                               for k, v in tasks[slot].items())
            return f"task {i} ({params})" if params else f"task {i}"

        def describe(w: int) -> str:
            block = self._blocks[w]
            first, last = int(block[0]) // per_task, int(block[-1]) // per_task
            where = f"task {first}" if first == last else f"tasks {first}-{last}"
            return f"{getattr(self.family, 'env_id', 'host')} worker {w} stepping {where}"

        return task_name, describe

    def _collect(self, command: str, per_worker: list[tuple], tasks: list[dict],
                 per_task: int, steps: int) -> dict[str, np.ndarray]:
        """Run ``command`` on every worker's block; its arrays, blocks concatenated in
        slot order."""
        task_name, describe = self._describers(tasks, per_task)
        try:
            sent = self._pool.send([(command, p) for p in per_worker], describe)
            replies = self._pool.receive(sent, len(per_worker), describe, steps)
        except SamplerError:
            self.close()
            raise
        out = []
        for w, (status, value) in enumerate(replies):
            if status == "env_error":
                slot, message = value
                self.close()
                raise SamplerError(f"{task_name(int(self._blocks[w][slot]))}: {message}")
            if status == "error":
                self.close()
                raise SamplerError(f"{describe(w)}: {value}")
            out.append(value)
        return {k: np.concatenate([o[k] for o in out]) for k in out[0]}

    def simulator_steps(self) -> np.ndarray:
        """Simulator steps taken by every slot's environment so far (a test aid)."""
        calls = [("simulator_steps", ()) for _ in self._blocks]
        replies = self._pool.receive(self._pool.send(calls, str), len(calls), str)
        return np.concatenate([np.asarray(v, int) for _, v in replies])

    @staticmethod
    def _task_list(tasks: Any, repeat: int) -> list[dict[str, np.ndarray]]:
        host = jax.device_get(tasks)
        n = jax.tree.leaves(host)[0].shape[0]
        one = [jax.tree.map(lambda x, i=i: np.asarray(x[i]), host) for i in range(n)]
        return [t for t in one for _ in range(repeat)]

    # ---- MAML: episodes under per-task parameters ---------------------------------------
    def episodes(self, policy, params, tasks, *, keys, num, per_task=True):
        n, T = int(keys.shape[0]), self.family.horizon
        seeds, act_keys = self._plan_episodes(keys, num, T)
        seeds = np.asarray(seeds).reshape(n * num)
        act_keys = np.asarray(act_keys).reshape(n * num, T, -1)
        slot_tasks = self._task_list(tasks, num)
        self._start(worker_rollouts.chunks(n, num, shared=not per_task))
        params = jax.device_get(params)
        calls = []
        for b, block in zip(self._blocks, self._chunks, strict=True):
            if per_task:  # the block's tasks' parameters; chunks index them from 0
                size, parts = block
                first, last = parts[0][0], parts[-1][0]
                block_params = jax.tree.map(lambda x, f=first, e=last: x[f:e + 1], params)
                block = (size, [(t - first, c) for t, c in parts])
            else:
                block_params = jax.tree.map(lambda x: np.asarray(x)[None], params)
            calls.append((policy, block_params, block, [slot_tasks[i] for i in b],
                          [int(seeds[i]) for i in b], act_keys[b]))
        out = self._collect("episodes", calls, slot_tasks, num, T)
        return Trajectory(**{k: jax.numpy.asarray(v.reshape(n, num, *v.shape[1:]))
                             for k, v in out.items()})

    # ---- RL²: trials with the recurrent state kept across episodes -----------------------
    def trials(self, policy, params, tasks, *, keys, episodes, greedy=False):
        n, T = int(keys.shape[0]), self.family.horizon
        S = episodes * T
        first_seed, act_keys, reset_seeds = (np.asarray(x) for x in self._plan_trials(keys, S))
        slot_tasks = self._task_list(tasks, 1)
        context = None
        if getattr(policy, "context_dim", 0):
            context = np.asarray(jax.vmap(self.family.task_features)(tasks))
        self._start(worker_rollouts.chunks(n, 1, shared=True))
        params = jax.tree.map(lambda x: np.asarray(x)[None], jax.device_get(params))
        calls = [(policy, params, block, [slot_tasks[i] for i in b],
                  [int(first_seed[i]) for i in b], act_keys[b], reset_seeds[b],
                  None if context is None else context[b], T, greedy)
                 for b, block in zip(self._blocks, self._chunks, strict=True)]
        out = self._collect("trials", calls, slot_tasks, 1, S)
        return Trial(**{k: jax.numpy.asarray(v) for k, v in out.items()})
