"""Any Gymnasium environment whose variation is a parameter, as a task family.

A :class:`GymnasiumFamily` is a frozen dataclass like every family. Its task distribution
is data: each name in ``task_params`` is a field holding a ``(low, high)`` range, and a
task draws each parameter uniformly from its range (override ``sample_one`` for anything
else). So ``--set tasks.pole_length=[0.4,0.6]``, held-out splits, checkpoints and the
results files work as for the JAX-native families.

The task reaches the environment in one of three ways, chosen by the family:

* **constructor keyword arguments** — the parameters named in ``constructor_params`` are
  passed to ``gymnasium.make(env_id, **kwargs)`` (the environment is rebuilt when they
  change);
* **a set_task-style method** — override :meth:`GymnasiumFamily.set_task`, which is called
  with the environment and the task before every reset (e.g. set a pole length on
  ``env.unwrapped``);
* **a reward wrapper** — override :meth:`GymnasiumFamily.reward` to compute the reward from
  the task (a hidden target), leaving the dynamics alone.

Example (the tutorial, ``docs/tutorial_gymnasium.md``, builds it step by step)::

    @dataclasses.dataclass(frozen=True)
    class PendulumGravity(GymnasiumFamily):
        env_id: str = "Pendulum-v1"
        horizon: int = 200
        g: tuple[float, float] = (5.0, 15.0)

        task_params: ClassVar[tuple[str, ...]] = ("g",)
        constructor_params: ClassVar[tuple[str, ...]] = ("g",)

Environments are stepped by the host sampler (:mod:`adaptrl.sampling.host`), in worker
processes; nothing here is jitted. Rendering is never enabled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.errors import UserError
from adaptrl.tasks.base import HostFamily, Task


def _float32_box(space: gym.Space) -> gym.Space:
    if isinstance(space, gym.spaces.Box):
        return gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32),
                              space.shape, np.float32)
    return space


def env_exists(env_id: str) -> None:
    """Raise a one-line :class:`UserError` unless ``env_id`` is a registered Gymnasium id."""
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise UserError(f"unknown Gymnasium environment {env_id!r} ({type(e).__name__})"
                        ) from None


@dataclasses.dataclass(frozen=True)
class GymnasiumFamily(HostFamily):
    """Abstract base of Gymnasium task families; subclasses are frozen dataclasses that set
    ``env_id``, ``horizon`` and the range fields named in ``task_params``."""

    env_id: str = ""
    # Gymnasium id of the environment, e.g. "CartPole-v1"
    horizon: int = 200
    # steps per episode (the environment's own time limit is set to it)

    #: names of the task parameters; each is a field holding a (low, high) uniform range
    task_params: ClassVar[tuple[str, ...]] = ()
    #: task parameters passed to ``gymnasium.make`` as keyword arguments
    constructor_params: ClassVar[tuple[str, ...]] = ()
    #: fixed keyword arguments for ``gymnasium.make`` (not part of the task)
    make_kwargs: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.env_id:
            raise ValueError("env_id must name a Gymnasium environment")
        env_exists(self.env_id)
        if not 1 <= self.horizon <= 100_000:
            raise ValueError("horizon must be between 1 and 100000")
        fields = {f.name for f in dataclasses.fields(self)}
        for name in self.task_params:
            if name not in fields:
                raise ValueError(f"task parameter {name!r} has no range field")
            low, high = self.task_range(name)
            if not low <= high:
                raise ValueError(f"{name} must be a range [low, high] with low <= high")
        for name in self.constructor_params:
            if name not in self.task_params:
                raise ValueError(f"constructor parameter {name!r} is not in task_params")
        self._probe  # noqa: B018 - build one environment now: a rejected parameter fails here

    def task_range(self, name: str) -> tuple[float, float]:
        value = getattr(self, name)
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise ValueError(f"{name} must be a range [low, high]")
        return float(value[0]), float(value[1])

    # ---- the task distribution -----------------------------------------------------
    def sample_one(self, key: jax.Array) -> Task:
        keys = jax.random.split(key, max(len(self.task_params), 1))
        out = {}
        for k, name in zip(keys, self.task_params, strict=False):
            low, high = self.task_range(name)
            out[name] = jax.random.uniform(k, (), minval=low, maxval=high)
        return out

    # ---- how the task reaches the environment -----------------------------------------
    def constructor_kwargs(self, task: Task) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make``: ``make_kwargs`` plus the task's
        ``constructor_params``."""
        return {**self.make_kwargs,
                **{name: float(task[name]) for name in self.constructor_params}}

    def set_task(self, env: gym.Env, task: Task) -> None:
        """Apply ``task`` to ``env`` before a reset (the set_task-style path). The default
        calls ``env.unwrapped.set_task(task)`` where the environment has such a method."""
        method = getattr(env.unwrapped, "set_task", None)
        if callable(method):
            method(task)

    def reward(self, task: Task, obs: np.ndarray, action: Any, reward: float,
               next_obs: np.ndarray, info: dict[str, Any]) -> float:
        """The reward of one step of ``task`` (the reward-wrapper path); by default the
        environment's own."""
        return reward

    def success(self, task: Task, info: dict[str, Any]) -> bool:
        """The success flag of one step (families with ``has_success``)."""
        return bool(info.get("success", info.get("is_success", False)))

    # ---- environments -----------------------------------------------------------------
    def build(self, task: Task | None = None) -> gym.Env:
        """``gymnasium.make`` for ``task`` (its constructor parameters), time limit
        ``horizon``, rendering off. A rejected parameter is a one-line UserError."""
        if task is None:
            task = {name: sum(self.task_range(name)) / 2 for name in self.task_params}
        kwargs = self.constructor_kwargs(task)
        try:
            return gym.make(self.env_id, max_episode_steps=self.horizon,
                            disable_env_checker=True, **kwargs)
        except TypeError as e:
            raise UserError(f"{self.env_id} does not accept the task parameters "
                            f"{sorted(kwargs)} ({e})") from None

    @property
    def _probe(self) -> gym.Env:
        env = self.__dict__.get("_probe_env")
        if env is None:
            env = self.build()
            object.__setattr__(self, "_probe_env", env)  # a cache, not a field
        return env

    def __getstate__(self):  # the probe environment stays behind when pickled
        return {k: v for k, v in self.__dict__.items() if k != "_probe_env"}

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def observation_space(self) -> gym.spaces.Box:
        space = self._probe.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise UserError(f"{self.env_id}: only flat Box observations are supported, got "
                            f"{space}")
        return _float32_box(space)  # type: ignore[return-value]

    @property
    def action_space(self) -> gym.spaces.Box | gym.spaces.Discrete:
        space = self._probe.action_space
        if not isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
            raise UserError(f"{self.env_id}: only Box or Discrete actions are supported, got "
                            f"{space}")
        return _float32_box(space)  # type: ignore[return-value]

    def make_env(self) -> gym.Env:
        return TaskEnv(self)

    def task_features(self, task: Task) -> jax.Array:
        return jnp.stack([jnp.asarray(task[n], jnp.float32) for n in self.task_params]) \
            if self.task_params else jnp.zeros((0,), jnp.float32)


class TaskEnv(gym.Env):
    """One environment of a :class:`GymnasiumFamily` that takes its task at reset:
    ``reset(seed=s, options={"task": task})``. It rebuilds the inner environment when the
    constructor parameters change, calls ``family.set_task`` and applies ``family.reward``;
    ``info["success"]`` carries the family's success flag."""

    metadata = {"render_modes": []}

    def __init__(self, family: GymnasiumFamily):
        self.family = family
        self.observation_space = family.observation_space
        self.action_space = family.action_space
        self._discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.env: gym.Env | None = None
        self._kwargs: dict[str, Any] | None = None
        self.task: Task | None = None
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = (options or {}).get("task")
        if task is None:
            raise ValueError("TaskEnv.reset needs options={'task': task}")
        task = {k: np.asarray(v) for k, v in task.items()}
        kwargs = self.family.constructor_kwargs(task)
        if self.env is None or kwargs != self._kwargs:
            if self.env is not None:
                self.env.close()
            self.env, self._kwargs = self.family.build(task), kwargs
        self.task = task
        self.family.set_task(self.env, task)
        obs, info = self.env.reset(seed=seed)
        self._obs = np.asarray(obs, np.float32)
        return self._obs, info

    def step(self, action):
        assert self.env is not None and self.task is not None, "reset() first"
        if self._discrete:
            action = int(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs = np.asarray(obs, np.float32)
        reward = float(self.family.reward(self.task, self._obs, action, float(reward), obs,
                                          info))
        if self.family.has_success:
            info = {**info, "success": self.family.success(self.task, info)}
        self._obs = obs
        return obs, reward, bool(terminated), bool(truncated), info

    def close(self):
        if self.env is not None:
            self.env.close()
            self.env = None
