"""The tutorial's CartPole family (docs/tutorial_gymnasium.md) meta-trained through the host
sampler with the ``adaptrl`` command, as a user would run it, then meta-tested on held-out
tasks. Records the commands, the wall time, the load average and the adaptation curve in
docs/results/cartpole_tutorial_ALGO.md.

    python benchmarks/cartpole_tutorial.py maml-trpo --iterations 150
    python benchmarks/cartpole_tutorial.py rl2 --iterations 1000 --minutes 14.5

Extra ``--set KEY=VALUE`` options go to ``adaptrl train``. With ``--minutes M`` training
gets a SIGTERM after M minutes: it stops at the next iteration boundary with a checkpoint
(``adaptrl train`` exits 143) and the last checkpoint is evaluated; the results say at
which iteration it stopped. The family is named as a user's
own, ``cartpole_tasks:CartPoleTarget``, with docs/tutorials on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, git_commit, machine

FAMILY = "cartpole_tasks:CartPoleTarget"
SETTINGS = {
    "maml-trpo": ["algo.meta_batch_size=20", "algo.episodes_per_task=10",
                  "algo.eval_episodes=10", "algo.hidden=[64,64]", "algo.inner_lr=0.1"],
    "rl2": ["algo.trials_per_iteration=64", "algo.trial_episodes=2", "algo.hidden=64",
            "algo.minibatches=4", "algo.privileged_critic=true", "algo.value_time=true",
            "algo.reward_scale=0.1", "tasks.parking=true", "tasks.horizon=60"],
}


def run(cmd: list[str], env: dict[str, str], minutes: float | None = None
        ) -> tuple[str, float]:
    """Run ``cmd``; with ``minutes``, SIGTERM it after that long (exit 143 is then a stop
    at an iteration boundary with a checkpoint, not a failure)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=None if minutes is None else minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate()
    if proc.returncode and not (minutes is not None and proc.returncode == 143):
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return out, time.perf_counter() - t0


def last_iteration(out: str) -> int:
    """The iteration of the run's last checkpoint."""
    return max(int(p.stem.split("-")[1]) for p in (Path(out) / "checkpoints").glob("*.json"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("algo", choices=sorted(SETTINGS))
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--minutes", type=float, default=None,
                   help="stop training (SIGTERM, checkpoint) after this many minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--num-tasks", type=int, default=100)
    p.add_argument("--out", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--suffix", default="", help="appended to the results file names")
    p.add_argument("--eval-only", action="store_true",
                   help="only evaluate an existing run (training time read from its files)")
    args = p.parse_args()
    out = args.out or f"runs/cartpole-{args.algo}-seed{args.seed}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "docs" / "tutorials"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    adaptrl = [sys.executable, "-m", "adaptrl.cli"]
    sets = [*SETTINGS[args.algo], f"sampler.workers={args.workers}", *args.set]
    train = [*adaptrl, "train", args.algo, "--tasks", FAMILY, "--iterations",
             str(args.iterations), "--seed", str(args.seed), "--out", out,
             *[x for s in sets for x in ("--set", s)]]
    evaluate = [*adaptrl, "eval", out, "--num-tasks", str(args.num_tasks), "--json"]
    load = [os.getloadavg()[0]]
    if args.eval_only:  # the run exists: time its training from its files
        files = [Path(out) / "config.json", *sorted((Path(out) / "checkpoints").glob("*.json"))]
        train_s = files[-1].stat().st_mtime - files[0].stat().st_mtime
        reached = last_iteration(out)
    else:
        _, train_s = run(train, env, args.minutes)
    reached = last_iteration(out)
    load.append(os.getloadavg()[0])
    printed, eval_s = run(evaluate, env)
    load.append(os.getloadavg()[0])
    result = json.loads(printed)
    iterations = f"{reached} iterations" if reached == args.iterations else (
        f"stopped at iteration {reached} of {args.iterations}"
        f"{f' by the {args.minutes:g}-minute limit' if args.minutes else ''}; the last "
        f"checkpoint is evaluated")
    curve = result["curve"]
    first, last = curve[0], curve[-1]
    apart = last["ci_low"] > first["ci_high"]
    unit = result["unit"].replace("_", " ")
    rows = [f"| {p['seen']} | {p['mean']:.2f} | {p['iqm']:.2f} | "
            f"[{p['ci_low']:.2f}, {p['ci_high']:.2f}] |" for p in curve]
    lines = [
        f"# CartPole tutorial family: {args.algo} through the host sampler", "",
        f"- family: `{FAMILY}` (docs/tutorials/cartpole_tasks.py; hidden target cart position "
        "by a reward wrapper, pole half-length set on the environment)",
        f"- train: `PYTHONPATH=docs/tutorials adaptrl {shlex.join(train[3:])}`",
        f"- eval: `PYTHONPATH=docs/tutorials adaptrl {shlex.join(evaluate[3:])}`",
        f"- machine: {machine()}; commit {git_commit()}",
        f"- 1-minute load average at start / after training / after eval: "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (the machine's 2 cores are shared)",
        f"- wall time{' (training: config.json to the last checkpoint)' if args.eval_only else ''}: training {train_s / 60:.1f} min ({iterations}, "
        f"{args.workers} worker processes), evaluation {eval_s / 60:.1f} min", "",
        f"Held-out adaptation curve ({result['num_tasks']} test tasks, return per episode):",
        "", f"| {unit} | mean | IQM | 95% CI of IQM |", "|---|---|---|---|", *rows, "",
        f"**{'adapts' if apart else 'does NOT adapt clearly'}**: IQM "
        f"{first['iqm']:.2f} [{first['ci_low']:.2f}, {first['ci_high']:.2f}] before, "
        f"{last['iqm']:.2f} [{last['ci_low']:.2f}, {last['ci_high']:.2f}] after "
        f"({'confidence intervals apart' if apart else 'confidence intervals overlap'}).", "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"cartpole_tutorial_{args.algo}{args.suffix}"
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
