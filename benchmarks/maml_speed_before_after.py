"""benchmarks/maml_speed.py on the code before the sampler seam (a git revision, default
``main``) and after it (this tree), alternating in one run on the same machine, so the
JAX-native path can be checked not to have become slower. Writes
docs/results/maml_speed_sampler_seam.md (and leaves maml_point_nav_speed.md as it was).

    python benchmarks/maml_speed_before_after.py --before main --iterations 10 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, command, git_commit, machine

SPEED = RESULTS / "maml_point_nav_speed.md"


def run(src: Path, iterations: int) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "maml_speed.py"),
                          "--iterations", str(iterations)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    median = float(re.search(r"median ([\d.]+) s", out).group(1))
    load = re.search(r"load average before/after: ([\d.]+ / [\d.]+)", out).group(1)
    return median, load


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--before", default="main")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    kept = SPEED.read_bytes() if SPEED.exists() else None
    rev = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", args.before, "src"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        try:
            for r in range(args.rounds):
                for name, src in (("before", Path(tmp) / "src"), ("after", ROOT / "src")):
                    median, load = run(src, args.iterations)
                    rows.append((r + 1, name, median, load))
                    print(rows[-1], flush=True)
        finally:
            if kept is not None:
                SPEED.write_bytes(kept)
    best = {n: min(m for _, name, m, _ in rows if name == n) for n in ("before", "after")}
    lines = [
        "# MAML-TRPO point-nav seconds per meta-iteration: before and after the sampler seam",
        "", f"- command: `{command()}`", f"- machine: {machine()}",
        f"- before: `{args.before}` ({rev}); after: this tree ({git_commit()})",
        f"- each entry: benchmarks/maml_speed.py --iterations {args.iterations} (median over "
        "its iterations), before and after alternating; 2 cores shared with other jobs, so "
        "the load average is given per entry", "",
        "| round | code | median s per meta-iteration | load average before / after |",
        "|---|---|---|---|",
        *[f"| {r} | {n} | {m:.2f} | {ld} |" for r, n, m, ld in rows], "",
        f"Best of the rounds: before {best['before']:.2f} s, after {best['after']:.2f} s "
        f"({100 * (best['after'] / best['before'] - 1):+.1f}%).", "",
    ]
    (RESULTS / "maml_speed_sampler_seam.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
