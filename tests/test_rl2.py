"""RL²: registration, shapes, determinism, continuous actions, and a seconds-long
learning-regression test on a 2-armed bandit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptrl.algos import algorithm_entry
from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.errors import UserError
from adaptrl.evaluation.reference import reference_curve
from adaptrl.tasks.bandit import Bandit
from adaptrl.tasks.point_nav import PointNav
from adaptrl.tasks.tabular_mdp import TabularMDP

TINY = {"trial_episodes": 4, "trials_per_iteration": 8, "hidden": 8, "minibatches": 2,
        "ppo_epochs": 2}


def _train(algo, iterations, seed=0, update=None):
    state = algo.init(key=jax.random.PRNGKey(seed))
    update = update or jax.jit(algo.update)
    for _ in range(iterations):
        state, metrics = update(state)
    return state, metrics


def test_registered_with_episode_curve():
    entry = algorithm_entry("rl2")
    assert entry.cls is RL2 and RL2.curve_unit == "episodes"
    assert "tabular-mdp" in RL2.paper_defaults and "iterations" in RL2.paper_defaults["bandit"]


def test_same_seed_same_metrics_and_curve_shapes():
    fam = TabularMDP(horizon=3)
    algo = RL2(RL2Config(**TINY), fam)
    update = jax.jit(algo.update)
    (s1, m1), (s2, m2) = _train(algo, 2, update=update), _train(algo, 2, update=update)
    assert m1.keys() == m2.keys() and "optimum" in m1
    for k in m1:
        assert float(m1[k]) == float(m2[k]), k
    tasks = fam.tasks("test", 5)
    curve = jax.jit(lambda s: algo.adaptation_curve(s, tasks, key=jax.random.PRNGKey(1), steps=3))
    c1, c2 = curve(s1), curve(s2)
    assert c1["return"].shape == (5, 4)
    np.testing.assert_array_equal(c1["return"], c2["return"])
    assert algo.default_eval_steps == 3


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_continuous_actions_with_success(architecture):
    fam = PointNav(horizon=5)
    algo = RL2(RL2Config(**TINY, architecture=architecture, heads=2), fam)
    state, metrics = _train(algo, 1)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    curve = jax.jit(lambda s: algo.adaptation_curve(s, fam.tasks("test", 3),
                                                    key=jax.random.PRNGKey(0), steps=1))(state)
    assert curve["return"].shape == (3, 2) and curve["success"].shape == (3, 2)


def test_learns_two_armed_bandit_better_than_random():
    fam = Bandit(arms=2, pulls=1)
    config = RL2Config(trial_episodes=10, trials_per_iteration=64, hidden=16, lr=3e-3,
                       discount=1.0, minibatches=2)
    state, _ = _train(RL2(config, fam), 60)
    tasks = fam.tasks("test", 500)
    key = jax.random.PRNGKey(7)
    curve = jax.jit(lambda s: RL2(config, fam).adaptation_curve(s, tasks, key=key, steps=9))
    rl2 = curve(state)["return"].sum(-1)
    rnd = reference_curve("random", fam, tasks, key=key, episodes=10,
                          family_name="bandit")["return"].sum(-1)
    # random scores 5.0 per trial in expectation, the clairvoyant optimum 6.67
    assert float(rl2.mean()) > float(rnd.mean()) + 0.6, (float(rl2.mean()), float(rnd.mean()))


def test_transformer_learns_two_armed_bandit_better_than_random():
    fam = Bandit(arms=2, pulls=1)
    config = RL2Config(trial_episodes=10, trials_per_iteration=64, hidden=16, lr=3e-3,
                       discount=1.0, minibatches=2, architecture="transformer", layers=1,
                       heads=2)
    algo = RL2(config, fam)
    state, _ = _train(algo, 100)
    tasks = fam.tasks("test", 500)
    key = jax.random.PRNGKey(7)
    rl2 = jax.jit(lambda s: algo.adaptation_curve(s, tasks, key=key, steps=9))(state)
    rnd = reference_curve("random", fam, tasks, key=key, episodes=10,
                          family_name="bandit")["return"].sum(-1)
    # random 5.0 in expectation, the clairvoyant optimum 6.67; measured 6.0 vs 5.14
    assert float(rl2["return"].sum(-1).mean()) > float(rnd.mean()) + 0.6
    # its attention cache holds trial_episodes episodes: a longer curve is refused
    with pytest.raises(UserError, match="at most trial_episodes=10"):
        algo.adaptation_curve(state, tasks, key=key, steps=10)
    with pytest.raises(ValueError, match="heads dividing hidden"):
        RL2Config(architecture="transformer", hidden=10, heads=4)


def test_transformer_replay_matches_its_steps():
    """The transformer evaluates a recorded trial in one parallel pass
    (``trials.replay`` -> ``sequence``); on every real step it must give what stepping it
    with its attention cache gave, masked steps skipped as in :func:`trials.trial`."""
    from adaptrl import policies
    from adaptrl.sampling import trials

    for discrete in (True, False):
        pol = policies.TransformerPolicy(6, 3, discrete, max_steps=9, width=16, layers=2,
                                         heads=2, trial_steps=9, input_layer=8, head_layer=5)
        params = pol.init(key=jax.random.PRNGKey(0))
        xs = jax.random.normal(jax.random.PRNGKey(1), (9, 6))
        mask = jnp.array([1, 1, 0, 0, 1, 1, 1, 0, 1], jnp.float32)
        carry, outs, values = pol.initial_carry(), [], []
        for x, m in zip(xs, mask, strict=True):
            new, dist, value = pol.step(params, carry, x)
            outs.append(dist.logits if discrete else dist.mean)
            values.append(value)
            carry = new if m else carry
        dist, value = trials.replay(pol, params, xs, mask)
        real = np.asarray(mask) > 0
        replayed = dist.logits if discrete else dist.mean
        np.testing.assert_allclose(np.stack(outs)[real], replayed[real], atol=1e-5)
        np.testing.assert_allclose(np.stack(values)[real], value[real], atol=1e-5)
        # the cache forgets nothing it was given: 6 real steps were written
        assert float(carry[1]) == 6


def test_lr_anneals_linearly_to_zero():
    fam = Bandit(arms=2, pulls=1)
    algo = RL2(RL2Config(**{**TINY, "lr_anneal_iterations": 2}), fam)
    update = jax.jit(algo.update)
    start = algo.init(key=jax.random.PRNGKey(0))
    first, _ = update(start)
    leaves = lambda s: jax.tree.leaves(s["params"])  # noqa: E731
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(start), leaves(first),
                                                         strict=True))
    second, _ = update(first)
    # after lr_anneal_iterations iterations the step size is 0: parameters stop moving
    third, _ = update(second)
    for a, b in zip(leaves(second), leaves(third), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        RL2Config(lr_anneal_iterations=-1)


def test_value_time_reaches_the_critic_only():
    """With ``value_time`` the value head sees 1 - t / trial_steps (t counted in the carry);
    the action distribution is the same function of the inputs as without it."""
    from adaptrl import policies

    plain = policies.RecurrentPolicy(4, 3, True, hidden=8, input_layer=6)
    timed = policies.RecurrentPolicy(4, 3, True, hidden=8, input_layer=6, trial_steps=10)
    p_plain, p_timed = plain.init(key=jax.random.PRNGKey(0)), timed.init(key=jax.random.PRNGKey(0))
    assert p_timed["net"]["value_head"]["kernel"].shape == (2 * 8 + 1, 1)
    assert p_plain["net"]["input_layer"]["kernel"].shape == (4, 6)
    # same policy weights: identical logits, step after step
    p_timed["net"] = {**p_timed["net"], **{k: v for k, v in p_plain["net"].items()
                                           if k != "value_head"}}
    xs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    c_plain, c_timed = plain.initial_carry(), timed.initial_carry()
    for i, x in enumerate(xs):
        c_plain, d_plain, _ = plain.step(p_plain, c_plain, x)
        c_timed, d_timed, v = timed.step(p_timed, c_timed, x)
        np.testing.assert_array_equal(d_plain.logits, d_timed.logits)
        assert float(c_timed[2]) == i + 1
    # the value moves with the time feature alone (hidden state held fixed)
    h = (c_timed[0], c_timed[1])
    v_early = timed.step(p_timed, (*h, jnp.float32(0.0)), xs[0])[2]
    v_late = timed.step(p_timed, (*h, jnp.float32(9.0)), xs[0])[2]
    assert float(v_early) != float(v_late)
    with pytest.raises(ValueError):
        RL2Config(input_layer=-1)


def test_head_layer_reads_the_step_input_beside_the_gru():
    """``head_layer``: the action head is a ReLU layer over [policy GRU output, raw input].
    With the policy GRU silenced (zero weights: its output stays 0 from a zero carry) the
    logits still follow the current input through the skip, and without the head layer they
    cannot; the critic is the same function either way."""
    from adaptrl import policies

    plain = policies.RecurrentPolicy(4, 3, True, hidden=8, input_layer=6)
    headed = policies.RecurrentPolicy(4, 3, True, hidden=8, input_layer=6, head_layer=5)
    p_plain, p_head = plain.init(key=jax.random.PRNGKey(0)), headed.init(key=jax.random.PRNGKey(0))
    assert p_head["net"]["head_layer"]["kernel"].shape == (8 + 4, 5)
    assert p_head["net"]["policy_head"]["kernel"].shape == (5, 3)
    silence = {"policy_gru": jax.tree.map(jnp.zeros_like, p_plain["net"]["policy_gru"])}
    p_plain["net"] = {**p_plain["net"], **silence}
    p_head["net"] = {**p_head["net"], **silence,
                     **{k: p_plain["net"][k] for k in ("input_layer", "value_gru", "value_head")}}
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    outs = {}
    for name, pol, params in (("plain", plain, p_plain), ("head", headed, p_head)):
        steps = [pol.step(params, pol.initial_carry(), x) for x in xs]
        np.testing.assert_array_equal(steps[0][0][0], 0.0)  # the silenced GRU's state
        outs[name] = [(d.logits, v) for _, d, v in steps]
    np.testing.assert_array_equal(outs["plain"][0][0], outs["plain"][1][0])
    assert not np.allclose(outs["head"][0][0], outs["head"][1][0])
    for (_, v_plain), (_, v_head) in zip(outs["plain"], outs["head"], strict=True):
        np.testing.assert_array_equal(v_plain, v_head)
    with pytest.raises(ValueError):
        RL2Config(head_layer=-1)


def test_value_time_trains_on_tabular_mdp():
    fam = TabularMDP(horizon=3)
    algo = RL2(RL2Config(**TINY, value_time=True, input_layer=8), fam)
    assert algo.policy.trial_steps == 4 * 3
    state, metrics = _train(algo, 2)
    assert np.isfinite(float(metrics["loss"]))


def test_privileged_critic_sees_the_task_and_the_policy_does_not():
    """``privileged_critic``: the value GRU's input carries the task's features; the action
    distribution is unchanged by them (and by every critic weight), and replaying a
    recorded trial with its context gives the values recorded while sampling it."""
    from adaptrl.sampling import trials

    fam = TabularMDP(states=3, actions=2, horizon=3)
    task = fam.sample_one(jax.random.PRNGKey(0))
    feats = fam.task_features(task)
    np.testing.assert_array_equal(
        feats, jnp.concatenate([task["rewards"].ravel(), task["transitions"].ravel()]))
    assert fam.task_features_dim() == 3 * 2 + 3 * 2 * 3
    algo = RL2(RL2Config(**TINY, privileged_critic=True, input_layer=8), fam)
    pol = algo.policy
    assert pol.context_dim == 24
    params = algo.init(key=jax.random.PRNGKey(1))["params"]
    tr = trials.trial(fam, pol, params, task, key=jax.random.PRNGKey(2), episodes=2)
    dist, value = trials.replay(pol, params, tr.inputs, tr.mask, feats)
    np.testing.assert_allclose(value, tr.value, rtol=1e-5, atol=1e-6)
    other = fam.task_features(fam.sample_one(jax.random.PRNGKey(3)))
    dist_other, value_other = trials.replay(pol, params, tr.inputs, tr.mask, other)
    np.testing.assert_array_equal(dist.logits, dist_other.logits)
    assert not np.allclose(value, value_other)
    # no gradient flows from the critic's context into the action distribution
    grad = jax.grad(lambda c: trials.replay(pol, params, tr.inputs, tr.mask, c)[0]
                    .logits.sum())(feats)
    assert not np.any(grad)
    state, metrics = _train(algo, 2)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    with pytest.raises(ValueError, match="privileged_critic"):
        RL2Config(privileged_critic=True, architecture="transformer")


def test_benchmark_reuse_ignores_evaluation_only_fields(monkeypatch):
    """A kept benchmark state is reused for a config that differs only in meta-test fields
    (so ``--set eval_greedy=true --reuse`` evaluates it greedily), never for one that
    trains differently, ran another length, or names a field RL2Config no longer has."""
    import dataclasses
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _rl2_common import _same_run

    config = RL2Config(lr=2e-3, head_layer=8)
    meta = {"family": "TabularMDP()", "iterations": 10}
    kept = {**meta, "fields": dataclasses.asdict(config)}
    assert _same_run(kept, meta, dataclasses.replace(config, eval_greedy=True, eval_trials=4))
    assert not _same_run(kept, meta, dataclasses.replace(config, lr=1e-3))
    assert not _same_run({**kept, "iterations": 11}, meta, config)
    assert not _same_run({**kept, "fields": {**kept["fields"], "gone": 1}}, meta, config)
    assert not _same_run(meta, meta, config)  # no fields kept
