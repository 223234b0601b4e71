"""RL²'s GAE over a trial skips the steps masked after an early termination: an episode's
terminal step bootstraps from the next episode's first value, never from the (untrained)
values of masked steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptrl.algos.rl2 import trial_gae
from adaptrl.ops.returns import gae


def reference(reward, value, mask, discount, lam):
    """Plain-Python GAE over the real steps of the trial only."""
    real = [i for i in range(len(reward)) if mask[i]]
    out = np.zeros(len(reward))
    adv, next_value = 0.0, 0.0
    for j in reversed(range(len(real))):
        i, last = real[j], j == len(real) - 1
        delta = reward[i] + (0.0 if last else discount * next_value) - value[i]
        adv = delta + (0.0 if last else discount * lam * adv)
        out[i], next_value = adv, value[i]
    return out


_jitted = jax.jit(lambda r, v, m: trial_gae(r, v, m, discount=0.9, lam=0.8))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), min_size=12, max_size=12), st.integers(0, 2**31 - 1))
def test_trial_gae_matches_a_python_loop_over_the_real_steps(mask, seed):
    mask = np.array([True, *mask[1:]], np.float32)  # a trial starts with a real step
    rng = np.random.default_rng(seed)
    reward = (rng.normal(size=mask.size) * mask).astype(np.float32)
    value = rng.normal(size=mask.size).astype(np.float32)
    got = _jitted(reward, value, mask)  # one shape: compiled once
    real = mask > 0
    np.testing.assert_allclose(np.asarray(got)[real],
                               reference(reward, value, mask, 0.9, 0.8)[real], atol=1e-5)


def test_masked_values_do_not_enter_the_advantages_and_no_mask_is_plain_gae():
    mask = jnp.array([1, 1, 0, 0, 1, 1, 1, 0], jnp.float32)  # two early terminations
    reward = jnp.arange(8.0) * mask
    value = jnp.linspace(-1.0, 1.0, 8)
    other = jnp.where(mask > 0, value, 100.0)  # garbage on the masked steps only
    batched = jax.jit(jax.vmap(lambda v: trial_gae(reward, v, mask, discount=0.99, lam=0.95)))(
        jnp.stack([value, other]))
    np.testing.assert_allclose(batched[0] * mask, batched[1] * mask, atol=1e-5)
    ones = jnp.ones(8)
    end = jnp.zeros(8).at[-1].set(1.0)
    plain = jax.jit(lambda m, e: (trial_gae(reward, value, m, discount=0.99, lam=0.95),
                                  gae(reward, value, e, discount=0.99, lam=0.95)))
    np.testing.assert_allclose(*plain(ones, end), atol=1e-6)
