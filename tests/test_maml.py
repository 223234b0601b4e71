"""MAML: the Fisher products, determinism, retracing, and learning regressions."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from adaptrl import runs
from adaptrl.algos.maml import MAML, inner_step
from adaptrl.evaluation.harness import score_tasks

TINY = ["algo.meta_batch_size=3", "algo.episodes_per_task=4", "tasks.horizon=6",
        "algo.hidden=[16]", "algo.eval_episodes=4"]


def build(algo="maml-trpo", tasks="point-nav", sets=()):
    config = runs.resolve(algo, tasks, sets=[*TINY, *sets] if tasks.startswith("point") else sets)
    return config.algorithm()


def test_inner_step_is_sgd_and_first_order_drops_second_order_terms():
    params = {"w": jnp.array(2.0)}

    def loss(p, x):
        return (p["w"] * x) ** 2

    new = inner_step(loss, params, 3.0, lr=0.1, first_order=False)
    assert float(new["w"]) == pytest.approx(2.0 - 0.1 * 2 * 2.0 * 9.0)
    # d/dw of w - α·18w is 1 - 18α (second order) against 1 (first order)
    d2 = jax.grad(lambda w: inner_step(loss, {"w": w}, 3.0, lr=0.1, first_order=False)["w"])(2.0)
    d1 = jax.grad(lambda w: inner_step(loss, {"w": w}, 3.0, lr=0.1, first_order=True)["w"])(2.0)
    assert float(d2) == pytest.approx(1 - 1.8) and float(d1) == pytest.approx(1.0)


@pytest.mark.parametrize("first_order", [False, True])
def test_gauss_newton_fisher_equals_kl_hessian_through_adaptation(first_order):
    alg = build(sets=[f"algo.first_order={str(first_order).lower()}", "algo.fisher_tasks=3"])
    state = alg.init(key=jax.random.PRNGKey(0))
    tasks = alg.family.tasks("train", 3, key=jax.random.PRNGKey(1))
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    trajs, batches, adapted = alg._collect(state, tasks, keys, steps=1, episodes=4)
    inner, post = batches[:-1], batches[-1]
    old = jax.vmap(alg.policy.apply)(adapted, post.obs)
    flat, unravel = ravel_pytree(state["params"])

    def kl(x):
        return alg._losses(unravel(x), inner, post, old)[1]

    v = jax.random.normal(jax.random.PRNGKey(3), flat.shape)
    direct = jax.jvp(jax.grad(kl), (flat,), (v,))[1]
    fast = alg.fisher_vp(state["params"], inner, post, old)(v)
    np.testing.assert_allclose(fast, direct, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo", "maml-vpg"])
def test_same_seed_same_metrics_and_no_retracing(algo):
    alg = build(algo, sets=["algo.baseline=learned"] if algo == "maml-vpg" else [])
    traces = []

    def update(state):
        traces.append(1)
        return alg.update(state)

    step = jax.jit(update)
    metrics = []
    for _ in range(2):
        state = alg.init(key=jax.random.PRNGKey(7))
        run = []
        for _ in range(3):
            state, m = step(state)
            run.append({k: float(v) for k, v in m.items()})
        metrics.append(run)
    assert metrics[0] == metrics[1]
    assert len(traces) == 1
    assert all(np.isfinite(v) for row in metrics[0] for v in row.values())
    assert all(row["grad_norm"] > 0 for row in metrics[0])  # the meta-gradient's norm


def test_maml_point_nav_adaptation_helps_and_later_steps_do_not_collapse():
    """A tiny MAML-TRPO run: one adaptation step must clearly improve held-out return, and
    with the decaying step size further steps improve on it; plain MAML (decay 1) overshoots
    at the second step, the collapse the decay removes."""
    config = runs.resolve("maml-trpo", "point-nav", sets=[
        "algo.meta_batch_size=10", "algo.episodes_per_task=10", "tasks.horizon=20",
        "algo.hidden=[32, 32]", "algo.eval_episodes=10"])
    alg = config.algorithm()
    state = alg.init(key=jax.random.PRNGKey(0))
    step = jax.jit(alg.update)
    for _ in range(25):
        state, _ = step(state)

    def mean_curve(a):
        fn = jax.jit(lambda t, *, key: a.adaptation_curve(state, t, key=key, steps=3))
        return score_tasks(fn, a.family, "test", 20, key=jax.random.PRNGKey(1))["return"].mean(0)

    before, after1, after2, after3 = mean_curve(alg)
    assert after1 > before + 0.3 * abs(before), (before, after1)
    assert after2 > after1 and after3 > after1, (after1, after2, after3)
    plain = MAML(dataclasses.replace(alg.config, inner_lr_decay=1.0), alg.family)
    _, plain1, plain2, _ = mean_curve(plain)
    assert plain1 == pytest.approx(after1)  # the first step does not depend on the decay
    assert plain2 < plain1, (plain1, plain2)


def test_step_sizes_follow_the_decay_in_training_and_test():
    config = runs.resolve("maml-vpg", "sinusoid", sets=["algo.inner_lr=0.3",
                                                       "algo.inner_lr_decay=0.5"])
    c = config.algo_options
    assert [c.step_lr(k) for k in range(3)] == pytest.approx([0.3, 0.15, 0.075])
    alg = config.algorithm()
    state = alg.init(key=jax.random.PRNGKey(0))
    task = jax.tree.map(lambda x: x[0], alg.family.tasks("test", 1))
    key = jax.random.PRNGKey(3)
    mses = alg._regression_curve(state["params"], task, key, steps=2)
    # the same two steps by hand
    k_support, k_query = jax.random.split(key)
    support = alg.family.data(k_support, task, c.shots)
    query = alg.family.data(k_query, task, 100)
    params = state["params"]
    for lr in (0.3, 0.15):
        grads = jax.grad(alg._mse)(params, support)
        params = jax.tree.map(lambda p, g, lr=lr: p - lr * g, params, grads)
    np.testing.assert_allclose(mses[-1], alg._mse(params, query), rtol=1e-5)


def test_maml_sinusoid_one_step_beats_no_adaptation():
    config = runs.resolve("maml-trpo", "sinusoid")
    alg = config.algorithm()
    state = alg.init(key=jax.random.PRNGKey(0))

    def chunk(state, _):
        return alg.update(state)

    run = jax.jit(lambda s: jax.lax.scan(chunk, s, None, length=1500))
    state, metrics = run(state)
    curve = score_tasks(jax.jit(lambda t, *, key: alg.adaptation_curve(state, t, key=key,
                                                                       steps=1)),
                        alg.family, "test", 100, key=jax.random.PRNGKey(1))["mse"]
    before, after = curve[:, 0].mean(), curve[:, 1].mean()
    assert after < 0.6 * before, (before, after)
    assert after < 2.0
