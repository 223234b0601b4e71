"""The host sampler's workers: what a worker does with its environment slots
(:class:`WorkerCore`), the worker processes on this machine (:class:`ProcessPool`), and
how their failures are reported.

Autoreset, explicitly. Gymnasium 1.x vector environments reset a finished sub-environment
on the *next* ``step`` call (``AutoresetMode.NEXT_STEP``), ignoring that step's action. We
never let that start a real episode: each slot's environment is wrapped in :class:`_Slot`,
which, once its episode has ended, answers every further step *and* Gymnasium's automatic
reset without touching the simulator. The sampler masks those steps (``mask = 0``, reward
0) exactly as the jitted samplers mask steps after an early termination, and it starts
every episode itself with an explicit ``reset(seed=..., options={"tasks": ...})`` — at the
start of a collection and, within an RL² trial, at each episode boundary.

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
import time
import traceback
import types
import weakref
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np

from adaptrl.errors import UserError
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
    vector environment of its block of slots, and run a whole collection on it
    (:mod:`adaptrl.sampling.worker_rollouts`: the policy runs here too).

    ``beat`` is called once per step of a collection; a process worker sends a heartbeat
    through it (at most one a second), so a worker is reported as hung only when one
    *step* takes longer than the sampler's timeout."""

    def __init__(self, family: HostFamily):
        self.family = family
        self.vec: gym.vector.SyncVectorEnv | None = None
        self.beat: Callable[[], None] = lambda: None
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

    # ---- commands (worker_rollouts is imported on first use: this module, which Ray
    # actors and the main process import too, stays free of JAX) -----------------------
    def episodes(self, *args) -> dict[str, np.ndarray]:
        """A MAML collection on this block (:func:`worker_rollouts.episodes`)."""
        from adaptrl.sampling import worker_rollouts

        return worker_rollouts.episodes(self, *args)

    def trials(self, *args) -> dict[str, np.ndarray]:
        """An RL² collection on this block (:func:`worker_rollouts.trials`)."""
        from adaptrl.sampling import worker_rollouts

        return worker_rollouts.trials(self, *args)

    def simulator_steps(self) -> list[int]:
        return [cast(_Slot, env).steps for env in self.vec.envs] if self.vec else []

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

    # ---- the block's environments (called by the collections) ---------------------------
    def reset(self, tasks: list[dict[str, np.ndarray]], seeds: list[int]) -> np.ndarray:
        vec = self._ensure(len(tasks))
        obs, _ = vec.reset(seed=list[int | None](seeds), options={"tasks": tasks})
        return np.array(obs, np.float32)  # a copy: the vector env reuses its buffers

    def step(self, actions: np.ndarray, then_reset: tuple | None = None):
        """Step the block: Box actions clipped to the action space, then every slot's
        observation and reward checked finite (a non-finite one names its slot). With
        ``then_reset = (tasks, seeds)`` the block is reset after the step and the reset's
        observations are returned (an RL² trial's next episode)."""
        vec = self.vec
        assert vec is not None, "reset() first"
        if self._clip is not None:
            actions = np.clip(actions, *self._clip)
        obs, reward, terminated, truncated, info = vec.step(actions)
        # copies: the vector environment reuses its buffers (copy=False)
        obs, reward = np.array(obs, np.float32), np.array(reward, np.float32)
        finite = np.isfinite(obs.reshape(len(obs), -1)).all(axis=1) & np.isfinite(reward)
        if not finite.all():
            raise _EnvFailure(int(np.argmin(finite)),
                              "step returned a non-finite observation or reward")
        success = np.asarray(info.get("success", np.zeros(len(reward))), bool)
        if "_success" in info:
            success = success & np.asarray(info["_success"], bool)
        if then_reset is not None:
            obs = self.reset(*then_reset)
        return obs, reward, np.array(terminated, bool), np.array(truncated, bool), success


def _make_slot(family: HostFamily, slot: int) -> gym.Env:
    return _Slot(family.make_env(), slot)


def _worker_main(conn, family: HostFamily) -> None:
    """A worker process: serve commands until told to close or the pipe breaks."""
    core = WorkerCore(family)
    last_beat = [time.monotonic()]

    def beat() -> None:
        now = time.monotonic()
        if now - last_beat[0] >= 1.0:
            last_beat[0] = now
            conn.send(("beat", None))

    core.beat = beat
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
#: what a worker's environment variables add to the driver's: no display for MuJoCo, and
#: JAX on one CPU thread (a worker runs the policy on its block; the cores are the
#: workers', and the accelerator, if any, the learner's)
WORKER_ENVIRONMENT = {"MUJOCO_GL": "egl", "JAX_PLATFORMS": "cpu",
                      "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}


def worker_environment() -> dict[str, str]:
    """The environment variables a worker starts with (the driver's own ``MUJOCO_GL``
    wins; ``XLA_FLAGS`` are appended to the driver's)."""
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", WORKER_ENVIRONMENT["MUJOCO_GL"]),
           "JAX_PLATFORMS": WORKER_ENVIRONMENT["JAX_PLATFORMS"]}
    flags = os.environ.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} {WORKER_ENVIRONMENT['XLA_FLAGS']}".strip()
    jax = sys.modules.get("jax")  # the driver's persistent compilation cache, if it has one
    cache = getattr(jax.config, "jax_compilation_cache_dir", None) if jax else None
    if cache:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    return env


@contextlib.contextmanager
def _started_with(env: dict[str, str]):
    """``os.environ`` with ``env`` while a spawned worker starts (it inherits them)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


class ProcessPool:
    """Worker processes on this machine, one pipe each (spawned: JAX is not fork-safe)."""

    def __init__(self, family: HostFamily, n: int, timeout: float):
        ctx = mp.get_context("spawn")
        self.timeout = timeout
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, family), daemon=True)
            with _without_main(), _started_with(worker_environment()):
                proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self._finalizer = weakref.finalize(self, _stop_processes, self.conns, self.procs)

    def __len__(self) -> int:
        return len(self.procs)

    def send(self, calls: list[tuple[str, tuple]], describe) -> None:
        """Send ``calls[i]`` to worker ``i``; the replies come, in order, from
        :meth:`receive` (a pipe delivers a worker's replies in the order of its calls)."""
        for w, (conn, call) in enumerate(zip(self.conns, calls, strict=False)):
            try:
                conn.send(call)
            except (BrokenPipeError, OSError):
                raise SamplerError(f"{describe(w)}: its worker process is gone "
                                   f"(exit code {self.procs[w].exitcode})") from None

    def receive(self, sent: None, n: int, describe, steps: int = 1) -> list[Any]:
        """The replies of workers ``0..n-1`` to their oldest unanswered calls. A worker
        is hung when neither a reply nor a heartbeat (one per second of a collection of
        ``steps`` steps) comes within the timeout."""
        replies = []
        for w in range(n):
            conn, proc = self.conns[w], self.procs[w]
            while True:
                waited = 0.0
                while not conn.poll(0.05):
                    waited += 0.05
                    if not proc.is_alive():
                        proc.join(timeout=1)  # collect its exit code
                        raise SamplerError(f"{describe(w)}: its worker process died "
                                           f"(exit code {proc.exitcode})")
                    if waited > self.timeout:
                        raise SamplerError(f"{describe(w)}: its worker process did not "
                                           f"answer within {self.timeout:g} s")
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    proc.join(timeout=1)
                    raise SamplerError(f"{describe(w)}: its worker process died "
                                       f"(exit code {proc.exitcode})") from None
                if reply[0] != "beat":
                    replies.append(reply)
                    break
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
