"""The tabular-MDP family: dynamics under jit/vmap vs a Python loop; the exact optimum."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from adaptrl.tasks import make_family
from adaptrl.tasks.tabular_mdp import TabularMDP


def _python_episode(fam, task, key, actions):
    """Plain-loop reference using the same key discipline as the family's step."""
    P, R = np.asarray(task["transitions"]), np.asarray(task["rewards"])
    s, out = 0, []
    for a, k in zip(actions, jax.random.split(key, len(actions)), strict=True):
        k_next, k_reward = jax.random.split(k)
        r = R[s, a] + fam.reward_noise * float(jax.random.normal(k_reward, ()))
        s2 = int(jax.random.choice(k_next, fam.states, p=jnp.asarray(P[s, a])))
        out.append((s, a, r, s2))
        s = s2
    return out


def _jax_episode(fam, task, key, actions):
    def body(state, inp):
        a, k = inp
        obs, nxt, r, _, _ = fam.step(k, state, a, task)
        return nxt, (state, r, jnp.argmax(obs))

    _, state0 = fam.reset(key, task)
    _, (s, r, s2) = jax.lax.scan(body, state0, (actions, jax.random.split(key, actions.shape[0])))
    return s, r, s2


def test_registered_and_sampled_shapes():
    fam = make_family("tabular-mdp")
    assert (fam.states, fam.actions, fam.horizon) == (10, 5, 10)
    tasks = fam.tasks("test", 7)
    assert tasks["transitions"].shape == (7, 10, 5, 10)
    np.testing.assert_allclose(tasks["transitions"].sum(-1), 1.0, rtol=1e-5)
    assert tasks["rewards"].shape == (7, 10, 5)


def test_dynamics_jit_vmap_match_python_loop():
    fam = TabularMDP()
    tasks = fam.tasks("test", 2)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    actions = jax.random.randint(jax.random.PRNGKey(4), (2, fam.horizon), 0, fam.actions)
    s, r, s2 = jax.jit(jax.vmap(lambda t, k, a: _jax_episode(fam, t, k, a)))(tasks, keys, actions)
    for i in range(2):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        ref = _python_episode(fam, task, keys[i], np.asarray(actions[i]))
        np.testing.assert_array_equal(s[i], [x[0] for x in ref])
        np.testing.assert_array_equal(s2[i], [x[3] for x in ref])
        np.testing.assert_allclose(r[i], [x[2] for x in ref], rtol=1e-5, atol=1e-5)


def test_empirical_transition_and_reward_statistics():
    fam = TabularMDP()
    task = fam.sample_one(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 20000)
    _, state = fam.reset(keys[0], task)
    obs, _, r, _, _ = jax.vmap(lambda k: fam.step(k, state, jnp.int32(2), task))(keys)
    np.testing.assert_allclose(obs.mean(0), task["transitions"][0, 2], atol=0.015)
    np.testing.assert_allclose(r.mean(), task["rewards"][0, 2], atol=0.03)
    np.testing.assert_allclose(r.std(), 1.0, atol=0.03)


def _policy_value(P, R, policy, horizon):
    """Exact expected return of a time-dependent deterministic policy [H, S] from state 0."""
    dist = np.zeros(P.shape[0])
    dist[0] = 1.0
    total = 0.0
    for t in range(horizon):
        a = policy[t]
        total += sum(dist[s] * R[s, a[s]] for s in range(P.shape[0]))
        dist = sum(dist[s] * P[s, a[s]] for s in range(P.shape[0]))
    return total


def test_optimum_equals_brute_force_over_all_policies():
    fam = TabularMDP(states=2, actions=2, horizon=3)
    for i in range(3):
        task = fam.sample_one(jax.random.PRNGKey(i))
        P, R = np.asarray(task["transitions"], np.float64), np.asarray(task["rewards"], np.float64)
        rules = list(itertools.product(range(2), repeat=2))  # a decision rule: state -> action
        best = max(_policy_value(P, R, pol, 3) for pol in itertools.product(rules, repeat=3))
        np.testing.assert_allclose(fam.optimum(task), best, rtol=1e-5)


def test_optimum_matches_numpy_value_iteration_and_bounds():
    fam = TabularMDP()
    tasks = fam.tasks("test", 5)
    opt = jax.jit(jax.vmap(fam.optimum))(tasks)
    for i in range(5):
        P = np.asarray(tasks["transitions"][i], np.float64)
        R = np.asarray(tasks["rewards"][i], np.float64)
        v = np.zeros(fam.states)
        for _ in range(fam.horizon):
            v = (R + P @ v).max(-1)
        np.testing.assert_allclose(opt[i], v[0], rtol=1e-5)
        assert opt[i] <= fam.horizon * R.max() + 1e-4
