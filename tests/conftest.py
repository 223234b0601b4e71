import os

# Tests run on the CPU with deterministic, single-process JAX.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# the CLI's persistent compilation cache: shared by this session's tests and their
# subprocesses, never the user's own (~/.cache/adaptrl)
if "ADAPTRL_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["ADAPTRL_CACHE_DIR"] = tempfile.mkdtemp(prefix="adaptrl-test-cache-")

# the results store that finished runs and meta-tests are recorded in: this session's own
if "ADAPTRL_STORE" not in os.environ:
    import tempfile

    os.environ["ADAPTRL_STORE"] = os.path.join(
        tempfile.mkdtemp(prefix="adaptrl-test-store-"), "results.sqlite")
