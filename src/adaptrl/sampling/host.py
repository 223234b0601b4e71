"""The host sampler: a host family's environments stepped in parallel worker processes
(or Ray actors), the policy in one jitted call per step on the whole batch.

Layout. Every episode (MAML) or trial (RL²) of a collection has its own environment
*slot*; the slots are split into contiguous blocks, one per worker, and each worker steps
its block as one Gymnasium vector environment (``SyncVectorEnv``). All slots advance in
lock step, so each step is: one jitted policy call on ``[slots, obs_dim]``, one message to
every worker, one reply from each. The arrays that come back have exactly the layout and
masking of the jitted samplers (:mod:`adaptrl.sampling.rollout`,
:mod:`adaptrl.sampling.trials`).

Autoreset, explicitly. Gymnasium 1.x vector environments reset a finished sub-environment
on the *next* ``step`` call (``AutoresetMode.NEXT_STEP``), ignoring that step's action. We
never let that start a real episode: each slot's environment is wrapped in :class:`_Slot`,
which, once its episode has ended, answers every further step *and* Gymnasium's automatic
reset without touching the simulator. The sampler masks those steps (``mask = 0``, reward
0) exactly as the jitted samplers mask steps after an early termination, and it starts
every episode itself with an explicit ``reset(seed=..., options={"tasks": ...})`` — at the
start of a collection and, within an RL² trial, at each episode boundary.

Seeding. Every random draw comes from the per-task keys the algorithm passes in: each
episode's environment seed and each step's action noise are functions of its own key, not
of the worker that steps it, so the same seed gives the same trajectories on every run, for
any number of workers, locally or on Ray.

Failures. An environment that raises is reported in one line naming the task (its index
and parameters); a worker that dies or hangs is reported in one line naming the tasks it
was stepping. Both are :class:`SamplerError` (a :class:`~adaptrl.errors.UserError`: the
command line prints one line and exits with status 2), and the workers are restarted on
the next collection.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import sys
import traceback
import types
import weakref
from typing import Any, cast

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl import policies
from adaptrl.errors import UserError
from adaptrl.sampling import trials as trial_rules
from adaptrl.sampling.base import Sampler
from adaptrl.sampling.rollout import Trajectory
from adaptrl.sampling.settings import SamplerSettings
from adaptrl.sampling.trials import Trial
from adaptrl.tasks.base import HostFamily


class SamplerError(UserError):
    """An environment raised, or a worker died or hung, while collecting."""


# ---- inside a worker ----------------------------------------------------------------------
class _EnvFailure(Exception):
    def __init__(self, slot: int, message: str):
        super().__init__(message)
        self.slot = slot


class _Slot(gym.Wrapper):
    """One episode slot: starts an episode only on an explicit reset that carries the
    slot's task, and freezes once the episode has ended (no simulator step, no automatic
    reset) until the next explicit reset. Of the step's ``info`` it passes on only
    ``"success"`` (all the sampler reads), so the vector environment merges no more.
    Clipping and the finiteness check are done on the whole block (:class:`WorkerCore`)."""

    def __init__(self, env: gym.Env, slot: int):
        super().__init__(env)
        self.slot = slot
        self.frozen = True
        self.last_obs: Any = None
        self.steps = 0  # simulator steps taken (tests check that frozen slots take none)
        self._env_step = env.step  # bound once: this runs once per slot and step

    def reset(self, *, seed=None, options=None):
        if not options or "tasks" not in options:  # Gymnasium's automatic reset: ignore
            self.frozen = True
            return self.last_obs, {}
        try:
            obs, info = self.env.reset(seed=seed, options={"task": options["tasks"][self.slot]})
        except UserError as e:
            raise _EnvFailure(self.slot, str(e)) from None
        except Exception as e:  # noqa: BLE001 - the user's environment raised
            raise _EnvFailure(self.slot, f"reset raised {type(e).__name__}: {e}") from None
        self.frozen, self.last_obs = False, obs
        return obs, info

    def step(self, action):
        if self.frozen:
            return self.last_obs, 0.0, True, False, {}
        try:
            obs, reward, terminated, truncated, info = self._env_step(action)
        except Exception as e:  # noqa: BLE001 - the user's environment raised
            raise _EnvFailure(self.slot, f"step raised {type(e).__name__}: {e}") from None
        self.steps += 1
        self.last_obs = obs
        if terminated or truncated:
            self.frozen = True
        return obs, reward, terminated, truncated, (
            {"success": info["success"]} if "success" in info else {})


class WorkerCore:
    """What a worker does, whatever carries its messages (a pipe or a Ray actor): keep a
    vector environment of its block of slots and reset or step it on request."""

    def __init__(self, family: HostFamily):
        self.family = family
        self.vec: gym.vector.SyncVectorEnv | None = None
        space = family.action_space
        self._clip = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None

    def _ensure(self, n: int) -> gym.vector.SyncVectorEnv:
        if self.vec is None or self.vec.num_envs != n:
            if self.vec is not None:
                self.vec.close()
            fns = [functools.partial(_make_slot, self.family, i) for i in range(n)]
            self.vec = gym.vector.SyncVectorEnv(
                fns, copy=False, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        return self.vec

    def reset(self, tasks: list[dict[str, np.ndarray]], seeds: list[int]) -> np.ndarray:
        vec = self._ensure(len(tasks))
        obs, _ = vec.reset(seed=list[int | None](seeds), options={"tasks": tasks})
        return np.asarray(obs, np.float32)

    def step(self, actions: np.ndarray):
        """Step the block: Box actions clipped to the action space, then every slot's
        observation and reward checked finite (a non-finite one names its slot)."""
        assert self.vec is not None
        if self._clip is not None:
            actions = np.clip(actions, *self._clip)
        obs, reward, terminated, truncated, info = self.vec.step(actions)
        obs, reward = np.asarray(obs, np.float32), np.asarray(reward, np.float32)
        finite = np.isfinite(obs.reshape(len(obs), -1)).all(axis=1) & np.isfinite(reward)
        if not finite.all():
            raise _EnvFailure(int(np.argmin(finite)),
                              "step returned a non-finite observation or reward")
        success = np.asarray(info.get("success", np.zeros(len(reward))), bool)
        if "_success" in info:
            success = success & np.asarray(info["_success"], bool)
        return obs, reward, np.asarray(terminated, bool), np.asarray(truncated, bool), success

    def simulator_steps(self) -> list[int]:
        return [cast(_Slot, env).steps for env in self.vec.envs] if self.vec is not None else []

    def close(self) -> None:
        if self.vec is not None:
            self.vec.close()
            self.vec = None

    def call(self, command: str, payload: tuple):
        """Run one command; environment failures come back as ``("env_error", ...)``."""
        try:
            return "ok", getattr(self, command)(*payload)
        except _EnvFailure as e:
            return "env_error", (e.slot, str(e))
        except Exception as e:  # noqa: BLE001 - reported to the main process in one line
            last = traceback.extract_tb(e.__traceback__)[-1:]
            where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
            return "error", f"{type(e).__name__}: {e}{where}"


def _make_slot(family: HostFamily, slot: int) -> gym.Env:
    return _Slot(family.make_env(), slot)


def _worker_main(conn, family: HostFamily) -> None:
    """A worker process: serve commands until told to close or the pipe breaks."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    core = WorkerCore(family)
    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, OSError):
            break
        reply = core.call(command, payload)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            break
        if command == "close":
            break


# ---- worker pools -------------------------------------------------------------------------
@contextlib.contextmanager
def _without_main():
    """Start spawned workers without re-running the caller's ``__main__`` script (a script
    without an ``if __name__ == "__main__"`` guard would otherwise run again in every
    worker). Workers need only the family, which must be importable by module name."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class _ProcessPool:
    """Worker processes on this machine, one pipe each (spawned: JAX is not fork-safe)."""

    def __init__(self, family: HostFamily, n: int, timeout: float):
        ctx = mp.get_context("spawn")
        self.timeout = timeout
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, family), daemon=True)
            with _without_main():
                proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self._finalizer = weakref.finalize(self, _stop_processes, self.conns, self.procs)

    def __len__(self) -> int:
        return len(self.procs)

    def request(self, calls: list[tuple[str, tuple]], describe) -> list[Any]:
        """Send ``calls[i]`` to worker ``i`` (all first, then wait for all)."""
        for w, (conn, call) in enumerate(zip(self.conns, calls, strict=False)):
            try:
                conn.send(call)
            except (BrokenPipeError, OSError):
                raise SamplerError(f"{describe(w)}: its worker process is gone "
                                   f"(exit code {self.procs[w].exitcode})") from None
        replies = []
        for w in range(len(calls)):
            conn, proc = self.conns[w], self.procs[w]
            waited = 0.0
            while not conn.poll(0.05):
                waited += 0.05
                if not proc.is_alive():
                    proc.join(timeout=1)  # collect its exit code
                    raise SamplerError(f"{describe(w)}: its worker process died "
                                       f"(exit code {proc.exitcode})")
                if waited > self.timeout:
                    raise SamplerError(f"{describe(w)}: its worker process did not answer "
                                       f"within {self.timeout:g} s")
            try:
                replies.append(conn.recv())
            except (EOFError, OSError):
                proc.join(timeout=1)
                raise SamplerError(f"{describe(w)}: its worker process died "
                                   f"(exit code {proc.exitcode})") from None
        return replies

    def close(self) -> None:
        self._finalizer()


def _stop_processes(conns, procs) -> None:
    for conn in conns:
        try:
            conn.send(("close", ()))
        except (BrokenPipeError, OSError):
            pass
    for proc in procs:
        proc.join(timeout=2)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=2)
    for conn in conns:
        conn.close()


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
    (``settings.ray``). Workers start on the first collection and are reused."""

    jittable = False

    def __init__(self, family: HostFamily, settings: SamplerSettings | None = None):
        self.family = family
        self.settings = settings or SamplerSettings()
        self._pool: Any = None
        self._blocks: list[np.ndarray] = []
        self._plan_episodes = jax.jit(_episode_plan, static_argnums=(1, 2))
        self._plan_trials = jax.jit(_trial_plan, static_argnums=(1,))
        self._act_episodes = jax.jit(_act_episodes, static_argnums=(0, 1))
        self._act_trials = jax.jit(_act_trials, static_argnums=(0, 1))
        self._remember = jax.jit(functools.partial(_remember, family.action_space))

    # ---- workers ------------------------------------------------------------------------
    def num_workers(self) -> int:
        return self.settings.workers or os.cpu_count() or 1

    def _start(self, slots: int) -> None:
        """Workers for ``slots`` environment slots (restarted if their number changes)."""
        n = max(1, min(self.num_workers(), slots))
        if self._pool is None or len(self._pool) != n:
            self.close()
            if self.settings.ray:
                from adaptrl.sampling.ray_workers import RayPool

                self._pool = RayPool(self.family, n, self.settings.ray, self.settings.timeout)
            else:
                self._pool = _ProcessPool(self.family, n, self.settings.timeout)
        self._blocks = np.array_split(np.arange(slots), n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _request(self, command: str, per_worker: list[tuple], tasks: list[dict],
                 per_task: int) -> list[Any]:
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

        try:
            replies = self._pool.request([(command, p) for p in per_worker], describe)
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
        return out

    def _reset(self, tasks: list[dict], seeds: np.ndarray, per_task: int) -> np.ndarray:
        calls = [([tasks[i] for i in b], [int(seeds[i]) for i in b]) for b in self._blocks]
        return np.concatenate(self._request("reset", calls, tasks, per_task))

    def _step(self, actions: np.ndarray, tasks: list[dict], per_task: int):
        calls = [(actions[b],) for b in self._blocks]
        parts = self._request("step", calls, tasks, per_task)
        return tuple(np.concatenate(x) for x in zip(*parts, strict=True))

    def simulator_steps(self) -> np.ndarray:
        """Simulator steps taken by every slot's environment so far (a test aid)."""
        calls = [() for _ in self._blocks]
        return np.concatenate(self._request("simulator_steps", calls, [{}] * 10**6, 1))

    @staticmethod
    def _task_list(tasks: Any, repeat: int) -> list[dict[str, np.ndarray]]:
        host = jax.device_get(tasks)
        n = jax.tree.leaves(host)[0].shape[0]
        one = [jax.tree.map(lambda x, i=i: np.asarray(x[i]), host) for i in range(n)]
        return [t for t in one for _ in range(repeat)]

    # ---- MAML: episodes under per-task parameters ---------------------------------------
    def episodes(self, policy, params, tasks, *, keys, num, per_task=True):
        n = int(keys.shape[0])
        T, M = self.family.horizon, n * num
        seeds, act_keys = self._plan_episodes(keys, num, T)
        seeds, act_keys = np.asarray(seeds).reshape(M), np.asarray(act_keys)  # host slicing
        slot_tasks = self._task_list(tasks, num)
        self._start(M)
        obs = self._reset(slot_tasks, seeds, num)
        alive = np.ones(M, bool)
        rec: dict[str, list[np.ndarray]] = {k: [] for k in Trajectory._fields}
        for t in range(T):
            action, log_prob = self._act_episodes(
                policy, per_task, params, jnp.asarray(obs.reshape(n, num, -1)), act_keys[:, :, t])
            action, log_prob = np.asarray(action), np.asarray(log_prob)
            flat_action = action.reshape(M, *action.shape[2:])
            next_obs, reward, terminated, truncated, success = self._step(
                flat_action, slot_tasks, num)
            rec["obs"].append(obs)
            rec["action"].append(flat_action)
            rec["reward"].append(np.where(alive, reward, 0.0).astype(np.float32))
            rec["done"].append(terminated | ~alive)  # a time limit is not terminal
            rec["mask"].append(alive.astype(np.float32))
            rec["log_prob"].append(log_prob.reshape(M))
            rec["success"].append(success & alive)
            rec["t"].append(np.full(M, t, np.int32))
            alive = alive & ~(terminated | truncated)
            obs = next_obs
        return Trajectory(**{k: jnp.asarray(np.stack(v, 1).reshape(n, num, T, *v[0].shape[1:]))
                             for k, v in rec.items()})

    # ---- RL²: trials with the recurrent state kept across episodes -----------------------
    def trials(self, policy, params, tasks, *, keys, episodes, greedy=False):
        n, T = int(keys.shape[0]), self.family.horizon
        S = episodes * T
        first_seed, act_keys, reset_seeds = (np.asarray(x) for x in self._plan_trials(keys, S))
        slot_tasks = self._task_list(tasks, 1)
        context = None
        if getattr(policy, "context_dim", 0):
            context = jax.vmap(self.family.task_features)(tasks)
        h = jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), policy.initial_carry())
        prev = [jnp.broadcast_to(x, (n, *x.shape))
                for x in trial_rules.initial_inputs(self.family)]
        self._start(n)
        obs = self._reset(slot_tasks, first_seed, 1)
        alive = np.ones(n, bool)
        rec: dict[str, list[np.ndarray]] = {k: [] for k in Trial._fields}
        for s in range(S):
            x, h_new, action, log_prob, value = self._act_trials(
                policy, greedy, params, h, jnp.asarray(obs), *prev, act_keys[:, s], context)
            np_action = np.asarray(action)
            next_obs, reward, terminated, truncated, success = self._step(
                np_action, slot_tasks, 1)
            end_of_episode = (s % T) + 1 == T
            ended = (terminated | truncated | end_of_episode) & alive
            rec["inputs"].append(np.asarray(x))
            rec["action"].append(np_action)
            rec["reward"].append(np.where(alive, reward, 0.0).astype(np.float32))
            rec["done"].append(ended)
            rec["mask"].append(alive.astype(np.float32))
            rec["log_prob"].append(np.asarray(log_prob))
            rec["value"].append(np.asarray(value))
            rec["success"].append(success & alive)
            h, *prev = self._remember(jnp.asarray(alive), h_new, h, action, jnp.asarray(reward),
                                      jnp.asarray(ended), *prev)
            if end_of_episode:
                if s + 1 < S:  # the next episode of the same task, explicitly seeded
                    obs = self._reset(slot_tasks, reset_seeds[:, s], 1)
                alive = np.ones(n, bool)
            else:
                obs = np.where(alive[:, None], next_obs, obs)
                alive = alive & ~(terminated | truncated)
        return Trial(**{k: jnp.asarray(np.stack(v, 1)) for k, v in rec.items()})
