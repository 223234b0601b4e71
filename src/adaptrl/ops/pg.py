"""Policy-gradient losses over flat, masked samples (``[N]`` arrays)."""

from __future__ import annotations

import jax.numpy as jnp


def masked_mean(x, mask):
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def normalize(adv, mask, eps: float = 1e-8):
    """Centre and scale advantages over the masked samples."""
    mean = masked_mean(adv, mask)
    std = jnp.sqrt(masked_mean((adv - mean) ** 2, mask))
    return (adv - mean) / (std + eps) * mask


def vpg_loss(logp, adv, mask):
    """REINFORCE with baseline (Williams 1992): -E[log π(a|s) A]."""
    return -masked_mean(logp * adv, mask)


def surrogate_loss(logp, logp_old, adv, mask):
    """Importance-weighted surrogate of TRPO (Schulman et al. 2015, eq. 14), negated."""
    return -masked_mean(jnp.exp(logp - logp_old) * adv, mask)


def ppo_clip_loss(logp, logp_old, adv, mask, *, clip: float):
    """Clipped surrogate of PPO (Schulman et al. 2017, eq. 7), negated."""
    ratio = jnp.exp(logp - logp_old)
    clipped = jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
    return -masked_mean(jnp.minimum(ratio * adv, clipped * adv), mask)
