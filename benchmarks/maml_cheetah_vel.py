"""MAML-TRPO on cheetah-vel at the MAML paper's setting, over several sittings.

40 tasks x 20 episodes x horizon 200 per meta-iteration (sampled before and after the inner
step: 320,000 MuJoCo steps), one inner step of lr 0.1, TRPO outer step (KL 0.01), MLP
100x100, linear baseline; fresh target velocities ~ U[0, 2] every iteration, as in the
authors' code; 800 iterations. Target (MAML, Fig. 5): held-out return after one step about
-75 or better (before adaptation about -130).

Each sitting trains the seeds in turns for ``--budget-minutes`` and resumes exactly where the
last one stopped (runs/bench-NAME/maml-trpo-seedS, ledger.json); then it scores every seed's
newest checkpoint on 40 held-out velocities after 0-3 steps and writes
docs/results/NAME.{md,json,png}, marked PARTIAL until each seed reached ``--iterations``.

    MUJOCO_GL=egl python benchmarks/maml_cheetah_vel.py --seeds 2 --budget-minutes 90
"""

from __future__ import annotations

import argparse
import os

from _long_runs import score_and_write, steps_per_iteration, train_in_turns

from adaptrl import runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--iterations", type=int, default=800, help="the paper's length")
    p.add_argument("--budget-minutes", type=float, default=60.0,
                   help="training time of this sitting (then it evaluates and stops)")
    p.add_argument("--chunk", type=int, default=10, help="iterations per seed per turn")
    p.add_argument("--eval-tasks", type=int, default=40)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--set", action="append", default=[],
                   help="extra config overrides (a smoke test: the command line records them)")
    p.add_argument("--name", default="maml_cheetah_vel", help="results and run directory stem")
    args = p.parse_args()
    sets = [f"sampler.workers={args.workers}", "checkpoint_every=2", *args.set]
    configs = [runs.resolve("maml-trpo", "cheetah-vel", sets=sets,
                            overrides={"iterations": args.iterations, "seed": s})
               for s in range(args.seeds)]
    dirs, ledger = train_in_turns(args.name, configs, chunk=args.chunk,
                                  minutes=args.budget_minutes)
    c, t = configs[0].algo_options, configs[0].task_options
    score_and_write(
        args.name, "MAML-TRPO on cheetah-vel", {"maml-trpo": dirs},
        targets={"maml-trpo": args.iterations}, ledger=ledger, eval_tasks=args.eval_tasks,
        steps={"maml-trpo": 3}, notes=[
            f"setting: the MAML paper's: {c.meta_batch_size} tasks x {c.episodes_per_task} "
            f"episodes x horizon {t.horizon} ({steps_per_iteration(configs[0]):,} steps per "
            f"meta-iteration), inner lr {c.inner_lr}, TRPO max KL {c.max_kl}, MLP "
            f"{list(c.hidden)}; host sampler, {args.workers} worker processes; "
            f"{args.seeds} seeds",
            "MAML paper (Fig. 5, approximate): about -130 before adaptation, -70 to -80 after "
            "one step, -55 to -75 after three"])


if __name__ == "__main__":
    main()
