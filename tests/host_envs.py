"""Cheap Gymnasium environments and host families for the host-sampler tests (imported by
name in the sampler's worker processes, so they live in a module of their own)."""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import gymnasium as gym
import numpy as np

from adaptrl.tasks.gymnasium import GymnasiumFamily


class PointEnv(gym.Env):
    """MAML's 2D point navigation in NumPy (the dynamics of adaptrl.tasks.point_nav):
    the goal is set by ``set_goal`` (the set_task-style path)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.goal = np.zeros(2, np.float32)

    def set_goal(self, goal):
        self.goal = np.asarray(goal, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.zeros(2, np.float32)
        return self.pos.copy(), {}

    def step(self, action):
        self.pos = (self.pos + np.clip(action, -1.0, 1.0) * np.float32(0.1)).astype(np.float32)
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self.pos.copy(), -dist, False, False, {"success": dist <= 0.1}


class TickEnv(gym.Env):
    """obs = [steps taken, reset noise]; reward = 10 * scale + step index; terminates
    after ``stop`` steps; ``boom`` makes ``step`` raise, ``crash`` kills the process."""

    def __init__(self, stop: float = 1000.0, boom: float = 0.0, crash: float = 0.0):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.stop, self.boom, self.crash = stop, boom, crash
        self.scale = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.noise = float(self.np_random.uniform())
        return np.array([0.0, self.noise], np.float32), {}

    def step(self, action):
        if self.boom > 0.5:
            raise RuntimeError("the simulator exploded")
        if self.crash > 0.5:
            os._exit(3)
        reward = 10.0 * self.scale + self.t + int(action)
        self.t += 1
        return (np.array([self.t, self.noise], np.float32), reward, self.t >= self.stop,
                False, {})


gym.register("adaptrl-test/Point-v0", entry_point=PointEnv)
gym.register("adaptrl-test/Tick-v0", entry_point=TickEnv)


@dataclasses.dataclass(frozen=True)
class PointGoals(GymnasiumFamily):
    """Point navigation on the host, goal by the set_task path."""

    env_id: str = "adaptrl-test/Point-v0"
    horizon: int = 6
    goal_x: tuple[float, float] = (-0.5, 0.5)
    goal_y: tuple[float, float] = (-0.5, 0.5)

    task_params: ClassVar[tuple[str, ...]] = ("goal_x", "goal_y")
    has_success = True

    def set_task(self, env, task):
        env.unwrapped.set_goal([task["goal_x"], task["goal_y"]])


@dataclasses.dataclass(frozen=True)
class Ticks(GymnasiumFamily):
    """TickEnv: ``stop`` by constructor keyword, ``scale`` by set_task, and a reward
    wrapper that adds 100 * bonus."""

    env_id: str = "adaptrl-test/Tick-v0"
    horizon: int = 4
    stop: tuple[float, float] = (2.0, 2.0)
    scale: tuple[float, float] = (0.0, 1.0)
    bonus: tuple[float, float] = (0.0, 0.0)
    boom: tuple[float, float] = (0.0, 0.0)
    crash: tuple[float, float] = (0.0, 0.0)

    task_params: ClassVar[tuple[str, ...]] = ("stop", "scale", "bonus", "boom", "crash")
    constructor_params: ClassVar[tuple[str, ...]] = ("stop", "boom", "crash")

    def set_task(self, env, task):
        env.unwrapped.scale = float(task["scale"])

    def reward(self, task, obs, action, reward, next_obs, info):
        return reward + 100.0 * float(task["bonus"])


@dataclasses.dataclass(frozen=True)
class BadKwarg(GymnasiumFamily):
    """A constructor parameter the environment does not accept."""

    env_id: str = "adaptrl-test/Point-v0"
    horizon: int = 3
    wind: tuple[float, float] = (0.0, 1.0)

    task_params: ClassVar[tuple[str, ...]] = ("wind",)
    constructor_params: ClassVar[tuple[str, ...]] = ("wind",)
