"""k-armed Bernoulli bandits (Duan et al. 2016, Sec. 4.1).

A task is the vector of arm means, each ~ U[0, 1]. An episode is ``pulls`` pulls; each
pull of arm ``a`` pays 1 with probability ``p[a]``. The observation is constant (the
learner must remember what it has seen). The exact optimum is the clairvoyant return
``pulls * max(p)`` per episode: no strategy that does not know ``p`` can beat it in
expectation.

Duan et al.'s "n pulls per trial" for RL² is ``tasks.pulls=1`` (an episode is one pull)
with ``algo.trial_episodes=n``; RL² refuses a new run with another ``pulls``. A trial's
optimum is then ``n * max(p)`` (``trial_optimum`` in the harness's results).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.tasks.base import RLFamily


@dataclasses.dataclass(frozen=True)
class Bandit(RLFamily):
    """Registered as ``bandit``."""

    arms: int = 5
    # number of arms k
    pulls: int = 10
    # pulls per episode (RL²: 1, with algo.trial_episodes pulls per trial)

    has_optimum = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.arms <= 10_000:
            raise ValueError("arms must be between 2 and 10000")
        if not 1 <= self.pulls <= 100_000:
            raise ValueError("pulls must be between 1 and 100000")

    @property
    def horizon(self) -> int:  # type: ignore[override]  # derived from pulls
        return self.pulls

    @property
    def observation_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(0.0, 0.0, (1,), np.float32)

    @property
    def action_space(self) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(self.arms)

    def sample_one(self, key):
        return {"means": jax.random.uniform(key, (self.arms,))}

    def reset(self, key, task):
        return jnp.zeros(1, jnp.float32), jnp.zeros((), jnp.int32)

    def step(self, key, state, action, task):
        reward = jax.random.bernoulli(key, task["means"][action]).astype(jnp.float32)
        return jnp.zeros(1, jnp.float32), state + 1, reward, jnp.array(False), {}

    def optimum(self, task):
        return self.pulls * task["means"].max()
