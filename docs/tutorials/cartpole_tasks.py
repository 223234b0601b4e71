"""CartPole as a task family: a hidden target cart position and a varied pole length.

The tutorial docs/tutorial_gymnasium.md builds this file step by step; the test suite
imports and trains it (tests/test_tutorials.py).
"""

import dataclasses
from typing import ClassVar

import numpy as np

from adaptrl.tasks.gymnasium import GymnasiumFamily


@dataclasses.dataclass(frozen=True)
class CartPoleTarget(GymnasiumFamily):
    """CartPole: keep the pole up and the cart near a hidden target position."""

    env_id: str = "CartPole-v1"
    horizon: int = 100
    target: tuple[float, float] = (-1.0, 1.0)
    # range of the hidden target cart position (reward wrapper)
    pole_length: tuple[float, float] = (0.3, 0.8)
    # range of the pole's half-length (set on the environment before each reset)
    sparse: bool = False
    # reward the target only within 0.3 of it (an RL² trial must search for it once)

    task_params: ClassVar[tuple[str, ...]] = ("target", "pole_length")

    def set_task(self, env, task):
        cartpole = env.unwrapped
        cartpole.length = float(task["pole_length"])
        cartpole.polemass_length = cartpole.masspole * cartpole.length

    def reward(self, task, obs, action, reward, next_obs, info):
        distance = abs(float(next_obs[0]) - float(task["target"]))
        if self.sparse:  # 1 per step alive, 1 more near the hidden target
            return reward + float(distance < 0.3)
        return reward - distance  # 1 per step alive, less the distance to the target
