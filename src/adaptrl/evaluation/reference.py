"""Reference strategies: classic learners with known behaviour, shown beside meta-learned
agents on the same held-out tasks (Duan et al. 2016, Tables 1 and 2).

Every strategy plays one *trial* of ``episodes`` episodes per task (the unit of
:mod:`adaptrl.sampling.trials`) and :func:`reference_curve` returns the same dict as
``Algorithm.adaptation_curve``: ``{"return": [num_tasks, episodes]}``, the total reward of
episode 1, 2, ... of the trial, so the sum over the last axis is the total reward per trial.

Strategies (``REFERENCE`` maps each name to the registered family names it supports;
``"*"`` = every JAX-native RL family). A family is named as registered (``adaptrl tasks``),
never inferred from its class: ``point-nav`` and ``point-nav-sparse`` are one class.

* ``random`` — uniform random actions.
* ``ucb1`` — Auer et al. (2002): pull each arm once, then ``argmax mean + sqrt(2 ln t / n)``.
* ``thompson`` — Thompson sampling with Beta(1, 1) priors.
* ``gittins`` — the finite-horizon Gittins index with Beta(1, 1) priors: the arm's
  index with ``h`` pulls left in the trial is the rate λ of a known arm such that, over the
  remaining ``h`` pulls, it is just as good to retire to λ now as to pull the unknown arm
  under the best stopping rule (calibration; Gittins 1979, Niño-Mora 2011). It is the
  Gittins calibration with the discounted tail replaced by the trial's finite horizon,
  which matches the objective here (undiscounted total reward of a fixed-length trial).
  The discounted index (:func:`gittins_index_discounted`) is computed by the same dynamic
  programme and tested against Gittins' published tables.
* ``psrl`` — posterior sampling for RL (Osband et al. 2013) on tabular MDPs: at the start
  of each episode sample an MDP from the posterior (Dirichlet(1) transitions, Normal
  rewards with the family's prior and known noise), solve it by finite-horizon value
  iteration and follow its optimal policy for the episode.
* ``greedy`` — the same as ``psrl`` with the posterior *mean* MDP in place of a sample:
  it exploits what it has seen and explores only where the prior mean (reward 1, uniform
  transitions) looks better than what it knows. Named after Duan et al.'s "Greedy" row,
  but it scores far above it (150.7 vs 134.8 with 10 episodes;
  docs/results/rl2_mdp.md), so theirs was a different, weaker rule.
* ``myopic`` — ``greedy`` without planning: in each state the action with the highest
  posterior mean reward (the same posterior, updated at episode starts), whatever it leads
  to. On Duan et al.'s MDPs it scores as well as ``greedy``: remembering the rewards seen,
  not planning through the transitions, is what their targets ask of an agent.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.errors import UserError
from adaptrl.tasks.bandit import Bandit
from adaptrl.tasks.base import RLFamily, family_entry
from adaptrl.tasks.tabular_mdp import TabularMDP, finite_horizon_values

#: strategy name -> registered family names it supports ("*": every JAX-native RL family)
REFERENCE: dict[str, tuple[str, ...]] = {
    "random": ("*",),
    "ucb1": ("bandit",),
    "thompson": ("bandit",),
    "gittins": ("bandit",),
    "psrl": ("tabular-mdp",),
    "greedy": ("tabular-mdp",),
    "myopic": ("tabular-mdp",),
}



def supports(name: str, family_name: str) -> bool:
    """Whether strategy ``name`` can play the registered family ``family_name``."""
    if name not in REFERENCE:
        raise UserError(f"unknown reference strategy {name!r} (known: {', '.join(REFERENCE)})")
    if REFERENCE[name] == ("*",):
        return family_entry(family_name).kind == "rl"
    return family_name in REFERENCE[name]


def reference_names(family_name: str) -> list[str]:
    """The strategies that can play the registered family ``family_name``."""
    return [n for n in REFERENCE if supports(n, family_name)]


# ---- Gittins indices ---------------------------------------------------------------------
def _pull_minus_retire(a, b, lam, *, depth: int, discount: float, finite: bool):
    """Value of "pull now, then stop optimally" minus "retire now" for Beta(a, b) arms.

    ``a, b, lam [m]``. Retiring pays ``lam`` per step. ``finite``: ``depth`` pulls remain
    in total and nothing is paid after them. Otherwise (discounted, infinite horizon) the
    dynamic programme is truncated at ``depth`` pulls, beyond which the posterior mean is
    treated as known (an error of order ``discount ** depth``).
    """
    g = discount

    def retire(d):  # value of retiring after d pulls
        if finite:
            return lam * (depth - d)
        return lam / (1.0 - g)

    d = depth
    if finite:
        v = np.zeros((a.shape[0], d + 1))
    else:
        p = (a[:, None] + np.arange(d + 1)) / (a + b + d)[:, None]
        v = np.maximum(lam[:, None], p) / (1.0 - g)
    for d in range(depth - 1, -1, -1):
        i = np.arange(d + 1)
        p = (a[:, None] + i) / (a + b + d)[:, None]
        cont = p * (1.0 + g * v[:, 1:d + 2]) + (1.0 - p) * g * v[:, :d + 1]
        if d == 0:
            return cont[:, 0] - retire(0)
        v = np.maximum(cont, retire(d)[:, None] if np.ndim(retire(d)) else retire(d))
    raise AssertionError("depth must be >= 1")


def _calibrate(a, b, *, depth: int, discount: float, finite: bool, iters: int = 40):
    """Bisection on the retirement rate λ in [0, 1] where pulling and retiring tie."""
    lo, hi = np.zeros(a.shape[0]), np.ones(a.shape[0])
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        pull_better = _pull_minus_retire(a, b, mid, depth=depth, discount=discount,
                                         finite=finite) > 0
        lo, hi = np.where(pull_better, mid, lo), np.where(pull_better, hi, mid)
    return 0.5 * (lo + hi)


def gittins_index_discounted(a, b, discount: float, *, depth: int | None = None) -> np.ndarray:
    """Gittins index of Bernoulli arms with Beta(a, b) posteriors, infinite horizon,
    discount factor ``discount`` (Gittins 1979). ``a, b`` broadcastable arrays (a = 1 +
    successes, b = 1 + failures). Truncation ``depth`` defaults to where ``discount ** depth
    < 1e-6``."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    if depth is None:
        depth = int(np.ceil(np.log(1e-6) / np.log(discount)))
    out = _calibrate(a.ravel(), b.ravel(), depth=depth, discount=discount, finite=False)
    return out.reshape(a.shape)


@functools.lru_cache(maxsize=8)
def gittins_table_finite(horizon: int) -> np.ndarray:
    """Finite-horizon Gittins indices with Beta(1, 1) priors for trials of ``horizon`` pulls.

    Returns ``[horizon + 1, horizon + 1, horizon + 1]`` (float32): entry ``[h, s, f]`` is the
    index of an arm with ``s`` successes and ``f`` failures when ``h`` pulls remain
    (entries with ``s + f > horizon - h`` or ``h = 0`` are unreachable and left 0).
    Cost grows like ``horizon ** 5``: about a minute for 100.
    """
    if not 1 <= horizon <= 200:
        raise UserError(f"gittins: trials of 1..200 pulls are supported, got {horizon}")
    table = np.zeros((horizon + 1,) * 3, np.float32)
    for h in range(1, horizon + 1):
        s, f = np.array([(s, f) for s in range(horizon - h + 1)
                         for f in range(horizon - h + 1 - s)]).T
        table[h, s, f] = _calibrate(1.0 + s, 1.0 + f, depth=h, discount=1.0, finite=True,
                                    iters=30)
    return table


# ---- bandit strategies --------------------------------------------------------------------
def _bandit_choice(name: str, table, succ, fail, t, remaining, key):
    """The arm strategy ``name`` pulls given per-arm successes/failures ``[k]``."""
    k_tie, k_draw = jax.random.split(key)
    k = succ.shape[0]
    tie = 1e-6 * jax.random.uniform(k_tie, (k,))  # random tie-breaking
    n = succ + fail
    if name == "random":
        return jax.random.randint(k_draw, (), 0, k)
    if name == "ucb1":
        mean = succ / jnp.maximum(n, 1.0)
        bonus = jnp.sqrt(2.0 * jnp.log(jnp.maximum(t, 1.0)) / jnp.maximum(n, 1.0))
        return jnp.argmax(jnp.where(n == 0, 1e6, mean + bonus) + tie)
    if name == "thompson":
        return jnp.argmax(jax.random.beta(k_draw, 1.0 + succ, 1.0 + fail))
    if name == "gittins":
        si, fi = succ.astype(jnp.int32), fail.astype(jnp.int32)
        return jnp.argmax(table[remaining, si, fi] + tie)
    raise AssertionError(name)


def _bandit_step(family: Bandit, name: str, table, task, total: int, carry, inputs):
    succ, fail, state = carry
    t, key = inputs
    k_choice, k_env = jax.random.split(key)
    arm = _bandit_choice(name, table, succ, fail, t.astype(jnp.float32), total - t, k_choice)
    _, state, reward, _, _ = family.step(k_env, state, arm, task)
    hit = jax.nn.one_hot(arm, succ.shape[0])
    return (succ + hit * reward, fail + hit * (1.0 - reward), state), reward


def _bandit_trial(family: Bandit, name: str, table, episodes: int, task, key):
    total = episodes * family.pulls
    k_reset, k_steps = jax.random.split(key)
    _, state = family.reset(k_reset, task)
    zeros = jnp.zeros(family.arms, jnp.float32)
    body = functools.partial(_bandit_step, family, name, table, task, total)
    _, rewards = jax.lax.scan(body, (zeros, zeros, state),
                              (jnp.arange(total), jax.random.split(k_steps, total)))
    rewards = rewards.reshape(episodes, family.pulls)
    return rewards.sum(-1), (rewards != 0).mean(-1)


# ---- tabular-MDP strategies ---------------------------------------------------------------
def _psrl_step(family: TabularMDP, task, q, carry, inputs):
    counts, r_sum, r_n, obs, state = carry
    t, key = inputs
    s = jnp.argmax(obs)
    a = jnp.argmax(q[t, s])
    obs, state, reward, _, _ = family.step(key, state, a, task)
    s2 = jnp.argmax(obs)
    counts = counts.at[s, a, s2].add(1.0)
    return (counts, r_sum.at[s, a].add(reward), r_n.at[s, a].add(1.0), obs, state), reward


def _psrl_episode(family: TabularMDP, name: str, task, carry, key):
    """Take an MDP from the posterior (``psrl``: a sample; ``greedy``, ``myopic``: its
    mean), solve it (``myopic``: one step ahead) and follow that policy for one episode."""
    counts, r_sum, r_n = carry
    k_p, k_r, k_reset, k_steps = jax.random.split(key, 4)
    alpha = family.dirichlet + counts
    prior_prec = 1.0 / max(family.reward_std, 1e-6) ** 2
    noise_prec = 1.0 / max(family.reward_noise, 1e-6) ** 2
    prec = prior_prec + noise_prec * r_n
    mean = (prior_prec * family.reward_mean + noise_prec * r_sum) / prec
    if name == "psrl":
        transitions = jax.random.dirichlet(k_p, alpha)
        rewards = mean + jax.random.normal(k_r, mean.shape) / jnp.sqrt(prec)
    else:
        transitions, rewards = alpha / alpha.sum(-1, keepdims=True), mean
    if name == "myopic":
        q = jnp.broadcast_to(rewards, (family.horizon, *rewards.shape))
    else:
        q = finite_horizon_values(transitions, rewards, family.horizon)
    obs, state = family.reset(k_reset, task)
    body = functools.partial(_psrl_step, family, task, q)
    (counts, r_sum, r_n, _, _), rew = jax.lax.scan(
        body, (counts, r_sum, r_n, obs, state),
        (jnp.arange(family.horizon), jax.random.split(k_steps, family.horizon)))
    return (counts, r_sum, r_n), rew.sum()


def _psrl_trial(family: TabularMDP, episodes: int, name: str, task, key):
    S, A = family.states, family.actions
    init = (jnp.zeros((S, A, S)), jnp.zeros((S, A)), jnp.zeros((S, A)))
    body = functools.partial(_psrl_episode, family, name, task)
    _, returns = jax.lax.scan(body, init, jax.random.split(key, episodes))
    return returns


# ---- random (any family) ------------------------------------------------------------------
def _random_action(space, key):
    if isinstance(space, gym.spaces.Discrete):
        return jax.random.randint(key, (), 0, int(space.n))
    low = jnp.asarray(np.where(np.isfinite(space.low), space.low, -1.0), jnp.float32)
    high = jnp.asarray(np.where(np.isfinite(space.high), space.high, 1.0), jnp.float32)
    return jax.random.uniform(key, space.shape, minval=low, maxval=high)


def _random_step(family: RLFamily, task, carry, key):
    state, alive, t = carry
    k_act, k_env, k_reset = jax.random.split(key, 3)
    _, new_state, reward, done, info = family.step(k_env, state, _random_action(
        family.action_space, k_act), task)
    end = t + 1 == family.horizon
    _, reset_state = family.reset(k_reset, task)
    out = (reward * alive, info.get("success", jnp.array(False)) & alive)
    state = jax.tree.map(lambda r, n: jnp.where(end, r, n), reset_state, new_state)
    return (state, end | (alive & ~done), jnp.where(end, 0, t + 1)), out


def _random_trial(family: RLFamily, episodes: int, task, key):
    k_reset, k_steps = jax.random.split(key)
    _, state = family.reset(k_reset, task)
    total = episodes * family.horizon
    body = functools.partial(_random_step, family, task)
    _, (rew, succ) = jax.lax.scan(body, (state, jnp.array(True), jnp.array(0)),
                                  jax.random.split(k_steps, total))
    rew = rew.reshape(episodes, -1)
    return rew.sum(-1), succ.reshape(episodes, -1).any(-1), (rew != 0).mean(-1)


# ---- the one entry point ------------------------------------------------------------------
def reference_curve(name: str, family: RLFamily, tasks: Any, *, key: jax.Array,
                    episodes: int, family_name: str) -> dict[str, jax.Array]:
    """Play one trial of ``episodes`` episodes of each task with strategy ``name``.

    ``family`` is the registered family ``family_name`` (with its options), ``tasks`` a
    batched task pytree of it (leading axis ``N``). Returns
    ``{"return": [N, episodes]}`` (total reward of each episode of the trial), plus
    ``"success": [N, episodes]`` where ``family.has_success``, and for ``random`` and the
    bandit strategies ``"rewarded": [N, episodes]``, the fraction of an episode's steps
    with a nonzero reward (a step after the episode ended counts as unrewarded).
    """
    if not supports(name, family_name):
        fits = ", ".join(reference_names(family_name)) or "none"
        raise UserError(f"reference strategy {name!r} does not support family "
                        f"{family_name!r} (strategies for {family_name}: {fits})")
    if not isinstance(family, family_entry(family_name).factory):
        raise ValueError(f"{type(family).__name__} is not the family {family_name!r}")
    if episodes < 1:
        raise UserError("episodes must be >= 1")
    n = jax.tree.leaves(tasks)[0].shape[0]
    keys = jax.random.split(key, n)
    out: dict[str, jax.Array] = {}
    # the family is the registered one that supports() has checked
    if name in ("psrl", "greedy", "myopic"):
        fn = functools.partial(_psrl_trial, cast(TabularMDP, family), episodes, name)
        out["return"] = jax.jit(jax.vmap(fn))(tasks, keys)
    elif name == "random" and not isinstance(family, Bandit):
        fn = functools.partial(_random_trial, family, episodes)
        ret, succ, out["rewarded"] = jax.jit(jax.vmap(fn))(tasks, keys)
        out["return"] = ret
        if family.has_success:
            out["success"] = succ.astype(jnp.float32)
    else:
        bandit = cast(Bandit, family)
        table = (jnp.asarray(gittins_table_finite(episodes * bandit.pulls))
                 if name == "gittins" else jnp.zeros((1, 1, 1)))
        fn = functools.partial(_bandit_trial, bandit, name)
        out["return"], out["rewarded"] = jax.jit(jax.vmap(fn, in_axes=(None, None, 0, 0)),
                                                 static_argnums=1)(table, episodes, tasks, keys)
    return out

