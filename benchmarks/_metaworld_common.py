"""What benchmarks/ml1.py and benchmarks/ml10.py share: train seeds in resumable turns
(benchmarks/_long_runs.py), then score each algorithm's newest checkpoints by Meta-World's
protocol (adaptrl.evaluation.metaworld), append that checkpoint's success to a history
(the curve per checkpoint across sittings) and write docs/results/NAME.{md,json}."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from _long_runs import Ledger, _done
from common import RESULTS, ROOT, command, git_commit, machine

from adaptrl.evaluation.metaworld import metaworld_protocol
from adaptrl.tasks.metaworld import MetaWorld, metaworld_version


def score_and_write(name: str, title: str, groups: dict[str, list[Path]], *,
                    targets: dict[str, int], ledger: Ledger, adapt: dict[str, int],
                    num_tasks: int, notes: list[str], published: list[str],
                    family: MetaWorld) -> None:
    history_path = ROOT / "runs" / f"bench-{name}" / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    results, rows, done_all = {}, [], {}
    t0 = time.perf_counter()
    for label, dirs in groups.items():
        done_all[label] = [_done(d) for d in dirs]
        if not all(done_all[label]):
            continue
        results[label] = metaworld_protocol(dirs, num_tasks=num_tasks, adapt=adapt[label])
        mw = results[label]["metaworld"]
        point = {"algo": label, "iterations": done_all[label], "success": mw["success"],
                 "success_ci": mw["success_ci"], "return": mw["return"],
                 "env_steps": sum(ledger.seeds.get(d.name, {}).get("env_steps", 0)
                                  for d in dirs)}
        if point not in history:
            history.append(point)
    history_path.write_text(json.dumps(history, indent=1))
    eval_minutes = (time.perf_counter() - t0) / 60
    partial = any(min(d) < targets[label] for label, d in done_all.items())
    for label, dirs in groups.items():  # what the rest of the run needs at this pace
        spent = [ledger.seeds.get(d.name, {}) for d in dirs]
        done = sum(r.get("iterations", 0) for r in spent)
        if done:
            pace = sum(r.get("train_seconds", 0.0) for r in spent) / done
            left = sum(max(0, targets[label] - _done(d)) for d in dirs)
            notes = [*notes, f"{label}: {pace:.0f} s per meta-iteration per seed so far "
                             f"(measured on this loaded machine, the first iteration's compilation included); the {left} iterations left "
                             f"need about {left * pace / 3600:.1f} h at that pace"]
    for label, result in results.items():
        mw = result["metaworld"]
        runs_of = [ledger.seeds.get(d.name, {}) for d in groups[label]]
        env_steps = sum(r.get("env_steps", 0) for r in runs_of)
        hours = sum(r.get("train_seconds", 0.0) for r in runs_of) / 3600
        for type_name, row in [*mw["per_type"].items(), ("overall", mw)]:
            rows.append(f"| {label} | {type_name} | {row['success']:.3f} | "
                        f"[{row['success_ci'][0]:.3f}, {row['success_ci'][1]:.3f}] | "
                        f"{row['return']:.1f} | {min(done_all[label])}/{targets[label]} | "
                        f"{env_steps:,} | {hours:.2f} |")
        start = result["curve"][0]
        rows.append(f"| {label} | (before adaptation, all) | {start['success']:.3f} | | "
                    f"{start['mean']:.1f} | | | |")
    hist_rows = [f"| {h['algo']} | {h['iterations']} | {h['env_steps']:,} | "
                 f"{h['success']:.3f} [{h['success_ci'][0]:.3f}, {h['success_ci'][1]:.3f}] | "
                 f"{h['return']:.1f} |" for h in history]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"command": command(), "machine": machine(), "commit": git_commit(),
         "partial": partial, "iterations_done": done_all, "targets": targets,
         "ledger": ledger.seeds, "sittings": ledger.sittings, "eval_minutes": eval_minutes,
         "history": history, "results": results}, indent=1, default=float))
    version = (f"Meta-World {metaworld_version()} (v3 environments), reward function "
               f"{family.reward_version}, horizon {family.horizon}")
    lines = [
        f"# {title}{' (PARTIAL)' if partial else ''}", "",
        f"- command (one sitting; run it again to continue): `MUJOCO_GL=egl {command()}`",
        f"- {version}", f"- machine: {machine()}; shared with other jobs, timings are "
        "of a loaded machine", f"- commit: {git_commit()}",
        f"- sittings so far: {ledger.sittings}; 1-minute load average at the end: "
        f"{os.getloadavg()[0]:.2f}; evaluation {eval_minutes:.1f} min",
        *[f"- {n}" for n in notes], "",
        "Meta-World protocol on the held-out tasks (`adaptrl eval RUN --protocol metaworld`):"
        " adapt, then score episodes; an episode succeeds if the task succeeds at any step; "
        "success per task type and overall (mean over types), with a 95% bootstrap CI over "
        "tasks (stratified by seed); return of the scored episodes beside it. Iterations: "
        "the fewest any seed has done, of the target; env steps and hours: training, all "
        "seeds and sittings.", "",
        "| algorithm | task type | success | 95% CI | return | iterations | env steps | "
        "hours |", "|---|---|---|---|---|---|---|---|", *rows, "",
        *([] if results else ["(not scored yet: a seed has no checkpoint)", ""]),
        "Success at each scored checkpoint (one row per sitting):", "",
        "| algorithm | iterations per seed | env steps | success [95% CI] | return |",
        "|---|---|---|---|---|", *hist_rows, "",
        "Published numbers to compare with (REFERENCES-style notes):", "",
        *[f"- {p}" for p in published], ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
