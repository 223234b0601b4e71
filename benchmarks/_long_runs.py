"""Benchmarks that take hours (MuJoCo locomotion): several seeds trained in turns, in
chunks, under a wall-clock budget, resumed exactly from their checkpoints at the next
sitting, with a ledger of the wall time and environment steps spent in every sitting.

A sitting: ``python benchmarks/maml_cheetah_vel.py --budget-minutes 90``. Each seed's run
lives in ``runs/bench-NAME/seedS`` (created on the first sitting, resumed afterwards);
``ledger.json`` beside them adds up the sittings. When the budget is spent (or on
Ctrl-C / SIGTERM) the current run checkpoints at its iteration boundary and the sitting
evaluates what it has; results are marked PARTIAL until every seed reached its target.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import RESULTS, ROOT, command, git_commit, machine, open_run

from adaptrl import runs
from adaptrl.evaluation.harness import evaluate_runs
from adaptrl.evaluation.plots import plot_curves


@dataclass
class Ledger:
    """Wall time and environment steps per run (algorithm and seed), over every sitting."""

    path: Path
    seeds: dict[str, dict[str, float]] = field(default_factory=dict)
    sittings: int = 0

    @classmethod
    def load(cls, path: Path) -> Ledger:
        if path.exists():
            data = json.loads(path.read_text())
            return cls(path, data["seeds"], data["sittings"])
        return cls(path)

    def add(self, run: str, seconds: float, iterations: int, steps_per_iteration: int):
        row = self.seeds.setdefault(run, {"train_seconds": 0.0, "iterations": 0,
                                          "env_steps": 0})
        row["train_seconds"] += seconds
        row["iterations"] += iterations
        row["env_steps"] += iterations * steps_per_iteration
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps({"seeds": self.seeds, "sittings": self.sittings},
                                        indent=1))


class Budget:
    """True once the sitting's minutes are spent or SIGINT/SIGTERM arrived."""

    def __init__(self, minutes: float):
        self.deadline = time.monotonic() + 60 * minutes
        self.signalled = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signalled = True

    def spent(self) -> bool:
        return self.signalled or time.monotonic() >= self.deadline


def steps_per_iteration(config) -> int:
    """Environment steps that one meta-iteration of ``config`` samples."""
    a, horizon = config.algo_options, config.task_options.horizon
    if config.algo == "pearl":  # not constant (its first iteration collects more): the run
        return 0  # counts its own steps, its ``env_steps`` metric (see train_in_turns)
    if config.algo == "rl2":
        return a.trials_per_iteration * a.trial_episodes * horizon
    return (a.inner_steps + 1) * a.meta_batch_size * a.episodes_per_task * horizon


def train_in_turns(name: str, configs: list, *, chunk: int, minutes: float, log=print
                   ) -> tuple[list[Path], Ledger]:
    """Train one run per config (a seed of an algorithm) in turns of ``chunk`` iterations,
    the one furthest behind first, until all reach their iterations or ``minutes`` are
    spent. Returns the run directories and the ledger."""
    base = ROOT / "runs" / f"bench-{name}"
    base.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.load(base / "ledger.json")
    ledger.sittings += 1
    ledger.save()
    budget = Budget(minutes)
    dirs = []
    for config in configs:
        run_dir = base / f"{config.algo}-seed{config.run.seed}"
        open_run(run_dir, config, reuse=True)  # created, or kept (and extended) as it is
        dirs.append(run_dir)
    while not budget.spent():
        pending = [(d, c) for d, c in zip(dirs, configs, strict=True)
                   if _done(d) < c.run.iterations]
        if not pending:
            break
        # the run furthest behind, as a fraction of its own target
        run_dir, config = min(pending, key=lambda dc: _done(dc[0]) / dc[1].run.iterations)
        start, t0 = _done(run_dir), time.perf_counter()
        stop_at = min(start + chunk, config.run.iterations)
        current = [start]

        def report(done, total, row, run_dir=run_dir, current=current, t0=t0):
            current[0] = done
            headline = ", ".join(f"{k}={v:.2f}" for k, v in row.items()
                                 if k.startswith(("return_", "trial_return")))
            log(f"{run_dir.name}: iteration {done}/{total} "
                f"({time.perf_counter() - t0:.0f} s this turn) {headline}")

        runs.train(run_dir, resume=True, on_iteration=report,
                   should_stop=lambda current=current, stop_at=stop_at:
                   budget.spent() or current[0] >= stop_at)
        ledger.add(run_dir.name, time.perf_counter() - t0, _done(run_dir) - start,
                   steps_per_iteration(config))
        rows = runs.read_metrics(run_dir)
        if rows and "env_steps" in rows[-1]:  # a run that counts its steps itself
            ledger.seeds[run_dir.name]["env_steps"] = int(rows[-1]["env_steps"])
            ledger.save()
    return dirs, ledger


def _done(run_dir: Path) -> int:
    """Iterations in the newest checkpoint of a run (0 before the first)."""
    return max(runs.list_checkpoints(run_dir), default=0)


def score_and_write(name: str, title: str, groups: dict[str, list[Path]], *, targets: dict[str,
                    int], ledger: Ledger, eval_tasks: int, steps: dict[str, int], notes: list[str],
                    ) -> None:
    """Meta-test each group of runs (one algorithm's seeds) from its newest checkpoints on the
    same held-out tasks; write docs/results/NAME.{md,json,png} with one table for all of
    them, marked PARTIAL while a run is short of its target iterations."""
    results, rows, done_all = {}, [], {}
    t0 = time.perf_counter()
    for label, dirs in groups.items():
        done = [_done(d) for d in dirs]
        done_all[label] = done
        if not all(done):
            continue  # a run without a checkpoint yet: nothing to score
        results[label] = evaluate_runs(dirs, split="test", num_tasks=eval_tasks,
                                       steps=steps[label])
    eval_minutes = (time.perf_counter() - t0) / 60
    partial = any(min(d) < targets[label] for label, d in done_all.items())
    for label, result in results.items():
        runs_of = [ledger.seeds.get(d.name, {}) for d in groups[label]]
        env_steps = sum(r.get("env_steps", 0) for r in runs_of)
        hours = sum(r.get("train_seconds", 0.0) for r in runs_of) / 3600
        for pt in result["curve"]:
            rows.append(f"| {label} | {pt['seen']} {result['unit'].replace('_', ' ')} | "
                        f"{pt['mean']:.1f} | "
                        f"{pt['iqm']:.1f} | [{pt['ci_low']:.1f}, {pt['ci_high']:.1f}] | "
                        f"{min(done_all[label])}/{targets[label]} | {env_steps:,} | "
                        f"{hours:.2f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"command": command(), "machine": machine(), "commit": git_commit(),
         "partial": partial, "iterations_done": done_all, "targets": targets,
         "ledger": ledger.seeds, "sittings": ledger.sittings, "eval_minutes": eval_minutes,
         "results": results}, indent=1))
    state = "PARTIAL" if partial else "complete"
    if results:
        plot_curves(list(results.values()), RESULTS / f"{name}.png",
                    title=f"{title} ({state}): {eval_tasks} held-out tasks")
    lines = [
        f"# {title}{' (PARTIAL)' if partial else ''}", "",
        f"- command (one sitting; run it again to continue): `MUJOCO_GL=egl {command()}`",
        f"- machine: {machine()}", f"- commit: {git_commit()}",
        f"- sittings so far: {ledger.sittings}; 1-minute load average at the end: "
        f"{os.getloadavg()[0]:.2f}; evaluation {eval_minutes:.1f} min",
        *[f"- {n}" for n in notes], "",
        f"Held-out adaptation curves ({eval_tasks} tasks x each algorithm's seeds; return per "
        "episode; IQM with 95% stratified bootstrap CI). Iterations: the fewest any seed has "
        "done, of the target; environment steps and hours: training, all seeds and sittings.",
        "", "| algorithm | after | mean | IQM | 95% CI of IQM | iterations | env steps | "
        "hours |", "|---|---|---|---|---|---|---|---|", *rows, "",
        *([f"![curves]({name}.png)", ""] if results else ["(no checkpoint to score yet)", ""])]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
