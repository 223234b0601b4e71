"""Shared helpers of the benchmark scripts: timing runs, machine description, tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}), JAX {jax.__version__} on "
            f"{jax.default_backend()}, Python {platform.python_version()}")


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def open_run(run_dir: Path, config, *, reuse: bool) -> bool:
    """Create the benchmark's run in ``run_dir``, or with ``reuse`` continue the one kept
    there (extended to ``config``'s iterations; exact resume gives the same numbers).
    Returns whether training resumes."""
    from adaptrl import runs

    resume = reuse and (run_dir / runs.CONFIG_FILE).exists()
    if resume:
        if runs.extend_run(run_dir, config.run.iterations).identity() != config.identity():
            raise SystemExit(f"{run_dir} holds a different run; drop --reuse")
    else:
        runs.create_run(run_dir, config)
    return resume


class IterationTimer:
    """``on_iteration`` callback for :func:`adaptrl.runs.train` that records wall time per
    meta-iteration; the first iteration (compilation) is reported separately."""

    def __init__(self) -> None:
        self.stamps = [time.perf_counter()]

    def __call__(self, done, total, row) -> None:
        self.stamps.append(time.perf_counter())

    @property
    def first(self) -> float:
        """The first iteration's wall time (NaN when a reused run trained none here)."""
        return self.stamps[1] - self.stamps[0] if len(self.stamps) > 1 else float("nan")

    @property
    def steady(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps[1:], self.stamps[2:], strict=False)]

    def median(self) -> float:
        return statistics.median(self.steady) if self.steady else float("nan")
