"""Random tabular MDPs (Duan et al. 2016, Sec. 4.2; the setting of Osband et al. 2013).

A task is an MDP with ``states`` states and ``actions`` actions:

* transitions ``P[s, a] ~ Dirichlet(1, ..., 1)`` (flat), one distribution per pair;
* mean rewards ``R[s, a] ~ Normal(1, 1)``;
* an observed reward is ``R[s, a] + reward_noise * Normal(0, 1)`` (unit variance default).

Every episode starts in state 0 ("an episode always starts on the first state", the paper as
quoted by public re-implementations) and lasts ``horizon`` steps (10 in the paper). The
observation is the one-hot state; RL²
also sees the previous action, reward and done flag (:mod:`adaptrl.sampling.trials`).
Checked against Duan et al. Sec. 4.2: the family matches the paper's setting.

**Exact optimum.** Knowing the MDP, the best expected return of one episode is given by
finite-horizon value iteration from the start state:
``V_H = 0``, ``Q_t = R + P V_{t+1}``, ``V_t = max_a Q_t``; ``optimum = V_0[0]``.
Reward noise has zero mean and does not change it.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.tasks.base import RLFamily


def finite_horizon_values(transitions: jax.Array, rewards: jax.Array, horizon: int) -> jax.Array:
    """Optimal action values of a finite-horizon MDP by backward induction.

    ``transitions [S, A, S]``, ``rewards [S, A]`` -> ``Q [horizon, S, A]`` where ``Q[t]``
    is the optimal expected reward-to-go after taking action ``a`` in ``s`` at step ``t``.
    """

    def backup(v_next, _):
        q = rewards + transitions @ v_next
        return q.max(-1), q

    _, q = jax.lax.scan(backup, jnp.zeros(rewards.shape[0], rewards.dtype), None,
                        length=horizon, reverse=True)
    return q


@dataclasses.dataclass(frozen=True)
class TabularMDP(RLFamily):
    """Registered as ``tabular-mdp``."""

    states: int = 10
    # number of states
    actions: int = 5
    # number of actions
    horizon: int = 10
    # steps per episode
    reward_mean: float = 1.0
    # mean of the Normal prior over mean rewards
    reward_std: float = 1.0
    # standard deviation of the Normal prior over mean rewards
    reward_noise: float = 1.0
    # standard deviation of the observed reward around its mean
    dirichlet: float = 1.0
    # concentration of the (flat) Dirichlet prior over each transition distribution

    has_optimum = True
    # the priors over mean rewards and transitions (not the reward noise: the dynamics)
    DISTRIBUTION_OPTIONS = ("split_seed", "reward_mean", "reward_std", "dirichlet")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.states <= 1000 or not 2 <= self.actions <= 1000:
            raise ValueError("states must be in [1, 1000] and actions in [2, 1000]")
        if not 1 <= self.horizon <= 100_000:
            raise ValueError("horizon must be between 1 and 100000")
        if self.reward_std < 0 or self.reward_noise < 0 or self.dirichlet <= 0:
            raise ValueError("reward_std, reward_noise must be >= 0 and dirichlet > 0")

    @property
    def observation_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(0.0, 1.0, (self.states,), np.float32)

    @property
    def action_space(self) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(self.actions)

    def sample_one(self, key):
        k_p, k_r = jax.random.split(key)
        alpha = jnp.full((self.states,), self.dirichlet, jnp.float32)
        transitions = jax.random.dirichlet(k_p, alpha, (self.states, self.actions))
        rewards = self.reward_mean + self.reward_std * jax.random.normal(
            k_r, (self.states, self.actions))
        return {"transitions": transitions, "rewards": rewards}

    def _obs(self, state):
        return jax.nn.one_hot(state, self.states, dtype=jnp.float32)

    def reset(self, key, task):
        state = jnp.zeros((), jnp.int32)
        return self._obs(state), state

    def step(self, key, state, action, task):
        k_next, k_reward = jax.random.split(key)
        mean = task["rewards"][state, action]
        reward = mean + self.reward_noise * jax.random.normal(k_reward, mean.shape)
        probs = task["transitions"][state, action]
        nxt = jax.random.choice(k_next, self.states, p=probs).astype(jnp.int32)
        return self._obs(nxt), nxt, reward.astype(jnp.float32), jnp.array(False), {}

    def optimum(self, task):
        q = finite_horizon_values(task["transitions"], task["rewards"], self.horizon)
        return q[0, 0].max()
