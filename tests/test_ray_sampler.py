"""Ray rollout workers on a real 2-node cluster on this machine: the same trajectories as
the local sampler; an unreachable address is one line.

The test starts the cluster with ``ray start --head --node-ip-address=127.0.0.1`` and a
second ``ray start --address=127.0.0.1:PORT --node-ip-address=127.0.0.1``, both with
``--block`` so that ending those two processes stops every Ray process they started.

Loopback only. Ray on Linux replaces a loopback node or cluster address with the machine's
interface address (``ray._private.services.resolve_ip_for_localhost`` asks
``node_ip_address_from_perspective``), so the cluster's traffic would leave 127.0.0.1. The
test keeps every process on 127.0.0.1: the cluster's processes start with a
``sitecustomize`` on ``PYTHONPATH`` that answers 127.0.0.1 there, the test process patches
the same function, and the test asserts that both nodes registered as 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from host_envs import PointGoals

from adaptrl import policies, runs
from adaptrl.errors import UserError
from adaptrl.sampling import SamplerSettings
from adaptrl.sampling.host import HostSampler

ray = pytest.importorskip("ray")
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes_alive(address: str, want: int, deadline: float, env: dict[str, str]) -> None:
    code = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
            f"import sys; sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= {want} else 1)")
    while time.time() < deadline:
        if subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                          timeout=120).returncode == 0:
            return
        time.sleep(2)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {want} nodes")


#: imported first by every Python process of the test cluster (Ray's CLI, raylet workers)
LOOPBACK_ONLY = """\
try:  # keep this Ray process's own address on loopback (see tests/test_ray_sampler.py)
    import ray._private.services as _services

    _services.node_ip_address_from_perspective = lambda *args, **kwargs: "127.0.0.1"
except Exception:
    pass
"""


#: every test that starts a Ray cluster runs in the same test process (pytest-xdist)
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray._private import services

    site = tmp_path_factory.mktemp("loopback")
    (site / "sitecustomize.py").write_text(LOOPBACK_ONLY)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    patched = services.node_ip_address_from_perspective
    services.node_ip_address_from_perspective = lambda *args, **kwargs: "127.0.0.1"
    port = _free_port()
    address = f"127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("ray")
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    procs = []
    try:
        procs.append(subprocess.Popen(
            [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--include-dashboard=false", *common],
            stdout=open(logs / "head.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True, env=env))
        _nodes_alive(address, 1, time.time() + 120, env)
        procs.append(subprocess.Popen(
            [RAY, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common],
            stdout=open(logs / "node.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True, env=env))
        _nodes_alive(address, 2, time.time() + 120, env)
        yield address
    finally:
        services.node_ip_address_from_perspective = patched
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(procs):  # --block: SIGTERM stops what each one started
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


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

    port = _free_port()  # nothing listens there
    config = runs.resolve("rl2", "host_envs:PointGoals", sets=[
        f"sampler.ray=127.0.0.1:{port}", "algo.trials_per_iteration=2", "algo.minibatches=1"])
    with pytest.raises(UserError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        config.algorithm().update(config.algorithm().init(key=jax.random.PRNGKey(0)))
    assert main(["train", "rl2", "--tasks", "host_envs:PointGoals", "--iterations", "1",
                 "--set", f"sampler.ray=127.0.0.1:{port}", "--out",
                 str(Path(os.environ.get("TMPDIR", "/tmp")) / f"ray-unreachable-{port}")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach a Ray cluster" in err
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"ray-unreachable-{port}"))
