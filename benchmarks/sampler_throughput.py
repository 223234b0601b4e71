"""Environment steps per second of the host sampler against raw Gymnasium vector stepping.

* **raw**: W processes, each stepping a ``SyncVectorEnv`` of E HalfCheetah-v5 environments
  with random actions (``action_space.sample()``), nothing else — the physics budget;
* **ours**: the host sampler collecting MAML-style episodes of the ``cheetah-vel`` family
  (:class:`adaptrl.tasks.locomotion.CheetahVel`: HalfCheetah-v5 behind the Gymnasium
  adapter and a reward wrapper) with a real policy (Gaussian MLP 100x100), W worker
  processes of E environments each, every worker running the policy on its own
  environments (one jitted call per step).

Both step W * E environments for the same number of steps; W runs over 1 and 2 (and the
core count). Overhead = 1 - ours / raw. With ``--before REV`` the sampler of git revision
REV is measured too, in the same run (a subprocess importing that revision's code), so a
change to the sampler shows before and after. Writes docs/results/sampler_throughput.md.

    MUJOCO_GL=egl python benchmarks/sampler_throughput.py --envs-per-worker 64 --steps 200 \
        --workers 1 2 --rounds 2 --before 135c106
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402
from common import RESULTS, ROOT, command, git_commit, machine  # noqa: E402

from adaptrl import policies  # noqa: E402
from adaptrl.sampling import SamplerSettings  # noqa: E402
from adaptrl.sampling.host import HostSampler  # noqa: E402
from adaptrl.tasks.locomotion import CheetahVel  # noqa: E402


def _raw_worker(envs: int, steps: int, barrier, out) -> None:
    import gymnasium as gym

    vec = gym.vector.SyncVectorEnv([lambda: gym.make("HalfCheetah-v5",
                                                     max_episode_steps=10**9)] * envs)
    vec.reset(seed=0)
    vec.action_space.seed(0)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        vec.step(vec.action_space.sample())
    out.put(time.perf_counter() - t0)
    vec.close()


def raw(workers: int, envs: int, steps: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_raw_worker, args=(envs, steps, barrier, out))
             for _ in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    for _ in procs:
        out.get()
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return workers * envs * steps / wall


def ours(workers: int, envs: int, steps: int) -> float:
    family = CheetahVel(horizon=steps)
    sampler = HostSampler(family, SamplerSettings(workers=workers))
    policy = policies.policy_for(family.observation_space, family.action_space,
                                 hidden=(100, 100))
    params = policy.init(key=jax.random.PRNGKey(0))
    tasks = family.tasks("train", workers, key=jax.random.PRNGKey(0))
    try:
        run = lambda k: sampler.episodes(  # noqa: E731
            policy, params, tasks, keys=jax.random.split(k, workers), num=envs,
            per_task=False)
        jax.block_until_ready(run(jax.random.PRNGKey(1)))  # workers, envs, compilation
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.PRNGKey(2)))
        wall = time.perf_counter() - t0
    finally:
        sampler.close()
    return workers * envs * steps / wall


def before(src: str, workers: int, envs: int, steps: int) -> float:
    """Our sampler's steps/s with the code of another revision (its ``src`` on PYTHONPATH)."""
    out = subprocess.run([sys.executable, __file__, "--ours-only", "--workers", str(workers),
                          "--envs-per-worker", str(envs), "--steps", str(steps)],
                         env=dict(os.environ, PYTHONPATH=src), capture_output=True, text=True,
                         check=True).stdout
    return float(out.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--envs-per-worker", type=int, default=32)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--workers", type=int, nargs="*", default=None)
    p.add_argument("--before", help="git revision whose sampler to measure too")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure each figure this many times, alternating; report the best")
    p.add_argument("--ours-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    counts = args.workers or sorted({1, 2, os.cpu_count() or 1})
    if args.ours_only:
        print(ours(counts[0], args.envs_per_worker, args.steps))
        return
    old_src = None
    if args.before:
        tmp = tempfile.mkdtemp(prefix="adaptrl-before-")
        archive = subprocess.run(["git", "archive", args.before, "src"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        old_src = os.path.join(tmp, "src")
    rows, load = [], [os.getloadavg()[0]]
    for w in counts:
        runs = [(raw(w, args.envs_per_worker, args.steps), ours(w, args.envs_per_worker, args.steps),
                 before(old_src, w, args.envs_per_worker, args.steps) if old_src else None)
                for _ in range(args.rounds)]
        r, o = max(x[0] for x in runs), max(x[1] for x in runs)
        b = max(x[2] for x in runs) if old_src else None
        load.append(os.getloadavg()[0])
        rows.append((w, r, o, b))
        print(f"workers {w}: raw {r:,.0f} steps/s, ours {o:,.0f} steps/s, "
              f"overhead {100 * (1 - o / r):.1f}%"
              + (f"; before ({args.before}) {b:,.0f} steps/s, overhead "
                 f"{100 * (1 - b / r):.1f}%" if b else ""), flush=True)
    head = "| worker processes | raw Gymnasium steps/s | our sampler steps/s | overhead |"
    if old_src:
        head += f" before ({args.before}) steps/s | overhead before |"
    lines = [
        "# Host sampler throughput: HalfCheetah-v5", "",
        f"- command: `MUJOCO_GL=egl {command()}`", f"- machine: {machine()}",
        f"- commit: {git_commit()}",
        f"- 1-minute load average before and after each worker count: "
        f"{' / '.join(f'{x:.2f}' for x in load)} ",
        f"- best of {args.rounds} alternating round(s) per figure",
        f"- {args.envs_per_worker} environments per worker, {args.steps} steps each; ours: "
        "the host sampler with a Gaussian MLP 100x100 policy (each worker runs it on its "
        "own environments, one jitted call per step), HalfCheetah-v5 behind the Gymnasium adapter and a reward "
        "wrapper; raw: SyncVectorEnv per process with random actions", "",
        head, "|" + "---|" * (head.count("|") - 1),
        *[f"| {w} | {r:,.0f} | {o:,.0f} | {100 * (1 - o / r):.1f}% |"
          + (f" {b:,.0f} | {100 * (1 - b / r):.1f}% |" if b else "") for w, r, o, b in rows],
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sampler_throughput.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
