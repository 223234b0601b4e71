"""Ray rollout workers: the host sampler's workers as Ray actors on an existing cluster.

``--set sampler.ray=HOST:PORT`` (the address ``ray start --head`` prints) makes the host
sampler create its workers as actors on that cluster instead of local processes. Each
actor runs the same :class:`~adaptrl.sampling.host.WorkerCore` as a local worker and
receives the same seeds and actions, so the trajectories equal those of the local sampler.
The actors see the driver's ``sys.path`` (through ``PYTHONPATH``), so a user's family
module resolves on a cluster whose nodes share the driver's file system.

Ray is an optional extra: ``pip install "adaptrl[ray]"``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from adaptrl.errors import UserError
from adaptrl.sampling.workers import SamplerError, WorkerCore, worker_environment
from adaptrl.tasks.base import HostFamily


def check_reachable(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"sampler.ray must be HOST:PORT of a running Ray cluster, got "
                        f"{address[:80]!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as e:
        raise UserError(f"cannot reach a Ray cluster at {address} "
                        f"({e.strerror or type(e).__name__})") from None
    return host, int(port)


class _Actor:
    def __init__(self, family: HostFamily):
        self.core = WorkerCore(family)

    def call(self, command: str, payload: tuple):
        return self.core.call(command, payload)


class RayPool:
    """``n`` Ray actors, each a worker of the host sampler."""

    def __init__(self, family: HostFamily, n: int, address: str, timeout: float):
        try:
            import ray
        except ImportError:
            raise UserError("sampler.ray needs Ray: pip install 'adaptrl[ray]'") from None
        check_reachable(address)
        self.ray, self.timeout = ray, timeout
        if not ray.is_initialized():
            path = os.pathsep.join(p for p in sys.path if p)
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": path,
                                                      **worker_environment()}})
            except Exception as e:  # noqa: BLE001 - Ray raises several types here
                raise UserError(f"cannot connect to the Ray cluster at {address} "
                                f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"
                                ) from None
        remote: Any = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self.actors: list[Any] = [remote.remote(family) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.actors)

    def send(self, calls: list[tuple[str, tuple]], describe) -> list[Any]:
        """Start ``calls[i]`` on actor ``i``; :meth:`receive` waits for the replies (an
        actor runs its calls in the order they were made)."""
        return [a.call.remote(*call) for a, call in zip(self.actors, calls, strict=False)]

    def receive(self, sent: list[Any], n: int, describe, steps: int = 1) -> list[Any]:
        """The replies to :meth:`send`; an actor is hung when a collection of ``steps``
        steps takes longer than ``steps`` times the timeout (actors send no heartbeat)."""
        ray = self.ray
        replies = []
        for w, ref in enumerate(sent[:n]):
            try:
                replies.append(ray.get(ref, timeout=self.timeout * steps))
            except ray.exceptions.GetTimeoutError:
                raise SamplerError(f"{describe(w)}: its Ray actor did not answer within "
                                   f"{self.timeout * steps:g} s") from None
            except ray.exceptions.RayError as e:
                raise SamplerError(f"{describe(w)}: its Ray actor failed "
                                   f"({type(e).__name__})") from None
        return replies

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
