"""DeepMind Control Suite task families through ``dm_control`` (1.0.28), stepped by the
host sampler like every host family.

============== ================================== =========================================
family         task                               reward per step
============== ================================== =========================================
dmc-cheetah-   cheetah (``suite`` cheetah-run's   ``tolerance(speed, bounds=(v*, v*),
vel            model and observations) with a     margin=4, linear)``: 1 at the target
               target speed v* ~ U[0, 4] m/s      speed, falling linearly to 0 at 4 m/s off
dmc-walker-    walker-walk with every body's      walker-walk's own (standing, upright and
mass           mass × 2^u, u ~ U[-1, 1] per body  moving at 1 m/s)
============== ================================== =========================================

A :class:`DMCEnv` is a Gymnasium environment over one ``dm_control`` environment: flat
float32 observations (``flat_observation``), a Box action space from the action spec, and
the task at reset (``reset(seed=s, options={"task": task})``): the seed becomes the task
object's RNG (initial joint angles), the family applies the task to the physics, and the
episode is cut at ``horizon`` steps (dm_control's own limit is 1000). Cheetah and walker
never terminate early. ``MUJOCO_GL`` defaults to ``egl`` so that nothing needs a display
(nothing here renders).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import os
from typing import Any, ClassVar

import gymnasium as gym
import jax
import numpy as np

from adaptrl import lazy
from adaptrl.errors import UserError
from adaptrl.tasks.base import HostFamily, Task

os.environ.setdefault("MUJOCO_GL", "egl")

def import_suite():
    """``dm_control.suite``, or a one-line error saying which extra installs it."""
    return lazy.optional("dm_control.suite", needed_by="DeepMind Control families",
                         extra="dmc")


@dataclasses.dataclass(frozen=True)
class DMCFamily(HostFamily):
    """Abstract base of the DeepMind Control families: a suite environment (``domain``,
    ``task_name``), a task distribution (``sample_one``), and how a task changes the
    physics (``set_task``) or the reward (``reward``)."""

    horizon: int = 200
    # steps per episode (control steps of 0.01 s; dm_control's own episodes are 1000)

    domain: ClassVar[str]
    task_name: ClassVar[str]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.horizon <= 1000:
            raise UserError("horizon must be between 1 and 1000 (dm_control's episode length)")
        self._spaces  # noqa: B018 - build one environment now (and fail here if missing)

    def load(self):
        """A fresh ``dm_control`` environment with flat observations."""
        return import_suite().load(self.domain, self.task_name, task_kwargs={"random": 0},
                                   environment_kwargs={"flat_observation": True})

    @functools.cached_property
    def _spaces(self) -> tuple[gym.spaces.Box, gym.spaces.Box, dict[str, tuple[int, ...]]]:
        env = self.load()
        (obs,) = env.observation_spec().values()
        act = env.action_spec()
        shapes = {"body_mass": tuple(env.physics.model.body_mass.shape)}
        env.close()
        return (gym.spaces.Box(-np.inf, np.inf, obs.shape, np.float32),
                gym.spaces.Box(act.minimum.astype(np.float32), act.maximum.astype(np.float32),
                               act.shape, np.float32),
                shapes)

    @property
    def observation_space(self) -> gym.spaces.Box:
        return self._spaces[0]

    @property
    def action_space(self) -> gym.spaces.Box:
        return self._spaces[1]

    def make_env(self) -> gym.Env:
        return DMCEnv(self)

    def set_task(self, physics: Any, base: dict[str, np.ndarray], task: Task) -> None:
        """Apply ``task`` to the physics before a reset (``base``: the model's own arrays)."""
        return None

    @abc.abstractmethod
    def reward(self, task: Task, physics: Any, reward: float) -> float:
        """The reward of one step of ``task`` (``reward``: the suite task's own)."""


@dataclasses.dataclass(frozen=True)
class DMCCheetahVel(DMCFamily):
    """DeepMind Control cheetah running at a hidden target speed."""

    velocity: tuple[float, float] = (0.0, 4.0)
    # range of the target speed (m/s) the tasks are drawn from, uniformly
    margin: float = 4.0
    # the reward falls linearly from 1 at the target speed to 0 this far from it

    domain: ClassVar[str] = "cheetah"
    task_name: ClassVar[str] = "run"
    DISTRIBUTION_OPTIONS: ClassVar[tuple[str, ...]] = ("split_seed", "velocity")

    def __post_init__(self) -> None:
        if len(self.velocity) != 2 or not self.velocity[0] <= self.velocity[1]:
            raise UserError("velocity must be a range [low, high] with low <= high")
        if not self.margin > 0:
            raise UserError("margin must be positive")
        super().__post_init__()

    def sample_one(self, key: jax.Array) -> Task:
        low, high = (float(v) for v in self.velocity)
        return {"velocity": jax.random.uniform(key, (), minval=low, maxval=high)}

    def reward(self, task, physics, reward):
        from dm_control.utils import rewards

        v = float(task["velocity"])
        return float(rewards.tolerance(physics.speed(), bounds=(v, v), margin=self.margin,
                                       value_at_margin=0, sigmoid="linear"))


@dataclasses.dataclass(frozen=True)
class DMCWalkerMass(DMCFamily):
    """DeepMind Control walker-walk whose body masses are scaled per task."""

    log2_scale_limit: float = 1.0
    # every body's mass is multiplied by 2**U[-limit, limit], independently

    domain: ClassVar[str] = "walker"
    task_name: ClassVar[str] = "walk"
    DISTRIBUTION_OPTIONS: ClassVar[tuple[str, ...]] = ("split_seed", "log2_scale_limit")

    def __post_init__(self) -> None:
        if not 0 <= self.log2_scale_limit <= 4:
            raise UserError("log2_scale_limit must be between 0 and 4")
        super().__post_init__()

    def sample_one(self, key: jax.Array) -> Task:
        lim = self.log2_scale_limit
        return {"log2_mass": jax.random.uniform(key, self._spaces[2]["body_mass"],
                                                minval=-lim, maxval=lim)}

    def set_task(self, physics, base, task):
        physics.model.body_mass[:] = base["body_mass"] * 2.0 ** np.asarray(
            task["log2_mass"], np.float64)

    def reward(self, task, physics, reward):
        return reward


class DMCEnv(gym.Env):
    """A Gymnasium environment over one ``dm_control`` environment of a
    :class:`DMCFamily`, taking its task and seed at reset."""

    metadata = {"render_modes": []}

    def __init__(self, family: DMCFamily):
        self.family = family
        self.observation_space = family.observation_space
        self.action_space = family.action_space
        self.env = family.load()
        self.base = {"body_mass": self.env.physics.model.body_mass.copy()}
        self.task: Task | None = None
        self.t = 0

    def _obs(self, timestep) -> np.ndarray:
        return np.asarray(timestep.observation["observations"], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = (options or {}).get("task")
        if task is None:
            raise ValueError("DMCEnv.reset needs options={'task': task}")
        self.task = {k: np.asarray(v) for k, v in task.items()}
        if seed is not None:  # the suite task's RNG draws the initial state
            self.env.task._random = np.random.RandomState(int(seed))
        self.family.set_task(self.env.physics, self.base, self.task)
        self.t = 0
        return self._obs(self.env.reset()), {}

    def step(self, action):
        assert self.task is not None, "reset() first"
        timestep = self.env.step(np.asarray(action, np.float64))
        self.t += 1
        reward = self.family.reward(self.task, self.env.physics, float(timestep.reward or 0.0))
        truncated = self.t >= self.family.horizon or timestep.last()
        return self._obs(timestep), float(reward), False, bool(truncated), {}

    def close(self):
        self.env.close()
