import os
import tempfile

import pytest

# Tests run on the CPU with deterministic, single-process JAX.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The suite's programs are tiny and most of its time is XLA compiling them (a clean clone
# starts with an empty compilation cache): compile without LLVM's optimisation passes. The
# test processes read this when JAX starts its backend, and every subprocess they start
# (CLI runs, sampler workers, the Ray cluster) inherits it. Results differ from the default
# build only in float32 rounding; same-seed tests compare runs made under the same flags.
# Measured on test_cli's train_then_eval_json plus one SIGKILL-resume test, cold cache, two
# alternating rounds: 111 and 114 s of CPU without, 92 and 91 s with
# (--xla_llvm_disable_expensive_passes saved nothing: 116 and 112 s).
XLA_TEST_FLAGS = "--xla_backend_optimization_level=0"
if XLA_TEST_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_TEST_FLAGS}".strip()

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
