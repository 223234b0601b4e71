"""Reference strategies: Gittins indices against published tables; sanity of each strategy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptrl.errors import UserError
from adaptrl.evaluation import reference as ref
from adaptrl.tasks.bandit import Bandit
from adaptrl.tasks.point_nav import PointNav
from adaptrl.tasks.tabular_mdp import TabularMDP

# Gittins indices of a Bernoulli arm with a uniform prior, discount 0.9, indexed by
# (successes, failures) observed. Source: Gittins' tables (Gittins, Glazebrook & Weber,
# "Multi-armed Bandit Allocation Indices", 2nd ed., Wiley 2011), as reproduced in the
# table "Gittins index values as a function of wins and losses, assuming that a payoff next
# time is worth 90% of a payoff now" of B. Christian & T. Griffiths, "Algorithms to Live
# By" (2016), ch. 2: 0-0 -> 0.7029, 1-1 -> 0.6346, 2-2 -> 0.6010, 9 wins 1 loss -> 0.8695.
TABLE_09 = [((0, 0), 0.7029), ((1, 1), 0.6346), ((2, 2), 0.6010), ((9, 1), 0.8695)]


@pytest.mark.parametrize(("record", "value"), TABLE_09)
def test_gittins_discounted_matches_published_table(record, value):
    wins, losses = record
    got = ref.gittins_index_discounted(1 + wins, 1 + losses, 0.9)
    assert abs(float(got) - value) < 6e-5


def test_gittins_discounted_099_uniform_prior():
    # Gittins' table for discount 0.99 gives 0.8699 for an untried arm, Beta(1, 1)
    assert abs(float(ref.gittins_index_discounted(1, 1, 0.99)) - 0.8699) < 1e-4


def test_gittins_finite_horizon_table_properties():
    table = ref.gittins_table_finite(12)
    # one pull left: the index is the posterior mean (s + 1) / (s + f + 2)
    for s in range(5):
        for f in range(5):
            assert abs(table[1, s, f] - (s + 1) / (s + f + 2)) < 1e-6
    # more pulls left: a larger exploration bonus, and more successes a larger index
    assert table[12, 0, 0] > table[6, 0, 0] > table[2, 0, 0] > 0.5
    assert table[5, 3, 1] > table[5, 2, 1] > table[5, 2, 2]


def test_registry_and_errors():
    assert set(ref.REFERENCE) == {"random", "ucb1", "thompson", "gittins", "psrl", "greedy",
                                  "myopic"}
    assert ref.reference_names("bandit") == ["random", "ucb1", "thompson", "gittins"]
    assert ref.reference_names("tabular-mdp") == ["random", "psrl", "greedy", "myopic"]
    assert ref.reference_names("point-nav") == ref.reference_names("point-nav-sparse") == [
        "random"]
    assert ref.reference_names("sinusoid") == []
    with pytest.raises(UserError):
        ref.reference_curve("psrl", Bandit(), Bandit().tasks("test", 2),
                            key=jax.random.PRNGKey(0), episodes=2, family_name="bandit")
    with pytest.raises(UserError):
        ref.supports("nope", "bandit")


def test_unsupported_family_is_named_as_the_user_named_it():
    """point-nav and point-nav-sparse are one class: the message names the family asked
    for, and the strategies that do play it."""
    fam = PointNav()
    with pytest.raises(UserError) as e:
        ref.reference_curve("gittins", fam, fam.tasks("test", 2), key=jax.random.PRNGKey(0),
                            episodes=2, family_name="point-nav")
    assert "'point-nav' " in str(e.value) and "sparse" not in str(e.value)
    assert "strategies for point-nav: random" in str(e.value)


def test_bandit_strategies_beat_random():
    fam = Bandit(arms=5, pulls=1)
    tasks = fam.tasks("test", 300)
    totals = {
        name: float(ref.reference_curve(name, fam, tasks, key=jax.random.PRNGKey(0),
                                        episodes=20, family_name="bandit")[
                                            "return"].sum(-1).mean())
        for name in ("random", "ucb1", "thompson", "gittins")
    }
    assert abs(totals["random"] - 10.0) < 0.5
    for name in ("ucb1", "thompson", "gittins"):
        assert totals[name] > totals["random"] + 1.5, totals
    assert totals["gittins"] >= totals["ucb1"], totals


def test_curve_shape_with_multi_pull_episodes():
    fam = Bandit(arms=3, pulls=4)
    out = ref.reference_curve("gittins", fam, fam.tasks("test", 6), key=jax.random.PRNGKey(0),
                              episodes=3, family_name="bandit")
    assert out["return"].shape == (6, 3)
    assert np.all((out["return"] >= 0) & (out["return"] <= 4))


def test_psrl_beats_random_on_mdps():
    fam = TabularMDP()
    tasks = fam.tasks("test", 100)
    ps = ref.reference_curve("psrl", fam, tasks, key=jax.random.PRNGKey(0), episodes=10,
                              family_name="tabular-mdp")
    rnd = ref.reference_curve("random", fam, tasks, key=jax.random.PRNGKey(0), episodes=10,
                              family_name="tabular-mdp")
    assert ps["return"].shape == (100, 10)
    assert ps["return"].sum(-1).mean() > rnd["return"].sum(-1).mean() + 20
    # PSRL improves within the trial
    assert ps["return"][:, -3:].mean() > ps["return"][:, 0].mean() + 1


def test_greedy_follows_the_posterior_mean_mdp():
    """Greedy plans once per episode on the posterior mean MDP (like PSRL, without the
    sample): on a one-state MDP without reward noise whose actions pay -5, 3, -5, it
    follows the first plan for a whole episode, then switches to the best action."""
    fam = TabularMDP(states=1, actions=3, horizon=4, reward_noise=0.0)
    task = {"transitions": jnp.ones((1, 1, 3, 1)), "rewards": jnp.array([[[-5.0, 3.0, -5.0]]])}
    out = ref.reference_curve("greedy", fam, task, key=jax.random.PRNGKey(0), episodes=3,
                              family_name="tabular-mdp")
    # episode 1: all actions at the prior mean 1, ties break towards action 0 (4 x -5);
    # its posterior mean (1 - 20) / 5 falls below 1, so action 1 (3 > 1) is kept after
    np.testing.assert_allclose(out["return"], [[-20, 12, 12]])
    mdp = TabularMDP()
    tasks = mdp.tasks("test", 100)
    totals = {n: float(ref.reference_curve(n, mdp, tasks, key=jax.random.PRNGKey(0),
                                           episodes=10, family_name="tabular-mdp")[
                                               "return"].sum(-1).mean())
              for n in ("greedy", "random")}
    assert totals["greedy"] > totals["random"] + 20, totals


def test_myopic_takes_the_best_known_reward_without_planning():
    """In state 0, action 0 pays 0 but leads to state 1, where every action pays 10; action 1
    pays 2 and stays. No reward noise, deterministic moves, 3 steps per episode. Episode 1
    is the same for both (every action at the prior mean 1; ties break towards action 0:
    0 + 10 + 10). After it, myopic prefers the untried action 1 (prior mean 1 > 0) and then
    its 2, staying in state 0 (3 x 2); greedy plans through the transition it has seen."""
    fam = TabularMDP(states=2, actions=2, horizon=3, reward_noise=0.0)
    one_hot = jax.nn.one_hot(jnp.array([[1, 0], [1, 1]]), 2)  # [S, A, S]
    task = {"transitions": one_hot[None], "rewards": jnp.array([[[0.0, 2.0], [10.0, 10.0]]])}
    key = jax.random.PRNGKey(0)
    np.testing.assert_allclose(ref.reference_curve("myopic", fam, task, key=key, episodes=3,
                                                   family_name="tabular-mdp")["return"],
                               [[20, 6, 6]])
    np.testing.assert_allclose(ref.reference_curve("greedy", fam, task, key=key, episodes=3,
                                                   family_name="tabular-mdp")["return"],
                               [[20, 20, 20]])


def test_random_on_a_family_with_success():
    fam = PointNav(horizon=5)
    out = ref.reference_curve("random", fam, fam.tasks("test", 4), key=jax.random.PRNGKey(0),
                              episodes=2, family_name="point-nav")
    assert out["return"].shape == (4, 2) and out["success"].shape == (4, 2)
