"""Soak benchmark: resident memory of one long training run.

Runs a small MAML-TRPO point-nav run for ``--minutes`` of wall-clock time in this process
(checkpoints every ``--checkpoint-every`` iterations, CSV + TensorBoard metrics, the NaN
guard — the real :func:`adaptrl.runs.train` loop), samples the process's resident set size
(RSS) every ``--sample-seconds``, and reports RSS at the start (after the first iteration,
i.e. after JIT compilation), after a warm-up (``--warmup-minutes``: allocator pools and
caches fill up), and at the end. Growth is measured from the post-warm-up sample to the end.

    .venv/bin/python benchmarks/soak.py --minutes 60 --out /tmp/soak --json docs/results/soak.json

``--pause`` sleeps between iterations to keep CPU use modest on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import psutil

from adaptrl import runs

SETTINGS = ["algo.meta_batch_size=4", "algo.episodes_per_task=4", "tasks.horizon=20",
            "algo.hidden=[16,16]", "checkpoint_every=10", "keep_checkpoints=3"]


class _Stop(Exception):
    pass


def render(result: dict) -> str:
    """docs/results/soak.md from a result JSON."""
    minutes = (result["wall_seconds"] - result["rss_start_at_seconds"]) / 60
    rows = "\n".join(f"| {s['seconds']:.0f} | {s['iterations']} | {s['rss_mib']:.1f} |"
                     for s in result["samples"][:: max(1, len(result["samples"]) // 20)])
    verdict = "under" if result["growth_percent"] < 5 else "NOT under"
    return f"""# Soak: resident memory of a long training run

Command (from the repository root):

```
{result["command"]}
```

- machine: {result["machine"]}, shared with other work during the run
- run: maml-trpo on point-nav, {", ".join(result["settings"])}; the real `adaptrl.runs.train`
  loop with checkpoints (msgpack + JSON, fsynced, the newest 3 kept), `metrics.csv`,
  TensorBoard events and the NaN guard; a {result.get("pause", 0.05)} s pause per iteration
  keeps it to a fraction of one core
- wall time: {result["wall_seconds"] / 60:.1f} min in all, {result["iterations"]} iterations,
  {result["metrics_rows"]} metrics rows, checkpoints kept at the end: {result["checkpoints_kept"]}

| | RSS (MiB) |
|---|---|
| after the first iteration (JIT compilation still resident) | {result["rss_first_iteration_mib"]:.1f} |
| start: after the warm-up, at {result["rss_start_at_seconds"]:.0f} s | {result["rss_start_mib"]:.1f} |
| end, at {result["wall_seconds"]:.0f} s | {result["rss_end_mib"]:.1f} |
| peak after the start | {result["rss_peak_after_start_mib"]:.1f} |

**Growth from start to end over {minutes:.0f} minutes: {result["growth_percent"]:+.2f}%**
({verdict} the 5% bound).

Samples (every ~{max(1, len(result["samples"]) // 20)}th):

| seconds | iterations | RSS (MiB) |
|---|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--out", default="/tmp/adaptrl-soak")
    p.add_argument("--json", help="write the result here as JSON")
    p.add_argument("--pause", type=float, default=0.05, help="seconds to sleep per iteration")
    p.add_argument("--sample-seconds", type=float, default=30.0)
    p.add_argument("--warmup-minutes", type=float, default=2.0)
    p.add_argument("--render", nargs=2, metavar=("RESULT_JSON", "MARKDOWN"),
                   help="only write the Markdown report of an earlier result")
    args = p.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render[0]).read_text())
        Path(args.render[1]).write_text(render(result))
        return 0

    run_dir = Path(args.out)
    shutil.rmtree(run_dir, ignore_errors=True)
    config = runs.resolve("maml-trpo", "point-nav", sets=SETTINGS,
                          overrides={"iterations": 10**8, "seed": 0})
    runs.create_run(run_dir, config)
    proc = psutil.Process()
    deadline = time.monotonic() + 60 * args.minutes
    samples: list[dict[str, float]] = []
    t_start = time.monotonic()
    last_sample = -1e9
    done_iters = 0

    def sample(done: int) -> None:
        rss = proc.memory_info().rss / 2**20
        samples.append({"seconds": round(time.monotonic() - t_start, 1), "iterations": done,
                        "rss_mib": round(rss, 2)})
        print(json.dumps(samples[-1]), flush=True)

    def on_iteration(done: int, total: int, row: dict[str, float]) -> None:
        nonlocal last_sample, done_iters
        done_iters = done
        now = time.monotonic()
        if done == 1 or now - last_sample >= args.sample_seconds:
            last_sample = now
            sample(done)
        if now >= deadline:
            raise _Stop
        if args.pause:
            time.sleep(args.pause)

    try:
        runs.train(run_dir, on_iteration=on_iteration)
    except _Stop:
        pass
    sample(done_iters)
    warm = [s for s in samples if s["seconds"] >= samples[0]["seconds"] + 60 * args.warmup_minutes]
    start_sample = warm[0] if len(warm) > 1 else samples[0]
    start, end = start_sample["rss_mib"], samples[-1]["rss_mib"]
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": SETTINGS, "pause": args.pause, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "wall_seconds": samples[-1]["seconds"], "iterations": done_iters,
        "checkpoints_kept": runs.list_checkpoints(run_dir),
        "metrics_rows": len(runs.read_metrics(run_dir)),
        "rss_first_iteration_mib": samples[0]["rss_mib"],
        "rss_start_mib": start, "rss_start_at_seconds": start_sample["seconds"],
        "rss_end_mib": end, "rss_peak_after_start_mib": max(
            s["rss_mib"] for s in samples if s["seconds"] >= start_sample["seconds"]),
        "growth_percent": round(100 * (end - start) / start, 2), "samples": samples,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
