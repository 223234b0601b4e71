"""MAML-TRPO on a DeepMind Control family (default dmc-cheetah-vel): held-out return
before and after adaptation, with CIs, over several sittings.

Each meta-iteration samples ``--meta-batch`` target speeds x ``--episodes`` episodes x
horizon 200 before and after one inner step (lr 0.1), TRPO outer step (KL 0.01), MLP
100x100, linear baseline; fresh tasks every iteration. Scored on 40 held-out tasks after
0-3 inner steps (the harness' adaptation curve: mean, IQM, 95% stratified-bootstrap CI).

Each sitting trains the seeds in turns for ``--budget-minutes``, resumes exactly where the
last one stopped (runs/bench-NAME/), and writes docs/results/NAME.{md,json,png}, PARTIAL
until every seed reached ``--iterations``.

    MUJOCO_GL=egl python benchmarks/dmc_families.py --family dmc-cheetah-vel --budget-minutes 60
"""

from __future__ import annotations

import argparse
import os

from _long_runs import score_and_write, steps_per_iteration, train_in_turns

from adaptrl import runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--family", default="dmc-cheetah-vel")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--budget-minutes", type=float, default=60.0)
    p.add_argument("--chunk", type=int, default=5)
    p.add_argument("--meta-batch", type=int, default=20)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--eval-tasks", type=int, default=40)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    name = f"dmc_families_{args.family.removeprefix('dmc-').replace('-', '_')}"
    sets = [f"sampler.workers={args.workers}", "checkpoint_every=1",
            f"algo.meta_batch_size={args.meta_batch}", f"algo.episodes_per_task={args.episodes}",
            "algo.hidden=[100,100]", "algo.eval_episodes=5", *args.set]
    configs = [runs.resolve("maml-trpo", args.family, sets=sets,
                            overrides={"iterations": args.iterations, "seed": s})
               for s in range(args.seeds)]
    dirs, ledger = train_in_turns(name, configs, chunk=args.chunk,
                                  minutes=args.budget_minutes)
    c, t = configs[0].algo_options, configs[0].task_options
    score_and_write(
        name, f"MAML-TRPO on {args.family}",
        {"maml-trpo": dirs}, targets={"maml-trpo": args.iterations}, ledger=ledger,
        eval_tasks=args.eval_tasks, steps={"maml-trpo": 3}, notes=[
            f"setting: {c.meta_batch_size} tasks x {c.episodes_per_task} episodes x horizon "
            f"{t.horizon} ({steps_per_iteration(configs[0]):,} steps per meta-iteration), "
            f"inner lr {c.inner_lr}, TRPO max KL {c.max_kl}, MLP {list(c.hidden)}; host "
            f"sampler, {args.workers} worker processes; {args.seeds} seeds; scored with "
            f"{c.eval_episodes} episodes per task and step",
            "DeepMind Control through dm-control 1.0.28 (MuJoCo 3.3.0); reward per step in "
            "[0, 1] (the suite's convention; 200 at most per episode)",
            "no published number: this family is ours (adaptrl.tasks.dmc)"])


if __name__ == "__main__":
    main()
