"""Gymnasium export passes Gymnasium's env checker and follows the trial protocol."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from adaptrl.tasks.bandit import Bandit
from adaptrl.tasks.gym_export import FamilyEnv, TrialEnv
from adaptrl.tasks.point_nav import PointNav
from adaptrl.tasks.tabular_mdp import TabularMDP


@pytest.mark.parametrize("family", [Bandit(arms=3, pulls=4), TabularMDP(), PointNav(horizon=5)],
                         ids=["bandit", "tabular-mdp", "point-nav"])
def test_check_env(family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the bandit's constant observation box
        check_env(FamilyEnv(family), skip_render_check=True)
        check_env(TrialEnv(family, trial_episodes=2), skip_render_check=True)


def test_task_option_and_trial_length():
    fam = Bandit(arms=2, pulls=1)
    task = {"means": np.array([0.0, 1.0], np.float32)}
    env = TrialEnv(fam, trial_episodes=5)
    obs, _ = env.reset(seed=0, options={"task": task})
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 0])
    rewards, steps, done = [], 0, False
    while not done:
        obs, r, done, trunc, info = env.step(1)
        rewards.append(r)
        steps += 1
        assert not trunc
    assert steps == 5 and rewards == [1.0] * 5
    np.testing.assert_array_equal(obs, [0, 0, 1, 1, 1])  # obs, onehot(1), reward 1, done 1


def test_family_env_truncates_at_horizon_and_seeds():
    env = FamilyEnv(TabularMDP())
    a, _ = env.reset(seed=3)
    trajs = []
    for _ in range(2):
        env.reset(seed=3)
        trajs.append([env.step(i % 5)[1] for i in range(10)])
    assert trajs[0] == trajs[1]
    env.reset(seed=3)
    *_, term, trunc, _ = [env.step(0) for _ in range(10)][-1]
    assert not term and trunc
    task = TabularMDP().sample_one(jax.random.PRNGKey(0))
    env.reset(options={"task": task})
    np.testing.assert_array_equal(env.current_task["rewards"], task["rewards"])
