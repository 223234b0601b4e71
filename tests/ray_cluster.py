"""A real 2-node Ray cluster on this machine, on loopback only, for the Ray tests
(tests/test_ray_sampler.py, tests/test_advisor_ray.py): the session fixture ``cluster`` of
tests/conftest.py starts it once for both.

It starts with ``ray start --head --node-ip-address=127.0.0.1`` and a second
``ray start --address=127.0.0.1:PORT --node-ip-address=127.0.0.1``, both with ``--block``
so that ending those two processes stops every Ray process they started.

Loopback only. Ray on Linux replaces a loopback node or cluster address with the machine's
interface address (``ray._private.services.resolve_ip_for_localhost`` asks
``node_ip_address_from_perspective``), so the cluster's traffic would leave 127.0.0.1. The
cluster keeps every process on 127.0.0.1: its processes start with a ``sitecustomize`` on
``PYTHONPATH`` that answers 127.0.0.1 there, the test process patches the same function,
and tests/test_ray_sampler.py asserts that both nodes registered as 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def free_port() -> int:
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
try:  # keep this Ray process's own address on loopback (see tests/ray_cluster.py)
    import ray._private.services as _services

    _services.node_ip_address_from_perspective = lambda *args, **kwargs: "127.0.0.1"
except Exception:
    pass
"""


def loopback_cluster(tmp_path_factory) -> Iterator[str]:
    """Start the cluster, yield its address, then stop every process it started."""
    import ray
    from ray._private import services

    site = tmp_path_factory.mktemp("loopback")
    (site / "sitecustomize.py").write_text(LOOPBACK_ONLY)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    patched = services.node_ip_address_from_perspective
    services.node_ip_address_from_perspective = lambda *args, **kwargs: "127.0.0.1"
    port = free_port()
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
