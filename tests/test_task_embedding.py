"""The task-embedding learner: the embedding inference against a plain-Python reference,
determinism, exact resume, and seconds-long learning regressions (sinusoid, point-nav)
showing that the inferred embedding beats the un-adapted one by a clear margin."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptrl import runs
from adaptrl.algos import algorithm_entry
from adaptrl.algos.base import AXES
from adaptrl.algos.task_embedding import (
    TaskEmbedding,
    embeddings_before_each,
    infer_embedding,
)
from adaptrl.evaluation.harness import score_tasks
from adaptrl.policies import MLP

SINUSOID = ["algo.meta_batch_size=4", "algo.hidden=[16]", "algo.encoder_hidden=[16]",
            "algo.shots=5"]
POINT_NAV = ["algo.meta_batch_size=4", "algo.hidden=[8]", "algo.encoder_hidden=[8]",
             "algo.trial_episodes=2", "tasks.horizon=5", "algo.eval_trials=2",
             "algo.ppo_epochs=2"]
TINY = {"sinusoid": SINUSOID, "point-nav": POINT_NAV}


def _build(tasks, sets=()):
    return runs.resolve("task-embedding", tasks, sets=[*TINY[tasks], *sets]).algorithm()


def _reference_embedding(encoder, params, items, mask):
    """Plain Python: the encoder on one item at a time, a running sum over the seen ones."""
    total, seen = np.zeros(encoder.out), 0.0
    for item, m in zip(np.asarray(items), np.asarray(mask), strict=True):
        if m:
            total += np.asarray(encoder.apply({"params": params}, jnp.asarray(item[None])))[0]
            seen += 1
    return total / seen if seen else total


def test_registered_for_both_kinds_with_data_axes():
    entry = algorithm_entry("task-embedding")
    assert entry.cls is TaskEmbedding and set(entry.kinds) == {"rl", "regression"}
    assert {"sinusoid", "point-nav"} <= set(TaskEmbedding.paper_defaults)
    assert _build("sinusoid").curve_unit == "shots" and "shots" in AXES
    assert _build("point-nav").curve_unit == "episodes"
    assert _build("sinusoid").default_eval_steps == 5


def test_embedding_is_the_masked_mean_of_the_encoded_items():
    encoder = MLP((6,), 3)
    params = encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))["params"]
    items = jax.random.normal(jax.random.PRNGKey(1), (7, 4))
    for mask in ([1, 1, 0, 1, 0, 0, 1], [0] * 7, [1] * 7):
        m = jnp.asarray(mask, jnp.float32)
        got = infer_embedding(encoder, params, items, m)
        np.testing.assert_allclose(got, _reference_embedding(encoder, params, items, m),
                                   rtol=1e-5, atol=1e-6)
        jitted = jax.jit(lambda i, mm: infer_embedding(encoder, params, i, mm))(items, m)
        np.testing.assert_allclose(jitted, got, rtol=1e-6, atol=1e-7)
    assert not np.any(infer_embedding(encoder, params, items, jnp.zeros(7)))  # z(∅) = 0


def test_each_episode_acts_under_the_embedding_of_the_earlier_ones():
    encoder = MLP((5,), 2)
    params = encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]
    items = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 3))  # 4 episodes of 6 items
    mask = (jax.random.uniform(jax.random.PRNGKey(2), (4, 6)) < 0.7).astype(jnp.float32)
    got = embeddings_before_each(encoder, params, items, mask)
    for k in range(4):
        ref = _reference_embedding(encoder, params, items[:k].reshape(-1, 3),
                                   mask[:k].reshape(-1))
        np.testing.assert_allclose(got[k], ref, rtol=1e-5, atol=1e-6)
    # the running fold used while collecting gives the same embeddings
    alg = _build("point-nav")
    sums, counts = jnp.zeros((1, 2)), jnp.zeros((1,))
    alg.encoder = encoder
    for k in range(3):
        sums, counts, z = alg._fold(params, items[None, k], mask[None, k], sums, counts)
        np.testing.assert_allclose(z[0], got[k + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tasks", ["sinusoid", "point-nav"])
def test_same_seed_same_metrics_and_no_retracing(tasks):
    alg = _build(tasks)
    traces = []

    def update(state):
        traces.append(1)
        return alg.update(state)

    step = jax.jit(update)
    metrics = []
    for _ in range(2):
        state = alg.init(key=jax.random.PRNGKey(3))
        row = []
        for _ in range(2):
            state, m = step(state)
            row.append({k: float(v) for k, v in m.items()})
        metrics.append(row)
    assert metrics[0] == metrics[1] and len(traces) == 1
    assert all(np.isfinite(v) for r in metrics[0] for v in r.values())
    curve = alg.adaptation_curve(state, alg.family.tasks("test", 3), key=jax.random.PRNGKey(4),
                                 steps=2)
    measure = alg.family.measure
    assert curve[measure].shape == (3, 3)


@pytest.mark.parametrize("tasks", ["sinusoid", "point-nav"])
def test_two_plus_two_iterations_equal_four(tasks, tmp_path):
    def run(path, schedule):
        config = runs.resolve("task-embedding", tasks, sets=[*TINY[tasks], "checkpoint_every=2"],
                              overrides={"iterations": schedule[0], "seed": 5})
        runs.create_run(path, config)
        runs.train(path)
        for more in schedule[1:]:
            runs.train(path, resume=True, iterations=more)
        return runs.load_trained(path, runs.load_run(path))[1]

    whole, split = run(tmp_path / "whole", [4]), run(tmp_path / "split", [2, 4])
    assert int(whole["iteration"]) == int(split["iteration"]) == 4
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _curve(alg, state, steps, num_tasks=40):
    fn = jax.jit(lambda t, *, key: alg.adaptation_curve(state, t, key=key, steps=steps))
    return score_tasks(fn, alg.family, "test", num_tasks, key=jax.random.PRNGKey(1))


def test_sinusoid_inferred_embedding_beats_the_unadapted_one():
    alg = runs.resolve("task-embedding", "sinusoid", sets=[
        "algo.hidden=[32, 32]", "algo.encoder_hidden=[32, 32]"]).algorithm()
    state = alg.init(key=jax.random.PRNGKey(0))
    state, _ = jax.jit(lambda s: jax.lax.scan(lambda s, _: alg.update(s), s, None,
                                              length=1500))(state)
    mse = _curve(alg, state, 10, num_tasks=100)["mse"].mean(0)
    assert mse[10] < 0.35 * mse[0], mse  # 10 shots against none
    assert mse[10] < mse[2] < mse[0], mse  # more shots, better fits


def test_point_nav_inferred_embedding_beats_the_unadapted_one():
    """The first 25 of point-nav's 200 iterations (per-family setting, on trials of 2
    episodes instead of 4 to halve the test's time): the episode after
    one episode of context clearly beats the first one, which acts under the un-adapted
    (zero) embedding. (Smaller settings, 30 iterations of 20 or 40 trials of horizon 50 or
    100 with 32-wide networks, had not learned to adapt yet.)"""
    alg = runs.resolve("task-embedding", "point-nav",
                       sets=["algo.eval_trials=4", "algo.trial_episodes=2"]).algorithm()
    state = alg.init(key=jax.random.PRNGKey(0))
    state, _ = jax.jit(lambda s: jax.lax.scan(lambda s, _: alg.update(s), s, None,
                                              length=25))(state)
    ret = _curve(alg, state, 1)["return"].mean(0)
    assert ret[1] > ret[0] + 0.2 * abs(ret[0]), ret
