"""Seconds per MAML-TRPO meta-iteration in the paper's point-nav setting.

40 tasks x 20 episodes x horizon 100 (80,000 environment steps sampled twice: before and
after adaptation), one second-order inner step, TRPO outer step with 10 conjugate-gradient
iterations. Times ``--iterations`` jitted meta-iterations after compilation and records the
machine's load average, since other processes on a 2-core machine distort the figure.
Writes docs/results/maml_point_nav_speed.md.

    python benchmarks/maml_speed.py --iterations 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
from common import RESULTS, command, git_commit, machine

from adaptrl import runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    config = runs.resolve("maml-trpo", "point-nav", sets=args.set)
    alg = config.algorithm()
    state = alg.init(key=jax.random.PRNGKey(0))
    step = jax.jit(alg.update)
    t0 = time.perf_counter()
    state, _ = step(state)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        state, metrics = step(state)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    load_after = os.getloadavg()[0]
    c = config.algo_options
    steps = 2 * c.meta_batch_size * c.episodes_per_task * config.task_options.horizon
    med = statistics.median(times)
    lines = [
        "# MAML-TRPO point-nav: seconds per meta-iteration", "",
        f"- command: `{command()}`", f"- machine: {machine()}", f"- commit: {git_commit()}",
        f"- setting: {c.meta_batch_size} tasks x {c.episodes_per_task} episodes x horizon "
        f"{config.task_options.horizon}, {c.inner_steps} inner step "
        f"({'first' if c.first_order else 'second'} order), TRPO with {c.cg_iters} CG "
        f"iterations, Fisher on {min(c.fisher_tasks, c.meta_batch_size)} tasks, MLP {c.hidden}",
        f"- 1-minute load average before/after: {load_before:.2f} / {load_after:.2f}", "",
        f"**median {med:.2f} s per meta-iteration** (min {min(times):.2f}, max "
        f"{max(times):.2f}, over {args.iterations} iterations; compilation + first "
        f"iteration {compile_s:.1f} s); {steps / med:,.0f} environment steps per second "
        "including adaptation and the meta-update.", "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "maml_point_nav_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
