import os
import tempfile

import pytest

# Tests run on the CPU with deterministic, single-process JAX.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# the CLI's persistent compilation cache: shared by this session's tests and their
# subprocesses, never the user's own (~/.cache/adaptrl)
if "ADAPTRL_CACHE_DIR" not in os.environ:
    os.environ["ADAPTRL_CACHE_DIR"] = tempfile.mkdtemp(prefix="adaptrl-test-cache-")

# ... and by the test processes themselves: a program that several tests compile (the same
# tiny run trained in-process again, by another test or another pytest-xdist worker) is
# compiled once and loaded from disk after that; a cached executable computes exactly what
# a fresh compilation does
from adaptrl import compilation_cache  # noqa: E402 - after JAX_PLATFORMS

compilation_cache.enable()

# the results store that finished runs and meta-tests are recorded in: this session's own
if "ADAPTRL_STORE" not in os.environ:
    os.environ["ADAPTRL_STORE"] = os.path.join(
        tempfile.mkdtemp(prefix="adaptrl-test-store-"), "results.sqlite")


@pytest.fixture(scope="session")
def _loopback_cluster(tmp_path_factory):
    pytest.importorskip("ray")
    from ray_cluster import loopback_cluster

    yield from loopback_cluster(tmp_path_factory)


@pytest.fixture
def cluster(_loopback_cluster):
    """The address of a real 2-node Ray cluster on loopback (tests/ray_cluster.py), started
    once for all the Ray tests: they share one pytest-xdist worker (``xdist_group("ray")``).
    Each test's own connection to it ends with the test."""
    import ray

    yield _loopback_cluster
    if ray.is_initialized():
        ray.shutdown()
