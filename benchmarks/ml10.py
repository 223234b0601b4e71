"""MAML-TRPO and RL² on Meta-World ML10 with Meta-World's protocol: meta-train on its 10
training task types, meta-test success on its 5 held-out types, over many sittings.

MAML-TRPO: ``--meta-batch`` training tasks (drawn uniformly from the 10 types x 50 goals)
x ``--episodes`` episodes before and after one inner step (lr 0.1), TRPO (KL 0.01), MLP
100x100. RL²: GRU 128, PPO over ``--meta-batch`` trials of ``--trial-episodes`` episodes.
Horizon ``--horizon`` (Meta-World v3's own: 500). Scored by ``adaptrl eval --protocol
metaworld`` on ``--eval-tasks`` held-out tasks (cycling through the 5 held-out types):
MAML after one step, RL² on 3 episodes after 2 adaptation episodes of the trial. Every
sitting appends the success of the newest checkpoint to runs/bench-ml10/history.json, so
the results file holds the curve per checkpoint. Target (Yu et al. 2019, MAML on ML10,
v1): 36% meta-test success.

    MUJOCO_GL=egl python benchmarks/ml10.py --seeds 2 --budget-minutes 120
"""

from __future__ import annotations

import argparse
import os

from _long_runs import steps_per_iteration, train_in_turns
from _metaworld_common import score_and_write

from adaptrl import runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--iterations", type=int, default=2000, help="target meta-iterations")
    p.add_argument("--budget-minutes", type=float, default=60.0)
    p.add_argument("--chunk", type=int, default=2)
    p.add_argument("--meta-batch", type=int, default=10)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--trial-episodes", type=int, default=5)
    p.add_argument("--horizon", type=int, default=150)
    p.add_argument("--eval-tasks", type=int, default=50)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--algos", nargs="+", default=["maml-trpo", "rl2"])
    args = p.parse_args()
    common = [f"sampler.workers={args.workers}", "checkpoint_every=1",
              f"tasks.horizon={args.horizon}"]
    algo_sets = {
        "maml-trpo": [f"algo.meta_batch_size={args.meta_batch}",
                      f"algo.episodes_per_task={args.episodes}",
                      f"algo.fisher_tasks={args.meta_batch}", "algo.hidden=[100,100]",
                      "algo.eval_episodes=3"],
        "rl2": [f"algo.trials_per_iteration={args.meta_batch}",
                f"algo.trial_episodes={args.trial_episodes}", "algo.minibatches=2"]}
    configs = {a: [runs.resolve(a, "ml10", sets=[*common, *algo_sets[a]],
                                overrides={"iterations": args.iterations, "seed": s})
                   for s in range(args.seeds)] for a in args.algos}
    dirs, ledger = train_in_turns("ml10", [c for a in args.algos for c in configs[a]],
                                  chunk=args.chunk, minutes=args.budget_minutes)
    groups = {a: [d for d in dirs if d.name.startswith(f"{a}-seed")] for a in args.algos}
    score_and_write(
        "ml10", "MAML-TRPO and RL² on Meta-World ML10", groups,
        targets=dict.fromkeys(args.algos, args.iterations), ledger=ledger,
        adapt={"maml-trpo": 1, "rl2": 2}, num_tasks=args.eval_tasks, notes=[
            *[f"{a}: {steps_per_iteration(configs[a][0]):,} env steps per meta-iteration; "
              + ", ".join(s.removeprefix("algo.") for s in algo_sets[a]) for a in args.algos],
            f"horizon {args.horizon}; host sampler, {args.workers} worker processes; "
            f"{args.seeds} seeds each; {args.eval_tasks} held-out tasks (5 types x "
            f"{args.eval_tasks // 5} goals); MAML scored after 1 gradient step on 3 "
            "episodes, RL² on episodes 3-5 of a trial",
            "target: 36% meta-test success (Yu et al. 2019, MAML, ML10, v1 environments)"],
        published=[
            "Yu et al. 2019, Meta-World (arXiv 1910.10897), v1 environments: MAML on ML10, "
            "meta-train success 25%, meta-test success 36% (the paper's results as listed "
            "on paperswithcode.com/paper/meta-world-a-benchmark-and-evaluation-for); its "
            "RL² and PEARL rows we could not read in the stored copies, so they are left "
            "out",
            "Atamuradov 2025 (arXiv 2511.12383), MAML-TRPO on ML10 (Meta-World v2/v3 era): "
            "13.2% meta-test, 21.0% meta-train success"],
        family=configs[args.algos[0]][0].task_options)


if __name__ == "__main__":
    main()
