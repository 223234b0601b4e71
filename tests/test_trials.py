"""Trial logic (adaptrl.sampling.trials) against a hand-checked example."""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl import policies
from adaptrl.sampling import trials
from adaptrl.tasks.base import RLFamily


@dataclasses.dataclass(frozen=True)
class Ticker(RLFamily):
    """Deterministic: obs = [step index]; reward = 10 * task + step index; optionally
    terminates after step 1 of each episode."""

    horizon: int = 3
    terminate_early: bool = False

    @property
    def observation_space(self):
        return gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    @property
    def action_space(self):
        return gym.spaces.Discrete(2)

    def sample_one(self, key):
        return jnp.float32(1.0)

    def reset(self, key, task):
        return jnp.zeros(1, jnp.float32), jnp.zeros((), jnp.int32)

    def step(self, key, state, action, task):
        reward = 10.0 * task + state.astype(jnp.float32)
        done = jnp.array(self.terminate_early) & (state == 1)
        return (state + 1).astype(jnp.float32)[None], state + 1, reward, done, {}


@dataclasses.dataclass(frozen=True)
class CountingPolicy:
    """Its carry counts the steps it has seen; its value is the new count; it always
    picks action 1."""

    def initial_carry(self):
        return jnp.zeros((), jnp.float32)

    def step(self, params, carry, x):
        carry = carry + 1.0
        return carry, policies.Categorical(jnp.array([-1e9, 0.0])), carry


def test_hidden_state_kept_across_episodes_and_reset_across_trials():
    fam, pol = Ticker(), CountingPolicy()
    tasks = jnp.array([1.0, 2.0])
    tr = jax.jit(jax.vmap(lambda t, k: trials.trial(fam, pol, None, t, key=k, episodes=2)))(
        tasks, jax.random.split(jax.random.PRNGKey(0), 2))
    # carry counts 1..6 through both episodes of a trial; the second trial starts again
    np.testing.assert_array_equal(tr.value, [[1, 2, 3, 4, 5, 6]] * 2)
    np.testing.assert_array_equal(tr.action, 1)
    # inputs [obs, onehot(prev action) (2), prev reward, prev done], hand-written for task 1
    expected = np.array([
        [0, 0, 0, 0, 0],  # trial start: zero previous action, reward and flag
        [1, 0, 1, 10, 0],
        [2, 0, 1, 11, 0],
        [0, 0, 1, 12, 1],  # new episode: env reset, but the episode-done flag is up
        [1, 0, 1, 10, 0],
        [2, 0, 1, 11, 0],
    ], np.float32)
    np.testing.assert_array_equal(tr.inputs[0], expected)
    np.testing.assert_array_equal(tr.reward[1], [20, 21, 22, 20, 21, 22])
    np.testing.assert_array_equal(tr.done[0], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(trials.episode_returns(tr, 2), [[33, 33], [63, 63]])
    # replay from the trial-start carry reproduces the values
    _, values = trials.replay(pol, None, tr.inputs[0], tr.mask[0])
    np.testing.assert_array_equal(values, tr.value[0])


def test_early_termination_masks_rest_of_episode():
    fam, pol = Ticker(terminate_early=True), CountingPolicy()
    tr = trials.trial(fam, pol, None, jnp.float32(1.0), key=jax.random.PRNGKey(0), episodes=2)
    np.testing.assert_array_equal(tr.mask, [1, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(tr.reward, [10, 11, 0, 10, 11, 0])
    # the carry does not advance on the masked step
    np.testing.assert_array_equal(tr.value[tr.mask > 0], [1, 2, 3, 4])
    assert tr.inputs[3, -1] == 1.0 and tr.inputs[3, -2] == 11.0
    _, values = trials.replay(pol, None, tr.inputs, tr.mask)
    np.testing.assert_array_equal(values[tr.mask > 0], [1, 2, 3, 4])


def test_gru_policy_replay_matches_sampling():
    fam = Ticker()
    pol = policies.RecurrentPolicy(trials.input_dim(fam), 2, True, hidden=8)
    params = pol.init(key=jax.random.PRNGKey(0))
    tr = trials.trial(fam, pol, params, jnp.float32(1.0), key=jax.random.PRNGKey(1), episodes=3)
    dist, values = trials.replay(pol, params, tr.inputs, tr.mask)
    np.testing.assert_allclose(values, tr.value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(policies.log_prob(dist, tr.action), tr.log_prob, rtol=1e-5,
                               atol=1e-6)


def test_greedy_trial_takes_the_most_likely_action():
    @dataclasses.dataclass(frozen=True)
    class Leaning:  # prefers action 1 only slightly
        def initial_carry(self):
            return jnp.zeros(())

        def step(self, params, carry, x):
            return carry, policies.Categorical(jnp.array([0.0, 0.1])), carry

    fam = Ticker()
    run = functools.partial(trials.trial, fam, Leaning(), None, jnp.float32(1.0), episodes=20)
    greedy = run(key=jax.random.PRNGKey(0), greedy=True)
    sampled = run(key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(greedy.action, 1)
    assert 0 < int(sampled.action.sum()) < sampled.action.size
