"""HalfCheetah with a hidden target velocity (MAML's cheetah-vel) as a Gymnasium task
family, for benchmarks/sampler_throughput.py (a module of its own: the sampler's worker
processes import it by name)."""

import dataclasses
from typing import ClassVar

import numpy as np

from adaptrl.tasks.gymnasium import GymnasiumFamily


@dataclasses.dataclass(frozen=True)
class CheetahVelocity(GymnasiumFamily):
    """HalfCheetah-v5 rewarded for running at a hidden target velocity."""

    env_id: str = "HalfCheetah-v5"
    horizon: int = 200
    velocity: tuple[float, float] = (0.0, 2.0)

    task_params: ClassVar[tuple[str, ...]] = ("velocity",)

    def reward(self, task, obs, action, reward, next_obs, info):
        ctrl = 0.05 * float(np.sum(np.square(action)))
        return -abs(float(info["x_velocity"]) - float(task["velocity"])) - ctrl
