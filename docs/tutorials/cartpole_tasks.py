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
    sides: bool = False
    # RL²'s variant: the target's sign hides a good side of the track, where a step past
    # 0.25 from the centre earns 1 more; a trial must try a side once and can go straight
    # to the good one in its later episodes

    task_params: ClassVar[tuple[str, ...]] = ("target", "pole_length")

    def set_task(self, env, task):
        cartpole = env.unwrapped
        cartpole.length = float(task["pole_length"])
        cartpole.polemass_length = cartpole.masspole * cartpole.length

    def reward(self, task, obs, action, reward, next_obs, info):
        x, target = float(next_obs[0]), float(task["target"])
        if self.sides:  # 1 per step alive, 1 more past 0.25 on the good side
            return reward + float(abs(x) > 0.25 and x * target > 0)
        return reward - abs(x - target)  # 1 per step alive, less the distance to the target
