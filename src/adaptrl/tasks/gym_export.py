"""Gymnasium export: any JAX-native RL family as a ``gymnasium.Env``.

* :class:`FamilyEnv` — an episode of the family on one task. The task is
  ``reset(options={"task": task})`` (an unbatched task pytree), else the one given to the
  constructor, else a fresh draw from the family at every reset.
* :class:`TrialEnv` — a whole RL² *trial* (``trial_episodes`` episodes of one task) as one
  Gymnasium episode, observing the trial inputs of :mod:`adaptrl.sampling.trials`
  (observation, previous action, previous reward, episode-done flag). A recurrent agent
  from any library that resets its memory at Gymnasium episode boundaries then sees
  exactly what our RL² sees. The task is drawn afresh at each reset unless given. (An
  early termination jumps straight to the next episode instead of the masked steps of the
  jitted layout; the agent's inputs are the same.)

Each step is one jitted call; keys derive from Gymnasium's seeded ``np_random``, so the
same seed gives the same episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.sampling import trials
from adaptrl.tasks.base import RLFamily


def _space32(space: gym.Space) -> gym.Space:
    if isinstance(space, gym.spaces.Box):
        return gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32),
                              space.shape, np.float32)
    return space


class _JaxEnv(gym.Env):
    """Shared plumbing: seeding, task choice, converting actions and outputs."""

    metadata = {"render_modes": []}

    def __init__(self, family: RLFamily, *, task: Any = None):
        if not isinstance(family, RLFamily):
            raise TypeError("only JAX-native RL families can be exported")
        self.family = family
        self.task = task
        self.action_space = _space32(family.action_space)
        self._sample = jax.jit(family.sample_one)
        self._key: jax.Array | None = None

    def _next_key(self) -> jax.Array:
        assert self._key is not None, "reset() first"
        self._key, key = jax.random.split(self._key)
        return key

    def _begin(self, seed, options) -> Any:
        super().reset(seed=seed)
        self._key = jax.random.PRNGKey(int(self.np_random.integers(2**31 - 1)))
        task = (options or {}).get("task", self.task)
        if task is None:
            task = self._sample(self._next_key())
        self.current_task = jax.tree.map(jnp.asarray, task)
        return self.current_task

    def _action(self, action):
        if isinstance(self.action_space, gym.spaces.Discrete):
            return jnp.asarray(int(action), jnp.int32)
        return jnp.asarray(action, jnp.float32)


class FamilyEnv(_JaxEnv):
    """One episode of ``family`` on one task per Gymnasium episode."""

    def __init__(self, family: RLFamily, *, task: Any = None):
        super().__init__(family, task=task)
        self.observation_space = _space32(family.observation_space)
        self._reset = jax.jit(family.reset)
        self._step = jax.jit(family.step)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        task = self._begin(seed, options)
        obs, self._state = self._reset(self._next_key(), task)
        self._t = 0
        return np.asarray(obs, np.float32), {}

    def step(self, action):
        obs, self._state, reward, done, info = self._step(
            self._next_key(), self._state, self._action(action), self.current_task)
        self._t += 1
        terminated = bool(done)
        truncated = not terminated and self._t >= self.family.horizon
        out = {k: np.asarray(v) for k, v in info.items()}
        return np.asarray(obs, np.float32), float(reward), terminated, truncated, out


def _trial_env_step(family: RLFamily, task, state, t, action, key):
    """Step, build the next trial input, and restart the environment at episode ends."""
    key, k_env, k_reset = jax.random.split(key, 3)
    obs, state, reward, terminal, info = family.step(k_env, state, action, task)
    ended = terminal | (t + 1 == family.horizon)
    reset_obs, reset_state = family.reset(k_reset, task)
    obs = jnp.where(ended, reset_obs, obs)
    state = jax.tree.map(lambda r, s: jnp.where(ended, r, s), reset_state, state)
    x = trials.make_input(obs, trials.encode_action(action, family.action_space), reward,
                          ended)
    return x, state, jnp.where(ended, 0, t + 1), reward, ended, info, key


def _trial_env_reset(family: RLFamily, task, key):
    obs, state = family.reset(key, task)
    return trials.make_input(obs, *trials.initial_inputs(family)), state


class TrialEnv(_JaxEnv):
    """A trial of ``trial_episodes`` episodes of one task per Gymnasium episode."""

    def __init__(self, family: RLFamily, *, trial_episodes: int, task: Any = None):
        super().__init__(family, task=task)
        if trial_episodes < 1:
            raise ValueError("trial_episodes must be >= 1")
        self.trial_episodes = trial_episodes
        dim = trials.input_dim(family)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self._reset = jax.jit(lambda task, key: _trial_env_reset(family, task, key))
        self._step = jax.jit(lambda task, state, t, action, key: _trial_env_step(
            family, task, state, t, action, key))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        task = self._begin(seed, options)
        x, self._state = self._reset(task, self._next_key())
        self._t = jnp.zeros((), jnp.int32)
        self._episode = 0
        return np.asarray(x, np.float32), {}

    def step(self, action):
        x, self._state, self._t, reward, ended, info, self._key = self._step(
            self.current_task, self._state, self._t, self._action(action), self._key)
        self._episode += int(ended)
        terminated = self._episode >= self.trial_episodes
        out = {k: np.asarray(v) for k, v in info.items()}
        out["trial_episode"] = self._episode  # episodes finished in this trial
        return np.asarray(x, np.float32), float(reward), terminated, False, out
