import os

# Tests run on the CPU with deterministic, single-process JAX.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
