"""Score an `adaptrl train rl2` run directory on the RL² benchmarks' held-out tasks.

The newest checkpoint (or ``--iteration``) is evaluated exactly as benchmarks/rl2_mdp.py and
rl2_bandits.py evaluate their kept states: the family's first ``--test-tasks`` meta-test
tasks, one trial of ``--episodes`` episodes each, the evaluation key of seed 0. This is how
the long CLI runs in the RL² results files' notes are scored, e.g.

    .venv/bin/python benchmarks/rl2_score_run.py runs/mdp-long
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _rl2_common import HEADER, rl2_returns, row

from adaptrl import runs
from adaptrl.errors import UserError


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--iteration", type=int, default=None, help="a kept checkpoint; default newest")
    p.add_argument("--episodes", type=int, default=10, help="episodes per trial (n)")
    p.add_argument("--test-tasks", type=int, default=1000)
    args = p.parse_args()
    try:  # a missing or corrupt run is the user's: one line, exit status 2
        config = runs.load_run(args.run_dir)
        if config.algo != "rl2":
            raise UserError(f"{args.run_dir}: a run of {config.algo}, not rl2")
        algo, state = runs.load_trained(args.run_dir, config, args.iteration)
    except UserError as e:
        p.error(str(e))
    tasks = algo.family.tasks("test", args.test_tasks)
    returns = rl2_returns(algo, state, tasks, args.episodes, seed=0)
    totals = returns.sum(-1)
    print(f"{args.run_dir}: {config.tasks}, iteration {int(state['iteration'])}, "
          f"{args.test_tasks} held-out tasks, {args.episodes} episodes per trial")
    print(HEADER)
    print(row("RL² (this run)", [totals])[0])
    print("mean return per episode:", " ".join(f"{m:.2f}" for m in returns.mean(0)))


if __name__ == "__main__":
    main()
