"""Ray rollout workers on a real 2-node cluster on this machine: the same trajectories as
the local sampler; an unreachable address is one line.

The cluster is the session fixture ``cluster`` of tests/conftest.py (see
tests/ray_cluster.py), shared with tests/test_advisor_ray.py."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest
from host_envs import PointGoals
from ray_cluster import free_port

from adaptrl import policies, runs
from adaptrl.errors import UserError
from adaptrl.sampling import SamplerSettings
from adaptrl.sampling.host import HostSampler

ray = pytest.importorskip("ray")


@pytest.mark.xdist_group("ray")  # the tests that use the Ray cluster share one xdist worker
def test_ray_workers_give_the_local_trajectories(cluster):
    family = PointGoals()
    policy = policies.policy_for(family.observation_space, family.action_space, hidden=(8,))
    params = policy.init(key=jax.random.PRNGKey(0))
    tasks = family.tasks("test", 4)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    out = []
    for settings in (SamplerSettings(workers=2), SamplerSettings(workers=2, ray=cluster)):
        sampler = HostSampler(family, settings)
        try:
            out.append(sampler.episodes(policy, params, tasks, keys=keys, num=3,
                                        per_task=False))
        finally:
            sampler.close()
    jax.tree.map(np.testing.assert_array_equal, out[0], out[1])
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}, nodes


def test_unreachable_ray_address_is_one_line(capsys):
    from adaptrl.cli import main

    port = free_port()  # nothing listens there
    config = runs.resolve("rl2", "host_envs:PointGoals", sets=[
        f"sampler.ray=127.0.0.1:{port}", "algo.trials_per_iteration=2", "algo.minibatches=1"])
    algorithm = config.algorithm()
    with pytest.raises(UserError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        algorithm.update(algorithm.init(key=jax.random.PRNGKey(0)))
    assert main(["train", "rl2", "--tasks", "host_envs:PointGoals", "--iterations", "1",
                 "--set", f"sampler.ray=127.0.0.1:{port}", "--out",
                 str(Path(os.environ.get("TMPDIR", "/tmp")) / f"ray-unreachable-{port}")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach a Ray cluster" in err
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"ray-unreachable-{port}"))
