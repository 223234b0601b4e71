"""Start-up time of the commands that do not compute: ``adaptrl tasks``, ``adaptrl algos``
and ``adaptrl --help``, the median wall time over ``--runs`` fresh processes each (after one
warm-up round that fills the file cache). Each process runs what the ``adaptrl`` console
script runs (``from adaptrl.cli import main``), so it measures the imports a user waits for.

With ``--baseline REV`` the same commands also run against the ``src/`` of that git
revision (exported to a temporary folder), interleaved with the current tree's, so that
both see the same load: a before/after comparison from one run on one machine. Prints a
markdown report and writes it to docs/results/startup.md.

    python benchmarks/startup.py --runs 15 --baseline 4f207dc
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, command, git_commit, machine

COMMANDS = (["tasks"], ["algos"], ["--help"])
ENTRY = "import sys; from adaptrl.cli import main; sys.exit(main())"


def export(rev: str, into: Path) -> Path:
    """The ``src/`` folder of git revision ``rev``, written below ``into``."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def wall_time(src: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(src), JAX_PLATFORMS="cpu")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(trees: dict[str, Path], runs: int) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(runs + 1):
        for name, src in trees.items():
            for args in COMMANDS:
                t = wall_time(src, args)
                if round_:  # round 0 warms the file cache
                    times.setdefault((name, " ".join(args)), []).append(t)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--baseline", metavar="REV", help="also time this git revision's src/")
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {f"this tree ({git_commit()})": ROOT / "src"}
        if args.baseline:
            trees = {f"before ({args.baseline})": export(args.baseline, Path(tmp)), **trees}
        times = measure(trees, args.runs)
    load_after = os.getloadavg()[0]
    lines = [
        "# Start-up time of commands that do not compute", "",
        f"- command: `{command()}`",
        f"- machine: {machine()}",
        f"- 1-minute load average before/after: {load_before:.2f} / {load_after:.2f}"
        + (" (the machine was loaded: other processes share its cores)"
           if max(load_before, load_after) > 0.5 else ""),
        f"- each figure: median wall time of {args.runs} fresh processes (min-max), after one "
        "warm-up round; the process runs what the `adaptrl` script runs", "",
        "| tree | " + " | ".join(f"`adaptrl {' '.join(c)}`" for c in COMMANDS) + " |",
        "|---" * (len(COMMANDS) + 1) + "|",
    ]
    for name in trees:
        cells = []
        for c in COMMANDS:
            t = times[(name, " ".join(c))]
            cells.append(f"{statistics.median(t):.3f} s ({min(t):.2f}-{max(t):.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.md").write_text(text)


if __name__ == "__main__":
    main()
