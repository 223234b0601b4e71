"""Checks that run over every registered family, plus per-family dynamics against plain
Python references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptrl.errors import UserError
from adaptrl.tasks import REGISTRY, make_family
from adaptrl.tasks.base import RLFamily

RL_FAMILIES = [n for n in sorted(REGISTRY) if issubclass(REGISTRY[n].factory, RLFamily)]
#: every family but the Meta-World ones after ml1-reach: each builds its benchmark (seconds
#: to minutes); tests/test_metaworld.py checks them
FAMILIES = [n for n in sorted(REGISTRY) if not n.startswith("ml") or n == "ml1-reach"]


@pytest.mark.parametrize("name", FAMILIES)
def test_sampling_and_splits(name):
    fam = make_family(name)
    test = fam.tasks("test", 5)
    again = fam.tasks("test", 8)
    # the first tasks of a longer draw are the same tasks: held-out sets are stable
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b[:5]), test, again)
    train = fam.tasks("train", 5, key=jax.random.PRNGKey(0))
    leaves_train, leaves_test = jax.tree.leaves(train), jax.tree.leaves(test)
    assert all(x.shape[0] == 5 for x in leaves_train)
    # meta-train draws never coincide with the held-out tasks (unless there are finitely many)
    assert fam.finite_tasks or not any(
        np.array_equal(a, b) for a, b in zip(leaves_train, leaves_test, strict=True))
    # same key, same tasks; different key, different tasks
    jax.tree.map(np.testing.assert_array_equal, train,
                 fam.tasks("train", 5, key=jax.random.PRNGKey(0)))
    other = fam.tasks("train", 5, key=jax.random.PRNGKey(1))
    assert not np.array_equal(jax.tree.leaves(train)[0], jax.tree.leaves(other)[0])


@pytest.mark.parametrize("name", RL_FAMILIES)
def test_env_jit_vmap_shapes_determinism(name):
    fam = make_family(name)
    tasks = fam.tasks("test", 3)
    obs_dim = fam.observation_space.shape

    def run(task, key):
        obs, state = fam.reset(key, task)
        if hasattr(fam.action_space, "n"):
            a = jnp.array(0, jnp.int32)
        else:
            a = jnp.zeros(fam.action_space.shape, jnp.float32)
        obs2, state2, r, d, info = fam.step(key, state, a, task)
        return obs, obs2, r, d

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    out = jax.jit(jax.vmap(run))(tasks, keys)
    out_again = jax.jit(jax.vmap(run))(tasks, keys)
    obs, obs2, r, d = out
    assert obs.shape == (3, *obs_dim) and obs2.shape == (3, *obs_dim)
    assert obs.dtype == jnp.float32 and r.dtype == jnp.float32 and d.dtype == jnp.bool_
    assert r.shape == (3,) and d.shape == (3,)
    jax.tree.map(np.testing.assert_array_equal, out, out_again)
    # unbatched matches batched
    single = jax.jit(run)(jax.tree.map(lambda x: x[1], tasks), keys[1])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b, rtol=1e-6), out, single)


def point_nav_reference(goal, actions, max_action=0.1, sparse=False, radius=0.1):
    """Plain Python loop of MAML's point navigation."""
    x, y = 0.0, 0.0
    rewards = []
    for ax, ay in actions:  # normalised actions in [-1, 1], scaled by max_action
        x += min(max(ax, -1.0), 1.0) * max_action
        y += min(max(ay, -1.0), 1.0) * max_action
        dist = math.hypot(x - goal[0], y - goal[1])
        rewards.append((1.0 if dist <= radius else 0.0) if sparse else -dist)
    return rewards


@pytest.mark.parametrize("sparse", [False, True])
def test_point_nav_dynamics_against_python(sparse):
    fam = make_family("point-nav-sparse" if sparse else "point-nav", {"horizon": 20})
    task = {"goal": jnp.array([0.31, -0.22])}
    actions = np.random.default_rng(0).uniform(-3.0, 3.0, (20, 2)).astype(np.float32)

    def rollout(task, actions):
        def body(state, a):
            _, state, r, _, _ = fam.step(jax.random.PRNGKey(0), state, a, task)
            return state, r

        _, state = fam.reset(jax.random.PRNGKey(0), task)
        return jax.lax.scan(body, state, actions)[1]

    got = jax.jit(rollout)(task, actions)
    want = point_nav_reference([0.31, -0.22], actions.tolist(), sparse=sparse)
    np.testing.assert_allclose(got, want, atol=1e-5)
    batched = jax.vmap(rollout, in_axes=(None, 0))(task, np.stack([actions, actions]))
    np.testing.assert_allclose(batched[1], want, atol=1e-5)


def test_point_nav_optimum_is_exact():
    fam = make_family("point-nav")
    rng = np.random.default_rng(0)
    for goal in rng.uniform(-0.5, 0.5, (20, 2)):
        opt = float(fam.optimum({"goal": jnp.asarray(goal, jnp.float32)}))
        # the greedy per-axis path attains it
        greedy, pos = [], np.zeros(2)
        for _ in range(fam.horizon):
            move = np.clip(goal - pos, -0.1, 0.1)
            greedy.append(move / 0.1)
            pos = pos + move
        assert sum(point_nav_reference(goal, greedy)) == pytest.approx(opt, abs=1e-4)
        # the straight line at full speed is worse whenever the goal is off the diagonal
        d = np.linalg.norm(goal)
        direction = goal / d
        scale = 0.1 / np.abs(direction).max()
        straight = [direction * min(scale, max(d - scale * t, 0.0)) / 0.1
                    for t in range(fam.horizon)]
        assert sum(point_nav_reference(goal, straight)) <= opt + 1e-6
        # no random feasible path beats it
        for _ in range(20):
            acts = rng.uniform(-1.0, 1.0, (fam.horizon, 2))
            assert sum(point_nav_reference(goal, acts)) <= opt + 1e-6


def test_bandit_rewards_match_means():
    fam = make_family("bandit", {"arms": 3, "pulls": 10})
    task = {"means": jnp.array([0.1, 0.5, 0.9])}
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    _, state = fam.reset(keys[0], task)
    for arm, p in enumerate([0.1, 0.5, 0.9]):
        r = jax.vmap(lambda k, a=arm: fam.step(k, state, a, task)[2])(keys)
        assert float(r.mean()) == pytest.approx(p, abs=0.015)
    assert float(fam.optimum(task)) == pytest.approx(9.0)


def test_sinusoid_data_matches_formula():
    fam = make_family("sinusoid")
    task = {"amplitude": jnp.array(2.0), "phase": jnp.array(0.5)}
    x, y = fam.data(jax.random.PRNGKey(0), task, 50)
    assert x.shape == (50, 1) and y.shape == (50, 1)
    assert float(x.min()) >= -5 and float(x.max()) <= 5
    for xi, yi in zip(np.asarray(x)[:, 0], np.asarray(y)[:, 0], strict=True):
        assert yi == pytest.approx(2.0 * math.sin(xi - 0.5), abs=1e-5)
    tasks = fam.tasks("test", 1000)
    assert 0.1 <= float(tasks["amplitude"].min()) and float(tasks["amplitude"].max()) <= 5.0
    assert 0 <= float(tasks["phase"].min()) and float(tasks["phase"].max()) <= math.pi


def test_family_options_are_validated():
    with pytest.raises(UserError, match="arms"):
        make_family("bandit", {"arms": 1})
    with pytest.raises(UserError, match="unknown config key tasks.colour"):
        make_family("bandit", {"colour": 1})
    with pytest.raises(UserError, match="unknown task family"):
        make_family("no-such-family")
