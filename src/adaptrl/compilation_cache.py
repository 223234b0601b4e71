"""JAX's persistent compilation cache for the command line.

Compiling a meta-iteration takes 10-80 s on a small CPU; XLA's executables are kept on disk
so that the next command with the same program (the demo run again, ``eval`` after ``train``,
``--resume``) loads them in about a second. The cache lives in ``$ADAPTRL_CACHE_DIR`` or
``$XDG_CACHE_HOME/adaptrl/jax`` (default ``~/.cache/adaptrl/jax``); ``ADAPTRL_CACHE_DIR=off``
disables it. A cached executable computes exactly what a fresh compilation does, so runs stay
reproducible. The library itself never turns it on: that is the application's choice.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "ADAPTRL_CACHE_DIR"


def cache_dir() -> Path | None:
    """Where compiled programs are kept, or ``None`` when disabled."""
    raw = os.environ.get(ENV, "").strip()
    if raw.lower() in ("off", "0", "none", "false"):
        return None
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "adaptrl" / "jax"


def enable() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (no-op when disabled or
    when the directory cannot be created)."""
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    # cache every program, also the dozens of tiny ones that initialising Flax parameters
    # compiles op by op (the default keeps only those over 1 s): about 1.2 s of CPU less
    # per warm start of a command (docs/results/test_suite_time.md)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
