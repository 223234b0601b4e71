"""The DeepMind Control families: the public checker, the task reaching the physics and
the reward, seeding, the algorithms on a tiny setting, and a missing extra."""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest

from adaptrl.cli import main
from adaptrl.tasks import make_family
from adaptrl.tasks.check import check_family

pytest.importorskip("dm_control")

from test_metaworld import tiny_train  # noqa: E402 - after the skip


def _task(fam, i):
    return jax.tree.map(lambda x: np.asarray(x[i]), fam.tasks("test", i + 1))


@pytest.mark.parametrize("name", ["dmc-cheetah-vel", "dmc-walker-mass"])
def test_passes_the_checker(name):
    assert check_family(make_family(name)) == []


def test_cheetah_vel_rewards_the_target_speed():
    from dm_control.utils import rewards

    fam = make_family("dmc-cheetah-vel")
    task = _task(fam, 3)
    env = fam.make_env()
    env.reset(seed=1, options={"task": task})
    _, reward, _, _, _ = env.step(np.full(6, 0.5, np.float32))
    speed, v = env.env.physics.speed(), float(task["velocity"])
    assert reward == pytest.approx(max(0.0, 1 - abs(speed - v) / 4.0), abs=1e-9)
    assert reward == pytest.approx(rewards.tolerance(speed, (v, v), margin=4.0,
                                                     value_at_margin=0, sigmoid="linear"))
    velocities = np.asarray(fam.tasks("test", 500)["velocity"])
    assert velocities.min() >= 0 and velocities.max() <= 4 and np.ptp(velocities) > 3.5


def test_walker_mass_scales_every_body_and_keeps_walkers_reward():
    fam = make_family("dmc-walker-mass")
    env = fam.make_env()
    base = env.env.physics.model.body_mass.copy()
    for i in (0, 1):  # switching tasks rescales from the model's own masses
        task = _task(fam, i)
        env.reset(seed=0, options={"task": task})
        np.testing.assert_allclose(env.env.physics.model.body_mass,
                                   base * 2.0 ** task["log2_mass"].astype(np.float64), rtol=1e-12)
    assert np.abs(task["log2_mass"]).max() <= 1.0
    _, reward, terminated, _, _ = env.step(np.zeros(6, np.float32))
    assert reward == pytest.approx(env.env.task.get_reward(env.env.physics))
    assert terminated is False


def test_the_seed_draws_the_initial_state_and_the_horizon_cuts_episodes():
    fam = make_family("dmc-cheetah-vel", {"horizon": 7})
    task = _task(fam, 0)
    env = fam.make_env()
    first = [env.reset(seed=s, options={"task": task})[0] for s in (4, 4, 5)]
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[0], first[2])
    flags = [env.step(np.zeros(6, np.float32))[3] for _ in range(7)]
    assert flags == [False] * 6 + [True]


def test_a_missing_extra_names_the_pip_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dm_control", None)  # import dm_control fails
    assert main(["check", "dmc-walker-mass"]) == 2
    assert 'pip install "adaptrl[dmc]"' in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo", "rl2"])
def test_algorithms_run_unchanged(algo, tmp_path):
    run = tmp_path / "run"
    tiny_train(algo, "dmc-cheetah-vel", run)
    assert main(["eval", str(run), "--num-tasks", "2", "--adapt-steps", "1"]) == 0
