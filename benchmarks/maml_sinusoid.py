"""MAML on few-shot sine regression in the paper's setting (Finn et al. 2017, Sec. 5.1).

K = 10 shots, MLP 40-40 ReLU, inner lr 0.01 (one step in meta-training), meta-batch 25,
Adam 1e-3, 70,000 meta-iterations. Reports the held-out MSE after 0..10 gradient steps on
1000 test functions (100 query points each) over several seeds, and the meta-training
time; writes docs/results/maml_sinusoid.{md,json,png}.

    python benchmarks/maml_sinusoid.py --seeds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from common import RESULTS, ROOT, IterationTimer, command, git_commit, machine, open_run
from rich.progress import Progress

from adaptrl import runs
from adaptrl.evaluation.harness import evaluate_runs, jsonable
from adaptrl.evaluation.plots import plot_curves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=70_000)
    p.add_argument("--eval-tasks", type=int, default=1000)
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-maml-sinusoid"))
    p.add_argument("--reuse", action="store_true",
                   help="continue runs already in --out (exact resume gives the same numbers)")
    args = p.parse_args()
    base = Path(args.out)
    if not args.reuse:
        shutil.rmtree(base, ignore_errors=True)
    dirs, minutes = [], []
    for seed in range(args.seeds):
        run_dir = base / f"seed{seed}"
        config = runs.resolve("maml-trpo", "sinusoid", sets=["checkpoint_every=5000"],
                              overrides={"iterations": args.iterations, "seed": seed})
        resume = open_run(run_dir, config, reuse=args.reuse)
        timer = IterationTimer()
        t0 = time.perf_counter()
        with Progress() as progress:
            task = progress.add_task(f"seed {seed}", total=args.iterations)

            def report(done, total, row, timer=timer, task=task, progress=progress):
                timer(done, total, row)
                if done % 500 == 0 or done == total:
                    progress.update(task, completed=done)

            runs.train(run_dir, resume=resume, on_iteration=report)
        minutes.append((time.perf_counter() - t0) / 60)
        dirs.append(run_dir)
    result = evaluate_runs(dirs, split="test", num_tasks=args.eval_tasks, steps=10)
    config = runs.load_run(dirs[0]).to_json()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "maml_sinusoid.json").write_text(json.dumps(jsonable(
        {"command": command(), "machine": machine(), "commit": git_commit(),
         "train_minutes_per_seed": minutes, "result": result, "config": config}), indent=2))
    plot_curves([result], RESULTS / "maml_sinusoid.png",
                title=f"MAML sinusoid K=10: {args.eval_tasks} held-out functions, "
                      f"{args.seeds} seeds")
    one = result["curve"][1]
    lines = [
        "# MAML on few-shot sine regression (K = 10)", "",
        f"- command: `{command()}`", f"- machine: {machine()}", f"- commit: {git_commit()}",
        f"- setting: meta-batch {config['algo_options']['meta_batch_size']}, K = "
        f"{config['algo_options']['shots']}, inner lr {config['algo_options']['inner_lr']}, "
        f"step k of adaptation at lr x {config['algo_options']['inner_lr_decay']}^k, "
        f"MLP {config['algo_options']['hidden']}, Adam {config['algo_options']['outer_lr']}, "
        f"{args.iterations} meta-iterations, {args.seeds} seeds",
        f"- meta-training time per seed: "
        f"{', '.join(f'{m:.1f}' for m in minutes)} min (2-core CPU, incl. compilation)", "",
        f"**MSE after one gradient step: mean {one['mean']:.3f}, IQM {one['iqm']:.3f} "
        f"[{one['ci_low']:.3f}, {one['ci_high']:.3f}]** (MAML paper: about 0.85; target <= 1.0)",
        "", "| gradient steps | mean MSE | IQM | 95% CI of IQM |", "|---|---|---|---|",
    ]
    for pt in result["curve"]:
        lines.append(f"| {pt['seen']} | {pt['mean']:.3f} | {pt['iqm']:.3f} | "
                     f"[{pt['ci_low']:.3f}, {pt['ci_high']:.3f}] |")
    lines += ["", "Meta-training takes one step at the paper's lr; later adaptation steps "
              "shrink geometrically (`algo.inner_lr_decay`). Plain SGD at a fixed lr (decay 1) "
              "lets a few held-out functions blow up after 5+ steps: the evidence and the "
              "choice of the decay are in [maml_multistep_sinusoid.md](maml_multistep_sinusoid.md).", "",
              "![curve](maml_sinusoid.png)", ""]
    (RESULTS / "maml_sinusoid.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
