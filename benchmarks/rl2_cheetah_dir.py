"""RL² on cheetah-dir beside MAML-TRPO on the same family and held-out tasks, over several
sittings.

RL²: trials of 2 episodes (horizon 200) of one direction, GRU 128, PPO; MAML-TRPO: the MAML
paper's setting (40 tasks x 20 episodes, inner lr 0.1). Both through the host sampler. The
table puts RL²'s return in episode 1 and 2 of a trial beside MAML's return after 0 and 1
gradient steps, with the environment steps and hours each spent in training. MAML's paper
reports about 0 before and 300 after one step (oracle about 400).

Each sitting trains all runs in turns for ``--budget-minutes``, the one furthest behind
first, and resumes exactly where the last one stopped (runs/bench-NAME/ALGO-seedS).

    MUJOCO_GL=egl python benchmarks/rl2_cheetah_dir.py --seeds 2 --budget-minutes 90
"""

from __future__ import annotations

import argparse
import os

from _long_runs import score_and_write, steps_per_iteration, train_in_turns

from adaptrl import runs

RL2_SETS = ["algo.trial_episodes=2", "algo.trials_per_iteration=40", "algo.hidden=128",
            "algo.minibatches=4", "algo.lr=3e-4"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--rl2-iterations", type=int, default=5000)
    p.add_argument("--maml-iterations", type=int, default=800)
    p.add_argument("--budget-minutes", type=float, default=60.0)
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--eval-tasks", type=int, default=40)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--set", action="append", default=[],
                   help="extra overrides for both (a smoke test: the command line records them)")
    p.add_argument("--name", default="rl2_cheetah_dir")
    args = p.parse_args()
    common = [f"sampler.workers={args.workers}", "checkpoint_every=2"]
    iterations = {"rl2": args.rl2_iterations, "maml-trpo": args.maml_iterations}
    extra = {"rl2": RL2_SETS, "maml-trpo": []}
    configs = {algo: [runs.resolve(algo, "cheetah-dir", sets=[*common, *extra[algo], *args.set],
                                   overrides={"iterations": iterations[algo], "seed": s})
                      for s in range(args.seeds)] for algo in iterations}
    dirs, ledger = train_in_turns(args.name, [c for cs in configs.values() for c in cs],
                                  chunk=args.chunk, minutes=args.budget_minutes)
    groups = {algo: [d for d in dirs if d.name.startswith(f"{algo}-seed")] for algo in configs}
    score_and_write(
        args.name, "RL² and MAML-TRPO on cheetah-dir", groups, targets=iterations,
        ledger=ledger, eval_tasks=args.eval_tasks, steps={"rl2": 1, "maml-trpo": 1}, notes=[
            f"RL²: {' '.join(RL2_SETS)} ({steps_per_iteration(configs['rl2'][0]):,} steps per "
            "iteration); MAML-TRPO: the paper's setting "
            f"({steps_per_iteration(configs['maml-trpo'][0]):,} steps per iteration); "
            f"{args.seeds} seeds each; host sampler, {args.workers} worker processes",
            "MAML paper (Fig. 5, approximate): about 0 before adaptation, 300 after one step"])


if __name__ == "__main__":
    main()
