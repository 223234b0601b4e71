"""Soft actor-critic pieces (Haarnoja et al. 2018, the V-function version that PEARL uses)
and PEARL's probabilistic context (Rakelly et al. 2019, Sec. 4.1): pure functions over
unbatched or flat data, batched with ``vmap`` at the call site.

Shapes: ``d`` is the action or latent dimension, ``B`` a batch of transitions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: PEARL's (rlkit's) clamp of the policy's log standard deviation
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
#: rlkit's clamp of each factor's variance in the product of Gaussians
MIN_VARIANCE = 1e-7


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log π(a) of ``a = tanh(u)``, ``u ~ N(mean, exp(log_std)²)``, from the pre-squash
    sample ``u [d]`` (Haarnoja et al. 2018, App. C): the Gaussian's log density minus
    Σ log(1 - tanh(u)²), the latter in the stable form 2 (log 2 - u - softplus(-2u))."""
    z = (u - mean) * jnp.exp(-log_std)
    gauss = jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)
    log_det = jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return gauss - log_det


def product_of_gaussians(mean: jax.Array, var: jax.Array, mask: jax.Array | None = None):
    """The (normalised) product of the Gaussian factors ``N(mean[n], var[n])``,
    ``mean, var [N, d]``, over the ``N`` transitions with ``mask[n] = 1`` (all without a
    mask): precision ``Σ 1/var_n`` and mean ``var · Σ mean_n / var_n`` (PEARL eq. 3's
    permutation-invariant posterior; each variance clamped below at ``MIN_VARIANCE``).
    Returns ``(mean [d], var [d])``."""
    var = jnp.maximum(var, MIN_VARIANCE)
    w = jnp.ones(mean.shape[:1], mean.dtype) if mask is None else mask
    precision = jnp.sum(w[:, None] / var, axis=0)
    out_var = 1.0 / precision
    return out_var * jnp.sum(w[:, None] * mean / var, axis=0), out_var


def kl_to_standard_normal(mean: jax.Array, var: jax.Array) -> jax.Array:
    """KL( N(mean, diag var) || N(0, I) ), summed over the ``d`` dimensions: PEARL's
    information bottleneck on the posterior over the latent context."""
    return 0.5 * jnp.sum(var + mean**2 - 1.0 - jnp.log(var), axis=-1)


def q_target(reward: jax.Array, terminal: jax.Array, next_value: jax.Array, *,
             discount: float, reward_scale: float) -> jax.Array:
    """The soft Bellman target ``scale · r + γ (1 - terminal) V_target(s')`` ``[B]``."""
    return reward_scale * reward + (1.0 - terminal) * discount * next_value


def q_loss(q1: jax.Array, q2: jax.Array, target: jax.Array) -> jax.Array:
    """Both critics' mean squared Bellman errors, summed (PEARL's ``qf_loss``)."""
    target = jax.lax.stop_gradient(target)
    return jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)


def v_loss(v: jax.Array, min_q_new: jax.Array, log_pi: jax.Array) -> jax.Array:
    """Soft value regression onto ``min(Q1, Q2)(s, ã) - log π(ã|s)``, ``ã ~ π`` (SAC eq. 5)."""
    return jnp.mean((v - jax.lax.stop_gradient(min_q_new - log_pi)) ** 2)


def policy_loss(log_pi: jax.Array, min_q_new: jax.Array, mean: jax.Array, log_std: jax.Array,
                *, mean_reg: float, std_reg: float) -> jax.Array:
    """The reparameterised policy objective ``E[log π(ã|s) - min Q(s, ã)]`` (SAC eq. 12,
    temperature folded into the reward scale) plus rlkit's penalties on the pre-squash mean
    and log standard deviation (``mean [B, d]``, ``log_std [B, d]``)."""
    return (jnp.mean(log_pi - min_q_new) + mean_reg * jnp.mean(mean**2)
            + std_reg * jnp.mean(log_std**2))


def soft_update(target, online, tau: float):
    """Polyak averaging ``target ← (1 - τ) target + τ online`` of two parameter pytrees."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
