"""The MuJoCo locomotion families: each passes the public checker, and its reward equals
one computed by hand from the simulator's state (not from Gymnasium's info)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from adaptrl.tasks import make_family
from adaptrl.tasks.check import check_family
from adaptrl.tasks.locomotion import WALKER_PARAMS, AntGoal

LOCOMOTION = ["cheetah-vel", "cheetah-dir", "ant-dir", "ant-goal", "walker-params"]


@pytest.mark.parametrize("name", LOCOMOTION)
def test_passes_the_checker(name):
    assert check_family(make_family(name)) == []


def _one_step(name, index=0):
    """Reset a task's environment, take one fixed action; the simulator state around it."""
    fam = make_family(name)
    task = jax.tree.map(lambda x: np.asarray(x[index]), fam.tasks("test", index + 1))
    env = fam.make_env()
    env.reset(seed=3, options={"task": task})
    sim = env.env.unwrapped
    action = np.linspace(-0.9, 0.8, fam.action_space.shape[0]).astype(np.float32)
    before, root = sim.data.body("torso").xpos.copy(), sim.data.qpos[0]
    _, reward, terminated, _, _ = env.step(action)
    after = sim.data.body("torso").xpos.copy()
    sim.root_velocity = (sim.data.qpos[0] - root) / sim.dt  # the root joint's x velocity
    return fam, task, sim, action, (after - before) / sim.dt, after, reward, terminated


def _contact(sim) -> float:
    return 5e-4 * float(np.sum(np.square(np.clip(sim.data.cfrc_ext, -1, 1))))


def test_cheetah_vel_reward_by_hand():
    # the velocity of the root joint, qpos[0], as in the authors' half_cheetah_env_rand.py
    _, task, sim, a, _, _, reward, _ = _one_step("cheetah-vel")
    expected = -abs(sim.root_velocity - float(task["velocity"])) - 0.05 * np.sum(a**2)
    assert reward == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_cheetah_dir_reward_by_hand(index):
    _, task, sim, a, _, _, reward, _ = _one_step("cheetah-dir", index)
    assert float(task["direction"]) in (-1.0, 1.0)
    expected = float(task["direction"]) * sim.root_velocity - 0.05 * np.sum(a**2)
    assert reward == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", ["cheetah-dir", "ant-dir"])
def test_two_direction_families_score_both_directions_evenly(name):
    fam = make_family(name)
    for n in (1, 2, 5, 40):
        d = np.asarray(fam.tasks("test", n)["direction"])
        assert list(d) == [-1.0, 1.0] * (n // 2) + [-1.0] * (n % 2)
    drawn = np.asarray(fam.tasks("train", 400, key=jax.random.PRNGKey(0))["direction"])
    assert set(drawn) == {-1.0, 1.0} and abs(np.mean(drawn)) < 0.15  # meta-train: drawn


def test_ant_dir_reward_by_hand():
    _, task, sim, a, vel, after, reward, terminated = _one_step("ant-dir")
    expected = float(task["direction"]) * vel[0] - 0.5 * np.sum(a**2) - _contact(sim) + 1.0
    assert reward == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert terminated == (not 0.2 <= after[2] <= 1.0)


def test_ant_goal_reward_by_hand_and_goals_fill_the_disc():
    fam, task, sim, a, _, after, reward, _ = _one_step("ant-goal")
    goal = AntGoal.goal(task)
    expected = -np.abs(after[:2] - goal).sum() - 0.1 * np.sum(a**2) - _contact(sim)
    assert reward == pytest.approx(expected, rel=1e-5, abs=1e-6)
    tasks = fam.tasks("test", 2000)
    goals = np.array([AntGoal.goal({k: v[i] for k, v in tasks.items()}) for i in range(2000)])
    r = np.linalg.norm(goals, axis=1)
    assert r.max() <= 3.0 and abs(np.mean(r <= 1.5) - 0.25) < 0.04  # area-uniform: P = 1/4


def test_walker_params_scale_the_model_and_keep_walkers_reward():
    _, task, sim, a, _, _, reward, _ = _one_step("walker-params")
    base = make_family("walker-params").build().unwrapped.model
    for name, root in WALKER_PARAMS.items():
        u = np.asarray(task[name])
        assert u.shape == getattr(base, name).shape and np.abs(u).max() <= 3.0
        np.testing.assert_allclose(getattr(sim.model, name), getattr(base, name) * root**u,
                                   rtol=1e-6)
    # Walker2d's own reward: forward velocity of the root (qpos[0]) + 1 alive - 1e-3 |a|^2
    assert reward == pytest.approx(sim.root_velocity + 1.0 - 1e-3 * np.sum(a**2), rel=1e-5,
                                   abs=1e-6)


def test_pools_follow_pearl_and_maml_draws_fresh_tasks():
    from adaptrl import runs

    assert [make_family(n).train_pool for n in LOCOMOTION] == [100, 0, 0, 150, 40]
    config = runs.resolve("maml-trpo", "cheetah-vel")
    assert config.task_options.train_pool == 0 and config.task_options.horizon == 200
    assert config.algo_options.meta_batch_size == 40 and config.algo_options.inner_lr == 0.1


@pytest.mark.parametrize("algo", ["maml-trpo", "rl2"])
def test_maml_and_rl2_train_and_resume_on_a_locomotion_family(algo, tmp_path):
    """One tiny iteration through the host sampler, then --resume for a second one."""
    from adaptrl.cli import main

    tiny = {"maml-trpo": ["algo.meta_batch_size=2", "algo.episodes_per_task=2",
                          "algo.hidden=[8]"],
            "rl2": ["algo.trials_per_iteration=2", "algo.minibatches=1", "algo.hidden=8",
                    "algo.trial_episodes=2"]}[algo]
    sets = [*tiny, "tasks.horizon=6", "sampler.workers=1"]
    run = tmp_path / "run"
    argv = ["train", algo, "--tasks", "ant-goal", "--iterations", "1", "--out", str(run)]
    assert main([*argv, *[x for s in sets for x in ("--set", s)]]) == 0
    assert main(["train", "--resume", str(run), "--iterations", "2"]) == 0
    assert main(["eval", str(run), "--num-tasks", "2", "--adapt-steps", "1"]) == 0
