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
import traceback
import types
import weakref
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
    vector environment of its block of each slot group and reset or step it on request."""

    def __init__(self, family: HostFamily):
        self.family = family
        self.vecs: dict[int, gym.vector.SyncVectorEnv] = {}  # by slot group
        space = family.action_space
        self._clip = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None

    def _ensure(self, group: int, n: int) -> gym.vector.SyncVectorEnv:
        vec = self.vecs.get(group)
        if vec is None or vec.num_envs != n:
            if vec is not None:
                vec.close()
            fns = [functools.partial(_make_slot, self.family, i) for i in range(n)]
            vec = self.vecs[group] = gym.vector.SyncVectorEnv(
                fns, copy=False, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        return vec

    def reset(self, group: int, tasks: list[dict[str, np.ndarray]],
              seeds: list[int]) -> np.ndarray:
        vec = self._ensure(group, len(tasks))
        obs, _ = vec.reset(seed=list[int | None](seeds), options={"tasks": tasks})
        return np.asarray(obs, np.float32)

    def step(self, group: int, actions: np.ndarray, then_reset: tuple | None = None):
        """Step the group's block: Box actions clipped to the action space, then every
        slot's observation and reward checked finite (a non-finite one names its slot).
        With ``then_reset = (tasks, seeds)`` the block is reset after the step and the
        reset's observations are returned (an RL² trial's next episode)."""
        vec = self.vecs[group]
        if self._clip is not None:
            actions = np.clip(actions, *self._clip)
        obs, reward, terminated, truncated, info = vec.step(actions)
        obs, reward = np.asarray(obs, np.float32), np.asarray(reward, np.float32)
        finite = np.isfinite(obs.reshape(len(obs), -1)).all(axis=1) & np.isfinite(reward)
        if not finite.all():
            raise _EnvFailure(int(np.argmin(finite)),
                              "step returned a non-finite observation or reward")
        success = np.asarray(info.get("success", np.zeros(len(reward))), bool)
        if "_success" in info:
            success = success & np.asarray(info["_success"], bool)
        if then_reset is not None:
            obs = self.reset(group, *then_reset)
        return obs, reward, np.asarray(terminated, bool), np.asarray(truncated, bool), success

    def simulator_steps(self) -> dict[int, list[int]]:
        return {g: [cast(_Slot, env).steps for env in vec.envs] for g, vec in self.vecs.items()}

    def close(self) -> None:
        for vec in self.vecs.values():
            vec.close()
        self.vecs = {}

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


class ProcessPool:
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

    def send(self, calls: list[tuple[str, tuple]], describe) -> None:
        """Send ``calls[i]`` to worker ``i``; the replies come, in order, from
        :meth:`receive` (a pipe delivers a worker's replies in the order of its calls)."""
        for w, (conn, call) in enumerate(zip(self.conns, calls, strict=False)):
            try:
                conn.send(call)
            except (BrokenPipeError, OSError):
                raise SamplerError(f"{describe(w)}: its worker process is gone "
                                   f"(exit code {self.procs[w].exitcode})") from None

    def receive(self, sent: None, n: int, describe) -> list[Any]:
        """The replies of workers ``0..n-1`` to their oldest unanswered calls."""
        replies = []
        for w in range(n):
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
