"""The host sampler: Gymnasium environments in worker processes give the same arrays as the
jitted sampler, handle autoreset explicitly, are deterministic for any number of workers,
and report failures in one line naming the task."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from host_envs import BadKwarg, PointGoals, Ticks

from adaptrl import policies, runs
from adaptrl.errors import UserError
from adaptrl.sampling import JaxSampler, SamplerSettings
from adaptrl.sampling import trials as trial_rules
from adaptrl.sampling.host import HostSampler, SamplerError
from adaptrl.tasks import make_family
from adaptrl.tasks.check import check_family


@pytest.fixture(scope="module")
def point_pair():
    """The JAX-native point-nav family and the same dynamics as a Gymnasium environment,
    with the same tasks."""
    jax_family = make_family("point-nav", {"horizon": 6})
    host_family = PointGoals()
    goals = jax_family.tasks("test", 3)["goal"]
    host_tasks = {"goal_x": goals[:, 0], "goal_y": goals[:, 1]}
    sampler = HostSampler(host_family, SamplerSettings(workers=2))
    yield jax_family, host_family, {"goal": goals}, host_tasks, sampler
    sampler.close()


def test_host_episodes_equal_the_jitted_sampler(point_pair):
    jax_family, host_family, jax_tasks, host_tasks, sampler = point_pair
    policy = policies.policy_for(host_family.observation_space, host_family.action_space,
                                 hidden=(8,))
    params = policy.init(key=jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    want = JaxSampler(jax_family).episodes(policy, params, jax_tasks, keys=keys, num=4,
                                           per_task=False)
    got = sampler.episodes(policy, params, host_tasks, keys=keys, num=4, per_task=False)
    for name in want._fields:
        np.testing.assert_allclose(np.asarray(getattr(got, name), np.float64),
                                   np.asarray(getattr(want, name), np.float64),
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    # per-task parameters: task i's episodes follow params[i]
    batched = jax.tree.map(lambda x: jnp.stack([x, x + 0.1, x - 0.1]), params)
    want = JaxSampler(jax_family).episodes(policy, batched, jax_tasks, keys=keys, num=2)
    got = sampler.episodes(policy, batched, host_tasks, keys=keys, num=2)
    np.testing.assert_allclose(got.action, want.action, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.reward, want.reward, rtol=1e-5, atol=1e-5)


def test_host_trials_equal_the_jitted_sampler(point_pair):
    jax_family, host_family, jax_tasks, host_tasks, sampler = point_pair
    space = host_family.action_space
    policy = policies.RecurrentPolicy(trial_rules.input_dim(host_family),
                                      trial_rules.action_encoding_dim(space), False, hidden=8)
    params = policy.init(key=jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    want = JaxSampler(jax_family).trials(policy, params, jax_tasks, keys=keys, episodes=3)
    got = sampler.trials(policy, params, host_tasks, keys=keys, episodes=3)
    for name in want._fields:
        np.testing.assert_allclose(np.asarray(getattr(got, name), np.float64),
                                   np.asarray(getattr(want, name), np.float64),
                                   rtol=1e-4, atol=1e-5, err_msg=name)


def _discrete_policy():
    return policies.policy_for(Ticks().observation_space, Ticks().action_space, hidden=(4,))


def test_autoreset_is_explicit_and_finished_episodes_are_frozen():
    """An episode that terminates early is masked from then on, takes no simulator step,
    and Gymnasium's automatic reset never starts a stray episode."""
    family = Ticks(horizon=5, stop=(2.0, 2.0), scale=(1.0, 1.0))
    sampler = HostSampler(family, SamplerSettings(workers=1))
    try:
        policy = _discrete_policy()
        params = policy.init(key=jax.random.PRNGKey(0))
        tasks = family.tasks("test", 2)
        tr = sampler.episodes(policy, params, tasks, keys=jax.random.split(
            jax.random.PRNGKey(0), 2), num=3, per_task=False)
        np.testing.assert_array_equal(tr.mask[0, 0], [1, 1, 0, 0, 0])
        np.testing.assert_array_equal(tr.done[0, 0], [False, True, True, True, True])
        # reward = 10 * scale + step index + action, zero once finished
        np.testing.assert_allclose(tr.reward[..., :2], 10 + np.arange(2) + tr.action[..., :2])
        assert np.all(np.asarray(tr.reward[..., 2:]) == 0)
        # frozen steps keep the last observation and never step the simulator
        np.testing.assert_array_equal(tr.obs[0, 0, 2:, 0], [2, 2, 2])
        np.testing.assert_array_equal(sampler.simulator_steps(), np.full(6, 2))
        # an RL² trial restarts each episode on schedule with its own seeded reset
        rp = policies.RecurrentPolicy(trial_rules.input_dim(family), 2, True, hidden=4)
        trial = sampler.trials(rp, rp.init(key=jax.random.PRNGKey(0)), tasks,
                               keys=jax.random.split(jax.random.PRNGKey(3), 2), episodes=2)
        np.testing.assert_array_equal(trial.mask[0], [1, 1, 0, 0, 0, 1, 1, 0, 0, 0])
        np.testing.assert_array_equal(trial.done[0], [0, 1, 0, 0, 0, 0, 1, 0, 0, 0])
        obs = np.asarray(trial.inputs[0, :, :2])
        assert obs[0, 0] == 0 and obs[5, 0] == 0  # each episode starts from a reset
        assert obs[0, 1] != obs[5, 1]  # ... with a different seed
    finally:
        sampler.close()


def test_same_seed_same_trajectories_for_any_number_of_workers(point_pair):
    """Seeds, action noise and the policy's arithmetic follow the keys and the slots, not
    the workers: 1 or 2 workers (each really stepping part of the slots), two runs, the
    same arrays bit for bit — shared and per-task parameters, episodes and trials; other
    keys, other arrays."""
    _, family, _, tasks, two_workers = point_pair
    policy = policies.policy_for(family.observation_space, family.action_space, hidden=(4,))
    params = policy.init(key=jax.random.PRNGKey(0))
    batched = jax.tree.map(lambda x: jnp.stack([x, x + 0.1, x - 0.1]), params)
    rp = policies.RecurrentPolicy(trial_rules.input_dim(family),
                                  trial_rules.action_encoding_dim(family.action_space),
                                  False, hidden=4)
    rparams = rp.init(key=jax.random.PRNGKey(0))
    many = jax.tree.map(lambda x: jnp.tile(x, 7)[:20], tasks)  # 20 trials: two chunks
    keys = jax.random.split(jax.random.PRNGKey(5), 3)

    def collect(sampler, keys=keys):
        return (sampler.episodes(policy, params, tasks, keys=keys, num=12, per_task=False),
                sampler.episodes(policy, batched, tasks, keys=keys, num=12),
                sampler.trials(rp, rparams, many, keys=jax.random.split(keys[0], 20),
                               episodes=2))

    one_worker = HostSampler(family, SamplerSettings(workers=1))
    try:
        out = [collect(one_worker), collect(two_workers)]
        assert len(two_workers._pool) == 2  # 36 slots are 3 chunks: both workers step
        out.append(collect(two_workers))
    finally:
        one_worker.close()
    for other in out[1:]:
        jax.tree.map(np.testing.assert_array_equal, out[0], other)
    different = collect(two_workers, jax.random.split(jax.random.PRNGKey(6), 3))
    assert not np.array_equal(different[0].action, out[0][0].action)


def _collect_one(family, workers=2):
    sampler = HostSampler(family, SamplerSettings(workers=workers))
    policy = _discrete_policy()
    try:
        sampler.episodes(policy, policy.init(key=jax.random.PRNGKey(0)), family.tasks(
            "test", 2), keys=jax.random.split(jax.random.PRNGKey(0), 2), num=1,
            per_task=False)
    finally:
        sampler.close()


def test_an_environment_that_raises_is_one_line_naming_the_task():
    with pytest.raises(SamplerError) as e:
        _collect_one(Ticks(boom=(1.0, 1.0), scale=(0.25, 0.25)))
    msg = str(e.value)
    assert "\n" not in msg and "task 0 (" in msg and "scale=0.25" in msg
    assert "RuntimeError: the simulator exploded" in msg


def test_a_non_finite_reward_is_one_line_naming_the_task():
    # 100 * 1e37 overflows float32: the batch the sampler would learn from is not finite
    with pytest.raises(SamplerError, match=r"^task 0 \(.*\): step returned a non-finite "
                                           r"observation or reward$"):
        _collect_one(Ticks(bonus=(1e37, 1e37)))


def test_a_worker_that_dies_is_one_line_naming_its_tasks():
    # both slots are one policy chunk, so one worker steps both tasks
    with pytest.raises(SamplerError, match=r"worker 0 stepping tasks 0-1: its worker process "
                                           r"died \(exit code 3\)"):
        _collect_one(Ticks(crash=(1.0, 1.0)))


def test_bad_input_is_one_line(capsys):
    from adaptrl.cli import main

    with pytest.raises(UserError, match="unknown Gymnasium environment 'NoSuchEnv-v9'"):
        PointGoals(env_id="NoSuchEnv-v9")
    with pytest.raises(UserError, match="does not accept the task parameters"):
        BadKwarg()
    assert check_family(PointGoals()) == [] and check_family(Ticks()) == []
    for argv, needle in [
        (["--tasks", "host_envs:PointGoals", "--set", "tasks.env_id=NoSuchEnv-v9"],
         "unknown Gymnasium environment 'NoSuchEnv-v9'"),
        (["--tasks", "host_envs:BadKwarg"], "adaptrl-test/Point-v0 does not accept the task "
                                             "parameters ['wind']"),
        (["--tasks", "host_envs:PointGoals", "--set", "tasks.goal_x=[1,0]"],
         "goal_x must be a range [low, high] with low <= high"),
    ]:
        assert main(["train", "maml-trpo", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


@pytest.mark.parametrize("algo,sets", [
    ("maml-trpo", ["algo.meta_batch_size=2", "algo.episodes_per_task=2", "algo.hidden=[8]",
                   "algo.eval_episodes=2", "algo.inner_steps=2"]),
    ("maml-ppo", ["algo.meta_batch_size=2", "algo.episodes_per_task=2", "algo.hidden=[8]",
                  "algo.ppo_epochs=2", "algo.baseline=learned"]),
    ("rl2", ["algo.trials_per_iteration=4", "algo.trial_episodes=2", "algo.hidden=8",
             "algo.minibatches=2", "algo.ppo_epochs=1"]),
    ("task-embedding", ["algo.meta_batch_size=2", "algo.hidden=[8]", "algo.encoder_hidden=[8]",
                        "algo.trial_episodes=2", "algo.ppo_epochs=1", "algo.eval_trials=1"]),
])
def test_one_small_iteration_on_a_host_family(algo, sets):
    config = runs.resolve(algo, "host_envs:PointGoals",
                          sets=[*sets, "sampler.workers=2", "tasks.horizon=4"])
    alg = config.algorithm()
    assert not alg.jittable
    state = alg.init(key=jax.random.PRNGKey(0))
    try:
        new, metrics = alg.update(state)
        assert int(new["iteration"]) == 1
        assert all(np.isfinite(float(v)) for v in metrics.values())
        curve = alg.adaptation_curve(new, config.task_options.tasks("test", 2),
                                     key=jax.random.PRNGKey(1), steps=1)
        assert curve["return"].shape == (2, 2) and curve["success"].shape == (2, 2)
    finally:
        alg.sampler.close()


def test_sampler_settings_are_run_config_but_not_identity():
    config = runs.resolve("rl2", "host_envs:PointGoals", sets=["sampler.workers=3"])
    assert config.sampler == SamplerSettings(workers=3)
    again = runs.config_from_json(config.to_json(), source="config.json")
    assert again.sampler.workers == 3 and again.identity() == config.identity()
    other = runs.resolve("rl2", "host_envs:PointGoals", sets=["sampler.workers=1"])
    assert other.identity() == config.identity()  # where it steps is not what it samples
    with pytest.raises(UserError, match="unknown config key sampler.cores"):
        runs.resolve("rl2", "host_envs:PointGoals", sets=["sampler.cores=2"])
    with pytest.raises(UserError, match="sampler: workers must be between 0 and 1024"):
        runs.resolve("rl2", "host_envs:PointGoals", sets=["sampler.workers=-1"])
    # a run written before samplers existed still loads
    old = {k: v for k, v in config.to_json().items() if k != "sampler"}
    assert runs.config_from_json(old, source="old.json").sampler == SamplerSettings()


def test_policy_chunks_cover_every_slot_once_and_never_mix_parameters():
    from adaptrl.sampling.worker_rollouts import CHUNK, _layout, chunks

    assert chunks(3, 12, shared=True) == (16, [(0, 16), (0, 16), (0, 4)])
    assert chunks(2, 20, shared=False) == (10, [(0, 10), (0, 10), (1, 10), (1, 10)])
    assert chunks(2, 3, shared=False) == (3, [(0, 3), (1, 3)])
    for tasks, per_task, shared in [(5, 7, False), (4, 33, False), (9, 5, True)]:
        size, parts = chunks(tasks, per_task, shared)
        assert size <= CHUNK and sum(c for _, c in parts) == tasks * per_task
        if not shared:  # a chunk's slots are one task's: its parameters
            owner = np.repeat([t for t, _ in parts], [c for _, c in parts])
            np.testing.assert_array_equal(owner, np.repeat(np.arange(tasks), per_task))
        index, gather, real = _layout(size, parts)
        np.testing.assert_array_equal(gather[real], np.arange(tasks * per_task))
        assert len(index) == len(parts) and len(gather) == len(parts) * size
