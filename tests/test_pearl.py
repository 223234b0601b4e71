"""PEARL: the product-of-Gaussians posterior, the KL bottleneck and SAC's losses against
closed forms and hand-computed numbers, the per-task replay buffers against a plain-Python
ring, determinism, exact resume through a checkpoint, a host family through the sampler,
and a seconds-long learning-regression test (context beats the prior on point-nav)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from adaptrl import policies, runs
from adaptrl.algos import algorithm_entry
from adaptrl.algos.pearl import PEARL, PEARLConfig
from adaptrl.errors import UserError
from adaptrl.ops import sac
from adaptrl.sampling import replay
from adaptrl.sampling.rollout import Trajectory
from adaptrl.tasks.point_nav import PointNav

TINY = PEARLConfig(hidden=(16,), encoder_hidden=(16,), latent_dim=2, tasks_per_iteration=2,
                   initial_episodes=2, prior_episodes=1, posterior_episodes=1, train_steps=3,
                   meta_batch=2, batch_size=8, context_batch=8, buffer_size=40)
TINY_FAMILY = PointNav(horizon=5, train_pool=4)


# ---- maths ------------------------------------------------------------------------------
def test_product_of_gaussians_is_the_normalised_product_of_densities():
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=(4, 3)), rng.uniform(0.2, 2.0, size=(4, 3))
    mask = np.array([1.0, 0.0, 1.0, 1.0])
    got_mean, got_var = sac.product_of_gaussians(jnp.asarray(mean), jnp.asarray(var),
                                                 jnp.asarray(mask))
    x = np.linspace(-8, 8, 200_001)
    for d in range(3):  # each dimension: the product of the kept densities, on a grid
        log_p = sum(stats.norm.logpdf(x, mean[n, d], math.sqrt(var[n, d]))
                    for n in range(4) if mask[n])
        p = np.exp(log_p - log_p.max())
        p /= np.trapezoid(p, x)
        m = np.trapezoid(x * p, x)
        np.testing.assert_allclose(got_mean[d], m, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got_var[d], np.trapezoid((x - m) ** 2 * p, x), rtol=1e-4)
    # permutation invariant, and a masked factor counts for nothing
    perm = np.array([3, 0, 2, 1])
    again = sac.product_of_gaussians(jnp.asarray(mean[perm]), jnp.asarray(var[perm]),
                                     jnp.asarray(mask[perm]))
    np.testing.assert_allclose(again[0], got_mean, rtol=1e-6)
    kept = sac.product_of_gaussians(jnp.asarray(mean[mask > 0]), jnp.asarray(var[mask > 0]))
    np.testing.assert_allclose(kept[1], got_var, rtol=1e-6)


def test_kl_bottleneck_against_integration():
    mean, var = np.array([0.3, -1.2]), np.array([0.5, 2.0])
    got = float(sac.kl_to_standard_normal(jnp.asarray(mean), jnp.asarray(var)))
    want = 0.0
    for m, v in zip(mean, var, strict=True):
        q, p = stats.norm(m, math.sqrt(v)), stats.norm(0, 1)
        want += integrate.quad(lambda x, q=q, p=p: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)),
                               -15, 15)[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(sac.kl_to_standard_normal(jnp.zeros(3), jnp.ones(3))) == 0.0


def test_sac_losses_on_a_hand_computed_example():
    # target = scale r + γ (1 - terminal) V'(s'): 2·1 + 0.5·2 = 3, and 2·(-1) + 0 = -2
    target = sac.q_target(jnp.array([1.0, -1.0]), jnp.array([0.0, 1.0]), jnp.array([2.0, 5.0]),
                          discount=0.5, reward_scale=2.0)
    np.testing.assert_allclose(target, [3.0, -2.0])
    # Q: mean((1-3)², (0+2)²) + mean((2-3)², (-1+2)²) = 4 + 1
    assert float(sac.q_loss(jnp.array([1.0, 0.0]), jnp.array([2.0, -1.0]), target)) == 5.0
    # V onto min Q - log π: ((1 - (3 - 1))² + (0 - (1 + 1))²) / 2 = (1 + 4) / 2
    assert float(sac.v_loss(jnp.array([1.0, 0.0]), jnp.array([3.0, 1.0]),
                            jnp.array([1.0, -1.0]))) == 2.5
    # policy: mean(log π - min Q) + 0.1 mean(μ²) + 0.2 mean(log σ²)
    #   = mean(1 - 3, -1 - 1) + 0.1·2.5 + 0.2·1
    got = sac.policy_loss(jnp.array([1.0, -1.0]), jnp.array([3.0, 1.0]),
                          jnp.array([[1.0, 2.0]]), jnp.array([[1.0, -1.0]]),
                          mean_reg=0.1, std_reg=0.2)
    np.testing.assert_allclose(float(got), -2.0 + 0.25 + 0.2, rtol=1e-6)
    # Polyak: 0.9·1 + 0.1·3
    np.testing.assert_allclose(sac.soft_update({"w": jnp.ones(2)}, {"w": 3 * jnp.ones(2)},
                                               0.1)["w"], [1.2, 1.2], rtol=1e-6)
    # the tanh-Gaussian density: change of variables, term by term
    u, mu, log_std = np.array([0.3, -2.0]), np.array([0.1, -1.0]), np.array([-0.5, 0.2])
    want = sum(stats.norm.logpdf(u[i], mu[i], math.exp(log_std[i]))
               - math.log(1 - math.tanh(u[i]) ** 2) for i in range(2))
    got = sac.tanh_gaussian_log_prob(jnp.asarray(u), jnp.asarray(mu), jnp.asarray(log_std))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    dist = policies.TanhGaussian(jnp.asarray(mu), jnp.asarray(log_std))
    np.testing.assert_allclose(float(policies.log_prob(dist, jnp.tanh(jnp.asarray(u)))), want,
                               rtol=1e-4)
    a = policies.sample(dist, key=jax.random.PRNGKey(0))
    assert np.all(np.abs(a) < 1) and np.allclose(policies.mode(dist), np.tanh(mu))


# ---- replay buffers -----------------------------------------------------------------------
def test_replay_buffer_is_a_ring_per_task():
    buf = replay.empty(3, 4, 1, 1)
    ref: list[list[float]] = [[], [], []]

    def push(tasks, values, keep):
        nonlocal buf
        v = jnp.asarray(values, jnp.float32)
        data = replay.Transitions(v[..., None], v[..., None], v, v[..., None], 0 * v)
        buf = replay.add(buf, jnp.asarray(tasks), data, jnp.asarray(keep))
        for t, row, k in zip(tasks, values, keep, strict=True):
            ref[t] += [x for x, kk in zip(row, k, strict=True) if kk]
            ref[t] = ref[t][-4:] if len(ref[t]) > 4 else ref[t]

    push([0, 2], [[1, 2, 3], [7, 8, 9]], [[True, False, True], [True, True, True]])
    push([2], [[10, 11, 12]], [[False, True, True]])
    np.testing.assert_array_equal(buf.size, [2, 0, 4])
    assert sorted(np.asarray(buf.data.reward[0, :2]).tolist()) == [1, 3]
    assert sorted(np.asarray(buf.data.reward[2]).tolist()) == sorted(ref[2]) == [8, 9, 11, 12]
    draws = replay.sample(buf, jnp.int32(2), 200, key=jax.random.PRNGKey(0)).reward
    assert set(np.asarray(draws).tolist()) == {8, 9, 11, 12}
    buf = replay.clear(buf, jnp.array([2]))
    assert int(buf.size[2]) == 0 and int(buf.size[0]) == 2


def test_episode_transitions_skip_the_unknown_last_next_observation():
    obs = jnp.arange(8.0).reshape(2, 4, 1)  # 2 episodes of 4 steps; the second terminates
    done = jnp.array([[0, 0, 0, 0], [0, 1, 1, 1]], bool)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], jnp.float32)
    z = jnp.zeros((2, 4))
    traj = Trajectory(obs, obs, z + 1, done, mask, z, z.astype(bool), z.astype(jnp.int32))
    tr, keep = replay.from_episodes(traj)
    np.testing.assert_array_equal(keep, [1, 1, 1, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(tr.next_obs[:3, 0], [1, 2, 3])
    assert float(tr.terminal[5]) == 1.0


# ---- the algorithm ------------------------------------------------------------------------
def test_registered_and_refuses_what_it_cannot_learn():
    assert algorithm_entry("pearl").cls is PEARL and PEARL.curve_unit == "episodes"
    assert PEARL.paper_defaults["cheetah-vel"]["tasks"]["train_pool"] == 100
    with pytest.raises(UserError, match="train_pool"):
        PEARL(TINY, PointNav(horizon=5))
    from adaptrl.tasks.bandit import Bandit

    with pytest.raises(UserError, match="continuous"):
        PEARL(TINY, Bandit(train_pool=3))
    with pytest.raises(UserError, match="buffer_size"):
        PEARL(PEARLConfig(buffer_size=5, initial_episodes=2), TINY_FAMILY)
    with pytest.raises(ValueError):
        PEARLConfig(meta_batch=0)


#: point-nav's setting (PAPER["point-nav"]), shortened: one compilation (of the update, and of
#: the adaptation curve on TEST_TASKS held-out goals) serves the determinism, resume and
#: learning tests
FAMILY = PointNav(horizon=20, train_pool=40)
CONFIG = PEARLConfig(hidden=(32, 32), encoder_hidden=(32,), latent_dim=2, initial_episodes=2,
                     prior_episodes=1, posterior_episodes=1, train_steps=50, meta_batch=8,
                     batch_size=64, context_batch=32, buffer_size=400, lr=3e-3,
                     reward_scale=100.0)
TEST_TASKS = 100


@pytest.fixture(scope="module")
def point_nav():
    algo = PEARL(CONFIG, FAMILY)
    curve = jax.jit(lambda s, tasks, key: algo.adaptation_curve(s, tasks, key=key, steps=1))
    return algo, jax.jit(algo.update), curve


def _run(update, state, n):
    out = []
    for _ in range(n):
        state, m = update(state)
        out.append({k: float(v) for k, v in m.items()})
    return state, out


#: the tests of the shared compilation run in one pytest-xdist worker, which compiles once
shared_compilation = pytest.mark.xdist_group("pearl-point-nav")


@shared_compilation
def test_same_seed_same_numbers_and_exact_resume(point_nav, tmp_path):
    algo, update, curve = point_nav
    start = algo.init(key=jax.random.PRNGKey(0))
    straight, m4 = _run(update, start, 4)
    _, m4b = _run(update, algo.init(key=jax.random.PRNGKey(0)), 4)
    assert m4 == m4b
    # 40 tasks x 2 initial episodes, then 5 tasks x (1 prior + 1 posterior), 20 steps each
    assert m4[0]["env_steps"] == (80 + 10) * 20 and m4[1]["env_steps"] == (80 + 20) * 20
    # 2 iterations, a checkpoint, a fresh process's template, 2 more == 4 straight
    config = runs.resolve("pearl", "point-nav")
    assert config.algo_options == CONFIG and config.task_options == FAMILY
    half, m2 = _run(update, start, 2)
    runs.save_checkpoint(tmp_path, half, keep=2, config=config)
    loaded = runs.load_checkpoint(tmp_path, algo.init(key=jax.random.PRNGKey(9)))
    assert int(loaded["rl"].size.sum()) == int(half["rl"].size.sum()) > 0
    resumed, m2b = _run(update, loaded, 2)
    assert m2 + m2b == m4
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(a, b)
    tasks, key = FAMILY.tasks("test", TEST_TASKS), jax.random.PRNGKey(1)
    c1, c2 = curve(resumed, tasks, key), curve(straight, tasks, key)
    assert c1["return"].shape == (TEST_TASKS, 2) and c1["success"].shape == (TEST_TASKS, 2)
    np.testing.assert_array_equal(c1["return"], c2["return"])


@shared_compilation
def test_context_beats_the_prior_on_point_nav(point_nav):
    """After 30 short iterations on point-nav (40 training goals in [-0.5, 0.5]², 20-step
    episodes), acting with z from the posterior given one episode scores clearly above
    acting with z from the prior, on 100 held-out goals (measured: -8.9 and -7.3)."""
    algo, update, curve = point_nav
    state, _ = _run(update, algo.init(key=jax.random.PRNGKey(0)), 30)
    ret = curve(state, FAMILY.tasks("test", TEST_TASKS), jax.random.PRNGKey(2))["return"]
    prior, posterior = float(ret[:, 0].mean()), float(ret[:, 1].mean())
    assert posterior > prior + 1.0, (prior, posterior)


def test_one_small_iteration_on_a_host_family():
    config = runs.resolve("pearl", "host_envs:PointGoals", sets=[
        "sampler.workers=2", "tasks.horizon=4", "tasks.train_pool=3", "algo.hidden=[8]",
        "algo.encoder_hidden=[8]", "algo.train_steps=2", "algo.meta_batch=2",
        "algo.batch_size=4", "algo.context_batch=4", "algo.tasks_per_iteration=2",
        "algo.initial_episodes=1", "algo.buffer_size=16"])
    algo = config.algorithm()
    assert not algo.jittable
    try:
        state, metrics = algo.update(algo.init(key=jax.random.PRNGKey(0)))
        assert int(state["iteration"]) == 1 and all(np.isfinite(list(metrics.values())))
        # 3 tasks x 1 initial episode, then 2 tasks x (2 prior + 2 posterior), 4 steps each
        assert metrics["env_steps"] == (3 + 2 * 4) * 4
        # 3 transitions kept per episode (the last step's next observation is unknown); the
        # collected tasks' encoder buffers were cleared and hold their 2 prior episodes
        assert sorted(np.asarray(state["rl"].size).tolist()) == [3, 15, 15]
        assert sorted(np.asarray(state["enc"].size).tolist()) == [3, 6, 6]
        curve = algo.adaptation_curve(state, config.task_options.tasks("test", 2),
                                      key=jax.random.PRNGKey(1), steps=1)
        assert curve["return"].shape == (2, 2)
    finally:
        algo.sampler.close()
