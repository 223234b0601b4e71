"""CartPole as a task family: a hidden target cart position and a varied pole length.

The tutorial docs/tutorial_gymnasium.md builds this file step by step; the test suite
imports and trains it (tests/test_tutorials.py).
"""

import dataclasses
from typing import ClassVar

import gymnasium as gym

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
    parking: bool = False
    # RL²'s variant: the target's sign hides which side of the track pays; an episode that
    # lasts its whole horizon and ends with the cart on that side earns 50 at its last step

    task_params: ClassVar[tuple[str, ...]] = ("target", "pole_length")

    def build(self, task=None):
        # RecordEpisodeStatistics marks an episode's last step with info["episode"]
        return gym.wrappers.RecordEpisodeStatistics(super().build(task))

    def set_task(self, env, task):
        cartpole = env.unwrapped
        cartpole.length = float(task["pole_length"])
        cartpole.polemass_length = cartpole.masspole * cartpole.length

    def reward(self, task, obs, action, reward, next_obs, info):
        x, target = float(next_obs[0]), float(task["target"])
        if self.parking:  # 1 per step alive, 50 more for ending a full episode on the good side
            full = info.get("episode", {}).get("l") == self.horizon
            return reward + 50.0 * float(full and x * target > 0)
        return reward - abs(x - target)  # 1 per step alive, less the distance to the target
