"""The Meta-World families: the public checker, Meta-World's own split, and one test per
known defect of metaworld 3.1.1 that fails if our workaround regresses; the algorithms and
``eval --protocol metaworld`` on a tiny setting; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from gymnasium.utils import seeding

from adaptrl.cli import main
from adaptrl.errors import UserError
from adaptrl.tasks import make_family
from adaptrl.tasks.base import ML1_TASKS
from adaptrl.tasks.check import check_family

metaworld = pytest.importorskip("metaworld")

#: checked in every run of the suite; ADAPTRL_ALL_METAWORLD=1 checks the other 47 ML1 task
#: types and ML45 too (building each benchmark costs 3 s to 2 min on 2 cores)
CORE = ["ml1-reach", "ml1-push", "ml1-pick-place", "ml10"]
EVERY = [f"ml1-{t}" for t in ML1_TASKS if f"ml1-{t}" not in CORE] + ["ml25", "ml45"]


def _task(fam, split, i):
    return jax.tree.map(lambda x: np.asarray(x[i]), fam.tasks(
        split, i + 1, key=jax.random.PRNGKey(0) if split == "train" else None))


def _goal(env) -> np.ndarray:
    return np.asarray(env.env._last_rand_vec)


@pytest.mark.parametrize("name", CORE + [
    pytest.param(n, marks=pytest.mark.skipif(not os.environ.get("ADAPTRL_ALL_METAWORLD"),
                                             reason="ADAPTRL_ALL_METAWORLD=1 checks it"))
    for n in EVERY])
def test_passes_the_checker(name):
    assert check_family(make_family(name)) == []


def test_ml1_names_are_the_packages_and_listing_imports_neither_jax_nor_metaworld():
    assert [f"{t}-v3" for t in ML1_TASKS] == list(metaworld.ML1.ENV_NAMES)
    code = ("import sys; from adaptrl.tasks import family_names; "
            "n = [f for f in family_names() if f.startswith('ml')]; "
            "assert len(n) == 53, n; "
            "assert 'metaworld' not in sys.modules and 'jax' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ml1_train_and_test_goals_differ_and_each_split_uses_its_own():
    """Defect: gym.make_vec("Meta-World/ML1-train") builds the test split (its lambda
    captures ``split`` late). Our meta-train tasks must reset to the benchmark's training
    goals, and held-out tasks to its test goals, which are different goals."""
    fam = make_family("ml1-reach")
    bench = metaworld.ML1("reach-v3", seed=fam.split_seed)
    train = {tuple(np.round(__import__("pickle").loads(t.data)["rand_vec"], 9))
             for t in bench.train_tasks}
    test = {tuple(np.round(__import__("pickle").loads(t.data)["rand_vec"], 9))
            for t in bench.test_tasks}
    assert len(train) == len(test) == 50 and not train & test
    env = fam.make_env()
    for i in range(3):
        env.reset(seed=0, options={"task": _task(fam, "train", i)})
        assert tuple(np.round(_goal(env), 9)) in train
        env.reset(seed=0, options={"task": _task(fam, "test", i)})
        assert tuple(np.round(_goal(env), 9)) in test
    held_out = fam.tasks("test", 50)
    assert len(set(np.asarray(held_out["index"]).tolist())) == 50  # every held-out goal


def test_the_same_seed_gives_the_same_episode_and_seeds_the_envs_own_rng():
    """Defect: Meta-World's reset(seed=) ignores the seed. Ours seeds the environment's own
    RNG, and the goal comes from the task: same task and seed, same episode."""
    fam = make_family("ml1-push")
    task = _task(fam, "test", 2)

    def episode(seed):
        env = fam.make_env()
        obs, _ = env.reset(seed=seed, options={"task": task})
        rng = env.env.np_random.bit_generator.state
        actions = np.random.default_rng(seed).uniform(-1, 1, (15, 4)).astype(np.float32)
        return [obs, *[env.step(a)[0] for a in actions]], rng

    (a, rng_a), (b, rng_b) = episode(5), episode(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert rng_a == rng_b == seeding.np_random(5)[0].bit_generator.state
    assert episode(6)[1] != rng_a


def test_reset_sets_the_task_first_so_no_sample_tasks_call_is_needed():
    """Defect: make_vec environments need env.call("sample_tasks") before reset. A fresh
    environment of ours resets straight away, and each reset switches to its own task,
    also across task types (ML10)."""
    fam = make_family("ml10")
    env = fam.make_env()
    seen = set()
    for i in range(6):
        task = _task(fam, "test", i)
        env.reset(seed=i, options={"task": task})
        seen.add(fam.task_type(task))
        expected = fam.task_list(1)[int(task["index"])]
        assert env.env.task_name == metaworld.env_dict.ALL_V3_ENVIRONMENTS[
            expected.env_name].__name__
        assert np.array_equal(_goal(env), __import__("pickle").loads(expected.data)["rand_vec"])
        env.step(np.zeros(4, np.float32))
    assert seen == set(fam.type_names(1))  # held-out tasks cycle through the 5 types


def test_any_number_of_tasks_per_meta_batch():
    """Defect: Meta-World's vector wrapper needs meta_batch_size to divide 50 x types. Ours
    draws any number of tasks of any split."""
    fam = make_family("ml1-reach")
    for n in (1, 3, 7, 51):
        for split in ("train", "test"):
            assert fam.tasks(split, n, key=jax.random.PRNGKey(n))["index"].shape == (n,)


def test_tasks_are_indices_never_pickles(tmp_path):
    """Defect: Meta-World's task data are pickled bytes. A task pytree is two integers, a
    run's config stores no task data, and an environment refuses anything but indices."""
    fam = make_family("ml1-reach")
    task = _task(fam, "train", 0)
    assert sorted(task) == ["index", "split"]
    assert all(np.issubdtype(v.dtype, np.integer) for v in task.values())
    env = fam.make_env()
    with pytest.raises(UserError, match="split, index"):
        env.reset(seed=0, options={"task": {**task, "data": b"\x80\x04K\x01."}})
    with pytest.raises(UserError, match="no Meta-World task"):
        env.reset(seed=0, options={"task": {"split": np.int32(0), "index": np.int32(50)}})
    from adaptrl import runs

    config = runs.resolve("maml-trpo", "ml1-reach", sets=["tasks.horizon=5"])
    runs.create_run(tmp_path / "run", config)
    text = (tmp_path / "run" / runs.CONFIG_FILE).read_text()
    assert "rand_vec" not in text and "data" not in json.loads(text).get("tasks", {})


def test_unknown_task_lists_the_valid_ones_and_exits_2(capsys):
    assert main(["check", "ml1-reech"]) == 2
    err = capsys.readouterr().err
    assert "unknown Meta-World task 'reech'" in err and "reach, reach-wall" in err
    assert main(["check", "ml1-reach", "--set", "tasks.env_name=nope"]) == 2
    assert "valid: assembly, basketball" in capsys.readouterr().err


def test_a_missing_extra_names_the_pip_install(monkeypatch, capsys):
    from adaptrl.tasks import metaworld as mw

    monkeypatch.setitem(sys.modules, "metaworld", None)  # import metaworld fails
    mw._benchmark_tasks.cache_clear()
    assert main(["check", "ml1-reach"]) == 2
    assert 'pip install "adaptrl[metaworld]"' in capsys.readouterr().err
    mw._benchmark_tasks.cache_clear()


TINY = {"maml-trpo": ["algo.meta_batch_size=3", "algo.episodes_per_task=2", "algo.hidden=[8]",
                      "algo.eval_episodes=2"],
        "maml-ppo": ["algo.meta_batch_size=3", "algo.episodes_per_task=2", "algo.hidden=[8]",
                     "algo.ppo_epochs=1", "algo.eval_episodes=2"],
        "rl2": ["algo.trials_per_iteration=3", "algo.minibatches=1", "algo.hidden=8",
                "algo.trial_episodes=2"]}


def tiny_train(algo: str, family: str, run, horizon: int = 6) -> None:
    """One tiny meta-iteration of ``algo`` on ``family`` through the host sampler."""
    sets = [*TINY[algo], f"tasks.horizon={horizon}", "sampler.workers=1"]
    argv = ["train", algo, "--tasks", family, "--iterations", "1", "--out", str(run)]
    assert main([*argv, *[x for s in sets for x in ("--set", s)]]) == 0


@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo", "rl2"])
def test_algorithms_run_unchanged_and_the_metaworld_protocol_scores_them(algo, tmp_path,
                                                                         capsys):
    run = tmp_path / "run"
    tiny_train(algo, "ml1-reach", run)
    capsys.readouterr()
    assert main(["eval", str(run), "--protocol", "metaworld", "--num-tasks", "3",
                 "--adapt-steps", "1", "--scored-episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    mw = result["metaworld"]
    assert mw["metaworld_version"] == "3.1.1" and mw["reward_version"] == "v2"
    assert list(mw["per_type"]) == ["reach"] and mw["per_type"]["reach"]["tasks"] == 3
    assert 0.0 <= mw["success"] <= 1.0 and np.isfinite(mw["return"])
    assert mw["adapt"] == 1 and mw["scored_episodes"] == 2
    # the curve beside it: 1 gradient step (MAML) or 1 + 2 episodes of the trial (RL²)
    assert len(result["curve"]) == (3 if algo == "rl2" else 2)
    assert all("success" in p for p in result["curve"])


def test_mean_ci_is_the_pooled_mean_with_a_bracketing_interval():
    from adaptrl.evaluation.metaworld import mean_ci

    rng = np.random.default_rng(0)
    seeds = [rng.binomial(1, 0.3, 40).astype(float), rng.binomial(1, 0.6, 30).astype(float)]
    mean, low, high = mean_ci(seeds)
    assert mean == pytest.approx(np.concatenate(seeds).mean())
    assert low < mean < high and high - low < 0.4
    assert mean_ci([np.ones(5), np.ones(3)]) == (1.0, 1.0, 1.0)
