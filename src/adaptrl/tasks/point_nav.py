"""MAML's 2D point navigation (Finn et al. 2017, Sec. 5.3), dense and sparse.

A point starts at the origin; the task is a goal drawn uniformly from [-0.5, 0.5]^2. An
action moves the point by the action clipped to [-0.1, 0.1] on each axis. The dense reward
is minus the distance from the new position to the goal; the sparse variant pays 1 for
each step that ends within ``goal_radius`` of the goal. Episodes last ``horizon`` steps.

**Action scale.** The policy acts in the normalised box [-1, 1]^2, which the environment
clips and scales by ``max_action`` (0.1) — as the authors' code does by wrapping the point
environment in rllab's ``normalize``. A Gaussian policy's initial standard deviation of 1
is then 0.1 in position units, the size of one move, rather than ten moves.

Unlike the authors' code we do not end the episode once the point is within 0.01 of the
goal on both axes: a fixed horizon keeps episodes aligned for batching and makes the
optimum exact; the difference in optimal return is below 0.015 per episode.

**Exact optimum.** After t steps the reachable set is the box [-0.1 t, 0.1 t]^2 (a sum of
t boxes of half-width 0.1), so the distance after step t is at least the distance from
the goal to that box, attained at ``clip(g, -0.1 t, 0.1 t)``. The path
``p_t = clip(g, -0.1 t, 0.1 t)`` is feasible (successive points differ by at most 0.1 per
axis), so it meets every one of these lower bounds at once and is optimal for any reward
that decreases with distance — the dense return and the sparse count alike:

    optimum(g) = -sum_{t=1..H} || clip(g, -0.1 t, 0.1 t) - g ||.

With per-axis clipping the fastest path is *not* the straight line to the goal: it moves
diagonally at full speed on both axes until the shorter coordinate is reached, then along
the remaining axis, since a straight line at a non-45° angle wastes speed on one axis.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.tasks.base import RLFamily


@dataclasses.dataclass(frozen=True)
class PointNav(RLFamily):
    """Registered as ``point-nav`` and ``point-nav-sparse`` (``sparse=True``)."""

    horizon: int = 100
    # steps per episode
    goal_low: float = -0.5
    # lower bound of each goal coordinate
    goal_high: float = 0.5
    # upper bound of each goal coordinate
    max_action: float = 0.1
    # largest move per axis and step; actions in [-1, 1] are scaled by it
    sparse: bool = False
    # sparse reward (1 within goal_radius) instead of minus the distance
    goal_radius: float = 0.1
    # radius that counts as reaching the goal (success; sparse reward)

    has_optimum = True
    has_success = True
    DISTRIBUTION_OPTIONS = ("split_seed", "goal_low", "goal_high")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.horizon < 1:
            raise ValueError("horizon must be >= 1")
        if not self.goal_low < self.goal_high:
            raise ValueError("goal_low must be below goal_high")
        if self.max_action <= 0 or self.goal_radius <= 0:
            raise ValueError("max_action and goal_radius must be positive")

    @property
    def observation_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    @property
    def action_space(self) -> gym.spaces.Box:
        """Normalised actions; a move is ``clip(action, -1, 1) * max_action``."""
        return gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def sample_one(self, key):
        return {"goal": jax.random.uniform(key, (2,), minval=self.goal_low, maxval=self.goal_high)}

    def reset(self, key, task):
        pos = jnp.zeros(2, jnp.float32)
        return pos, pos

    def _reward(self, dist):
        if self.sparse:
            return (dist <= self.goal_radius).astype(jnp.float32)
        return -dist

    def step(self, key, state, action, task):
        pos = state + jnp.clip(action, -1.0, 1.0) * self.max_action
        dist = jnp.linalg.norm(pos - task["goal"])
        info = {"success": dist <= self.goal_radius}
        return pos, pos, self._reward(dist), jnp.array(False), info

    def optimum(self, task):
        t = jnp.arange(1, self.horizon + 1, dtype=jnp.float32)[:, None] * self.max_action
        path = jnp.clip(task["goal"], -t, t)
        return self._reward(jnp.linalg.norm(path - task["goal"], axis=-1)).sum()
