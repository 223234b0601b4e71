"""Returns and advantages over one trajectory (unbatched; ``vmap`` at the call site)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _gae_step(carry, inputs):
    gae, next_value = carry
    reward, value, done, discount_lambda, discount = inputs
    not_done = 1.0 - done
    delta = reward + discount * not_done * next_value - value
    gae = delta + discount_lambda * not_done * gae
    return (gae, value), gae


def gae(rewards, values, dones, *, discount: float, lam: float, last_value=0.0):
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16).

    Args:
      rewards: ``[T]`` rewards r_t.
      values: ``[T]`` value estimates V(s_t).
      dones: ``[T]`` 1.0 where the episode ends after step t (no bootstrapping past it).
      last_value: V(s_T) used to bootstrap after the final step (0 for a finished horizon).

    Returns:
      ``[T]`` advantages A_t; ``A_t + V(s_t)`` are the λ-returns.
    """
    dones = dones.astype(rewards.dtype)
    T = rewards.shape[0]
    coef = jnp.broadcast_to(jnp.asarray(discount * lam, rewards.dtype), (T,))
    disc = jnp.broadcast_to(jnp.asarray(discount, rewards.dtype), (T,))
    init = (jnp.zeros((), rewards.dtype), jnp.asarray(last_value, rewards.dtype))
    _, adv = jax.lax.scan(_gae_step, init, (rewards, values, dones, coef, disc), reverse=True)
    return adv


def discounted_returns(rewards, dones, *, discount: float):
    """``[T]`` discounted reward-to-go sum_{k>=t} γ^{k-t} r_k, restarting after each done."""
    return gae(rewards, jnp.zeros_like(rewards), dones, discount=discount, lam=1.0)
