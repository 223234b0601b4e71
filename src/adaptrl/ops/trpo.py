"""Trust-region pieces (Schulman et al. 2015, App. C): natural step and line search.

Both work on flat parameter vectors; ravel pytrees with ``jax.flatten_util`` at the call
site. The conjugate-gradient solve is ``jax.scipy.sparse.linalg.cg``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def natural_step(grad, fisher_vp: Callable, *, max_kl: float, iters: int, damping: float):
    """Solve ``(F + damping I) x = grad`` by conjugate gradient and scale ``x`` so the
    quadratic KL model ``½ xᵀ F x`` equals ``max_kl``.

    Returns ``(step [P], expected_improvement)`` where the step is to be *added* to the
    parameters to increase the objective whose gradient is ``grad``.
    """

    def matvec(v):
        return fisher_vp(v) + damping * v

    x, _ = jax.scipy.sparse.linalg.cg(matvec, grad, maxiter=iters)
    shs = 0.5 * jnp.dot(x, matvec(x))
    scale = jnp.sqrt(max_kl / jnp.maximum(shs, 1e-12))
    step = scale * x
    return step, jnp.dot(grad, step)


def backtracking_line_search(
    evaluate: Callable, params, step, *, max_kl: float, backtrack_ratio: float = 0.5,
    max_backtracks: int = 15,
):
    """Try ``params + ratio^i * step`` for i = 0, 1, ... and accept the first candidate
    whose loss improves and whose KL stays within ``max_kl``; otherwise keep ``params``.

    ``evaluate(p) -> (loss, kl)`` with loss to be minimised. Returns
    ``(new_params, accepted, loss, kl)``.
    """
    loss0, _ = evaluate(params)

    def cond(c):
        i, accepted, *_ = c
        return (i < max_backtracks) & ~accepted

    def body(c):
        i, _, _, _ = c
        cand = params + backtrack_ratio**i * step
        loss, kl = evaluate(cand)
        ok = (loss < loss0) & (kl <= max_kl) & jnp.isfinite(loss) & jnp.isfinite(kl)
        return i + 1, ok, loss, kl

    init = (jnp.array(0), jnp.array(False), loss0, jnp.zeros_like(loss0))
    i, accepted, loss, kl = jax.lax.while_loop(cond, body, init)
    new = jnp.where(accepted, params + backtrack_ratio ** (i - 1) * step, params)
    return new, accepted, jnp.where(accepted, loss, loss0), jnp.where(accepted, kl, 0.0)
