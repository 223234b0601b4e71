"""MAML-TRPO on 2D point navigation in the paper's setting (Finn et al. 2017).

40 tasks x 20 episodes x horizon 100 per meta-iteration, one inner policy-gradient step
(lr 0.1), TRPO outer step (KL 0.01), MLP 100x100, linear feature baseline. Prints seconds
per meta-iteration and the held-out adaptation curve (40+ goals, several seeds), and writes
docs/results/maml_point_nav.{md,json,png}.

    python benchmarks/maml_point_nav.py --seeds 3 --iterations 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from common import RESULTS, ROOT, IterationTimer, command, git_commit, machine, open_run
from rich.console import Console
from rich.progress import Progress

from adaptrl import runs
from adaptrl.evaluation.harness import evaluate_runs, gap_closed
from adaptrl.evaluation.plots import plot_curves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--eval-tasks", type=int, default=40)
    p.add_argument("--adapt-steps", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-maml-point-nav"))
    p.add_argument("--set", action="append", default=[], help="extra config overrides")
    p.add_argument("--name", default="maml_point_nav", help="result file stem")
    p.add_argument("--reuse", action="store_true",
                   help="continue runs already in --out (exact resume gives the same numbers)")
    args = p.parse_args()
    console = Console()
    base = Path(args.out)
    if not args.reuse:
        shutil.rmtree(base, ignore_errors=True)
    dirs, timers = [], []
    t_start = time.perf_counter()
    for seed in range(args.seeds):
        run_dir = base / f"seed{seed}"
        config = runs.resolve("maml-trpo", "point-nav", sets=args.set,
                              overrides={"iterations": args.iterations, "seed": seed})
        resume = open_run(run_dir, config, reuse=args.reuse)
        timer = IterationTimer()
        with Progress(console=console) as progress:
            task = progress.add_task(f"seed {seed}", total=args.iterations)

            def report(done, total, row, timer=timer, task=task, progress=progress, seed=seed):
                timer(done, total, row)
                progress.update(task, completed=done,
                                description=f"seed {seed} post-adapt {row['return_step1']:.1f}")

            runs.train(run_dir, resume=resume, on_iteration=report)
        console.print(f"seed {seed}: first iteration (incl. compile) {timer.first:.1f} s, "
                      f"median {timer.median():.2f} s per meta-iteration")
        dirs.append(run_dir)
        timers.append(timer)
    train_minutes = (time.perf_counter() - t_start) / 60
    result = evaluate_runs(dirs, split="test", num_tasks=args.eval_tasks, steps=args.adapt_steps)
    closed = gap_closed(result, 1)
    sec_per_it = sorted(t.median() for t in timers)[len(timers) // 2]
    config = runs.load_run(dirs[0]).to_json()
    summary = {"command": command(), "machine": machine(), "commit": git_commit(),
               "seconds_per_iteration": sec_per_it, "train_minutes_total": train_minutes,
               "gap_closed_after_1_step": closed, "result": result, "config": config}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    plot_curves([result], RESULTS / f"{args.name}.png",
                title=f"MAML-TRPO point-nav: {args.eval_tasks} held-out goals, {args.seeds} seeds")
    lines = [
        "# MAML-TRPO on 2D point navigation", "",
        f"- command: `{command()}`",
        f"- machine: {machine()}", f"- commit: {git_commit()}",
        f"- setting: {config['algo_options']['meta_batch_size']} tasks x "
        f"{config['algo_options']['episodes_per_task']} episodes x horizon "
        f"{config['task_options']['horizon']} per meta-iteration, "
        f"{config['algo_options']['inner_steps']} inner step (lr "
        f"{config['algo_options']['inner_lr']}; adaptation step k at lr x "
        f"{config['algo_options']['inner_lr_decay']:.3g}^k), TRPO outer (max KL "
        f"{config['algo_options']['max_kl']}), {args.iterations} meta-iterations, "
        f"{args.seeds} seeds", "",
        f"Wall time per meta-iteration while training here: median {sec_per_it:.2f} s "
        f"(this machine was shared with other jobs; the speed figure is in "
        f"[maml_point_nav_speed.md](maml_point_nav_speed.md)).", "",
        f"Held-out adaptation curve ({args.eval_tasks} test goals x {args.seeds} seeds; IQM with "
        "95% stratified bootstrap CI):", "",
        "| gradient steps | mean return | IQM | 95% CI | success |",
        "|---|---|---|---|---|",
    ]
    for pt in result["curve"]:
        lines.append(f"| {pt['seen']} | {pt['mean']:.2f} | {pt['iqm']:.2f} | "
                     f"[{pt['ci_low']:.2f}, {pt['ci_high']:.2f}] | {pt.get('success', 0):.2f} |")
    lines += ["", f"Exact optimum (mean over the same goals): {result['optimum']:.3f}", "",
              f"**Gap closed by one adaptation step: {100 * closed:.1f}%** "
              "(= (after 1 step - before) / (optimum - before), on means).", "",
              f"![curve]({args.name}.png)", ""]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
