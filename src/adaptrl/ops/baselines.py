"""The linear feature baseline of Duan et al. (2016) used by the MAML paper.

Features of a state at time t: [s, s², t/100, (t/100)², (t/100)³, 1]. Per task, fit by
ridge regression to the discounted returns, then predict values.
"""

from __future__ import annotations

import jax.numpy as jnp


def features(obs, t):
    """``obs [..., d]``, ``t [...]`` (step index) -> ``[..., 2d + 4]``."""
    al = (t.astype(obs.dtype) / 100.0)[..., None]
    return jnp.concatenate([obs, obs**2, al, al**2, al**3, jnp.ones_like(al)], axis=-1)


def fit_linear(obs, t, returns, mask, *, reg: float = 1e-5):
    """Least squares ``w = argmin ||F w - R||² + reg ||w||²`` over masked samples.

    ``obs [N, d]``, ``t [N]``, ``returns [N]``, ``mask [N]`` -> weights ``[2d + 4]``.
    """
    f = features(obs, t) * mask[:, None]
    k = f.shape[-1]
    # least squares on the ridge-augmented system (SVD based): the normal equations would
    # square the condition number of the nearly collinear time features in float32
    a = jnp.concatenate([f, jnp.sqrt(reg) * jnp.eye(k, dtype=f.dtype)])
    b = jnp.concatenate([returns * mask, jnp.zeros(k, f.dtype)])
    return jnp.linalg.lstsq(a, b)[0]


def predict_linear(weights, obs, t):
    return features(obs, t) @ weights
