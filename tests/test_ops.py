"""The shared maths against plain Python-loop references, under jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from adaptrl import policies
from adaptrl.ops import baselines, pg, trpo
from adaptrl.ops.returns import discounted_returns, gae
from adaptrl.ops.stats import iqm, summarize


def gae_reference(rewards, values, dones, discount, lam, last_value=0.0):
    adv, running = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        next_value = last_value if t == len(rewards) - 1 else values[t + 1]
        if dones[t]:
            next_value, running = 0.0, 0.0
        delta = rewards[t] + discount * next_value - values[t]
        running = delta + discount * lam * running
        adv[t] = running
    return adv


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_matches_python_loop(lam):
    rng = np.random.default_rng(0)
    r = rng.normal(size=(4, 12)).astype(np.float32)
    v = rng.normal(size=(4, 12)).astype(np.float32)
    d = rng.random((4, 12)) < 0.2
    got = jax.jit(jax.vmap(lambda a, b, c: gae(a, b, c, discount=0.9, lam=lam, last_value=0.5)))(
        r, v, d)
    for i in range(4):
        want = gae_reference(r[i], v[i], d[i], 0.9, lam, last_value=0.5)
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)


def test_discounted_returns():
    r = jnp.array([1.0, 2.0, 3.0, 4.0])
    d = jnp.array([False, True, False, False])
    np.testing.assert_allclose(discounted_returns(r, d, discount=0.5), [2.0, 2.0, 5.0, 4.0])


def test_linear_baseline_matches_numpy_lstsq():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(200, 3)).astype(np.float32)
    t = np.tile(np.arange(20), 10)
    ret = rng.normal(size=200).astype(np.float32)
    mask = (rng.random(200) < 0.9).astype(np.float32)
    w = jax.jit(baselines.fit_linear)(obs, t, ret, mask)
    f = np.asarray(baselines.features(jnp.asarray(obs), jnp.asarray(t)))[mask > 0]
    f = f.astype(np.float64)
    # ridge regression in float64: (FᵀF + 1e-5 I) w = Fᵀ R
    want = np.linalg.solve(f.T @ f + 1e-5 * np.eye(f.shape[1]), f.T @ ret[mask > 0])
    # the time features are nearly collinear, so compare fitted values, not weights
    got = np.asarray(baselines.predict_linear(w, jnp.asarray(obs), jnp.asarray(t)))[mask > 0]
    np.testing.assert_allclose(got, f @ want, atol=2e-3)


def test_losses_against_loops():
    rng = np.random.default_rng(2)
    logp, old, adv = (rng.normal(size=30).astype(np.float32) * 0.3 for _ in range(3))
    mask = (rng.random(30) < 0.8).astype(np.float32)
    m = mask > 0
    assert float(pg.vpg_loss(logp, adv, mask)) == pytest.approx(-np.mean(logp[m] * adv[m]), 1e-5)
    ratio = np.exp(logp - old)
    assert float(pg.surrogate_loss(logp, old, adv, mask)) == pytest.approx(
        -np.mean(ratio[m] * adv[m]), 1e-5)
    clipped = [min(r * a, min(max(r, 0.8), 1.2) * a) for r, a in zip(ratio[m], adv[m], strict=True)]
    assert float(pg.ppo_clip_loss(logp, old, adv, mask, clip=0.2)) == pytest.approx(
        -np.mean(clipped), 1e-5)
    norm = pg.normalize(jnp.asarray(adv), jnp.asarray(mask))
    assert float(pg.masked_mean(norm, mask)) == pytest.approx(0.0, abs=1e-5)


def test_distributions():
    g = policies.Gaussian(jnp.array([[0.5, -1.0]]), jnp.array([0.1, -0.3]))
    a = jnp.array([[0.2, 0.0]])
    want = stats.norm(loc=[0.5, -1.0], scale=np.exp([0.1, -0.3])).logpdf([0.2, 0.0]).sum()
    assert float(policies.log_prob(g, a)[0]) == pytest.approx(want, 1e-5)
    g2 = policies.Gaussian(jnp.array([[0.0, 0.0]]), jnp.array([0.0, 0.0]))
    # KL of univariate normals, closed form, summed over dimensions
    s1, s2 = np.exp([0.1, -0.3]), np.ones(2)
    want_kl = np.sum(np.log(s2 / s1) + (s1**2 + np.array([0.5, -1.0]) ** 2) / (2 * s2**2) - 0.5)
    assert float(policies.kl(g, g2)[0]) == pytest.approx(want_kl, 1e-5)
    c = policies.Categorical(jnp.log(jnp.array([[0.2, 0.3, 0.5]])))
    assert float(policies.log_prob(c, jnp.array([2]))[0]) == pytest.approx(np.log(0.5), 1e-5)
    assert float(policies.entropy(c)[0]) == pytest.approx(stats.entropy([0.2, 0.3, 0.5]), 1e-5)
    c2 = policies.Categorical(jnp.zeros((1, 3)))
    assert float(policies.kl(c, c2)[0]) == pytest.approx(
        stats.entropy([0.2, 0.3, 0.5], [1 / 3] * 3), 1e-5)


def test_natural_step_solves_and_respects_kl():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    fisher = jnp.asarray(a @ a.T + 0.5 * np.eye(6), jnp.float32)
    grad = jnp.asarray(rng.normal(size=6), jnp.float32)
    step, expected = jax.jit(lambda g: trpo.natural_step(
        g, lambda v: fisher @ v, max_kl=0.01, iters=20, damping=0.0))(grad)
    direction = np.linalg.solve(np.asarray(fisher), np.asarray(grad))
    cos = np.dot(step, direction) / np.linalg.norm(step) / np.linalg.norm(direction)
    assert cos == pytest.approx(1.0, abs=1e-4)
    assert 0.5 * float(step @ fisher @ step) == pytest.approx(0.01, rel=1e-3)
    assert float(expected) > 0


def test_line_search_backtracks_and_rejects():
    # quadratic loss; a step that overshoots must be halved until it improves
    def evaluate(x):
        return jnp.sum((x - 1.0) ** 2), jnp.sum(x**2) * 0.0

    x0 = jnp.zeros(2)
    new, ok, loss, _ = trpo.backtracking_line_search(evaluate, x0, jnp.full(2, 3.0), max_kl=1.0)
    assert bool(ok) and float(loss) < 2.0
    np.testing.assert_allclose(new, [1.5, 1.5])
    # a KL violation at every ratio: parameters stay
    new, ok, _, _ = trpo.backtracking_line_search(
        lambda x: (jnp.sum((x - 1.0) ** 2), jnp.array(5.0)), x0, jnp.ones(2), max_kl=1.0)
    assert not bool(ok)
    np.testing.assert_array_equal(new, x0)


def test_summary_statistics():
    rng = np.random.default_rng(4)
    seeds = [rng.normal(loc=1.0, size=50) for _ in range(3)]
    s = summarize(seeds)
    pooled = np.concatenate(seeds)
    assert s["mean"] == pytest.approx(pooled.mean())
    assert s["iqm"] == pytest.approx(np.mean(np.sort(pooled)[37:113]), rel=1e-9)
    assert s["iqm"] == pytest.approx(float(iqm(pooled)))
    assert s["ci_low"] < s["iqm"] < s["ci_high"]
    assert s["ci_high"] - s["ci_low"] < 0.6
    assert summarize(seeds) == s  # seeded bootstrap: same numbers
    flat = summarize([np.ones(5)])
    assert flat["ci_low"] == flat["ci_high"] == 1.0
