"""Exact resume under SIGKILL: real ``adaptrl train`` processes are killed at random moments
(many of them inside checkpoint writes, with ``checkpoint_every=1``), resumed with
``--resume``, killed again, ..., and the finished run must equal an uninterrupted run with
the same seed byte for byte: ``metrics.csv``, the kept checkpoints, the final state, and
the TensorBoard scalars (each step exactly once after ``purge_step``).

This also checks determinism for each algorithm: two runs with the same seed, in different
processes (one compiled cold, the other from the persistent compilation cache), agree
bit for bit.

One test per algorithm, so that pytest-xdist spreads the five kill chains over its workers.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adaptrl import runs

ITERATIONS = 40
KEEP = 2

# the tiniest settings that still run each algorithm's real code path
SETTINGS = {
    "maml-vpg": ("point-nav", ["algo.meta_batch_size=2", "algo.episodes_per_task=2",
                               "tasks.horizon=5", "algo.hidden=[8]", "algo.baseline=learned",
                               "algo.value_epochs=1"]),
    "maml-trpo": ("point-nav", ["algo.meta_batch_size=2", "algo.episodes_per_task=2",
                                "tasks.horizon=5", "algo.hidden=[8]", "algo.fisher_tasks=2"]),
    "maml-ppo": ("bandit", ["algo.meta_batch_size=2", "algo.episodes_per_task=2",
                            "tasks.pulls=3", "algo.hidden=[8]", "algo.ppo_epochs=2"]),
    "rl2": ("bandit", ["algo.trials_per_iteration=2", "algo.minibatches=1",
                       "algo.trial_episodes=6", "algo.hidden=8",
                       "algo.ppo_epochs=1"]),
    # the replay buffers are in the checkpoint: a resumed run samples from the same data
    "pearl": ("point-nav", ["tasks.horizon=5", "tasks.train_pool=4", "algo.hidden=[8]",
                            "algo.encoder_hidden=[8]", "algo.latent_dim=2", "algo.train_steps=2",
                            "algo.meta_batch=2", "algo.batch_size=4", "algo.context_batch=4",
                            "algo.tasks_per_iteration=2", "algo.initial_episodes=1",
                            "algo.buffer_size=20"]),
}
#: kills planned per algorithm, and the kills each algorithm must deliver (4 x 5 algorithms:
#: at least 20 in all). A chain ends early when a resumed run finishes its last iterations
#: inside the random pause before a kill (a timing race under load); no kill is planned in
#: the last MARGIN iterations, and one planned kill may still be lost to that race.
KILLS = 5
DEMAND = 4
MARGIN = 8


def subprocess_env(cache: Path) -> dict[str, str]:
    """The environment of the ``adaptrl`` processes: the CLI's persistent compilation cache
    in ``cache`` (fresh per algorithm: the reference run compiles cold, the resumed
    processes load what it compiled)."""
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", ADAPTRL_CACHE_DIR=str(cache))
    env.pop("ADAPTRL_FAULT_NAN_AT", None)
    return env


def adaptrl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "adaptrl.cli", *args]


def train_cmd(algo: str, out: Path) -> list[str]:
    tasks, sets = SETTINGS[algo]
    args = ["train", algo, "--tasks", tasks, "--iterations", str(ITERATIONS), "--seed", "3",
            "--out", str(out), "--set", "checkpoint_every=1", "--set", f"keep_checkpoints={KEEP}"]
    for s in sets:
        args += ["--set", s]
    return adaptrl_cmd(*args)


def latest(run_dir: Path) -> int:
    its = runs.list_checkpoints(run_dir)
    return its[-1] if its else 0


def mid_write_evidence(run_dir: Path) -> bool:
    """Whether a kill left a half-done save behind: a temporary file, or a data file not
    yet committed by its JSON record."""
    d = run_dir / runs.CHECKPOINT_DIR
    if not d.is_dir():
        return False
    names = {p.name for p in d.iterdir()}
    if any(".tmp-" in n for n in names):
        return True
    return any(n.endswith(".msgpack") and n.replace(".msgpack", ".json") not in names
               for n in names)


def read_tb_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Scalars as TensorBoard shows them: event files in order, and a ``SessionLog.START``
    at step s (tensorboardX's ``purge_step``) hides every earlier event at step >= s."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    files = sorted(run_dir.glob("events.out.tfevents.*"),
                   key=lambda p: (int(p.name.split(".")[3]), p.stat().st_mtime_ns))
    for path in files:
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            if pos + 12 + length + 4 > len(data):
                break  # a record cut short by the kill
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == 1:
                for values in scalars.values():
                    for step in [s for s in values if s >= event.step]:
                        del values[step]
            for v in event.summary.value:
                scalars.setdefault(v.tag, {})[event.step] = v.simple_value
    return scalars


def kill_chain(algo: str, run_dir: Path, env: dict[str, str], seed: int) -> dict[str, int]:
    """Start a run, kill it at random points KILLS times (resuming in between), then let
    the last resume finish. Returns counts of what happened."""
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(1, ITERATIONS - MARGIN), KILLS))
    stats = {"kills": 0, "mid_write": 0, "finished_early": 0}
    for k, target in enumerate(targets):
        cmd = train_cmd(algo, run_dir) if k == 0 else adaptrl_cmd("train", "--resume",
                                                                   str(run_dir))
        target = max(target, latest(run_dir) + 1)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and latest(run_dir) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        # a random moment within the next iterations: compute, metrics append, checkpoint
        # data file, commit record, pruning of old checkpoints
        time.sleep(rng.uniform(0.0, 0.04))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()
            stats["finished_early"] += 1
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stats["kills"] += 1
        stats["mid_write"] += mid_write_evidence(run_dir)
    result = subprocess.run(adaptrl_cmd("train", "--resume", str(run_dir)), env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return stats


def check_same(algo: str, ref: Path, run: Path) -> None:
    assert (run / runs.METRICS_FILE).read_bytes() == (ref / runs.METRICS_FILE).read_bytes(), algo
    assert runs.list_checkpoints(run) == runs.list_checkpoints(ref) == [
        ITERATIONS - 1, ITERATIONS][-KEEP:]
    for it in runs.list_checkpoints(ref):
        name = f"ckpt-{it:08d}.msgpack"
        assert (run / "checkpoints" / name).read_bytes() == (ref / "checkpoints" / name
                                                             ).read_bytes(), (algo, it)
    rows = runs.read_metrics(ref)
    assert [r["iteration"] for r in rows] == list(range(ITERATIONS))
    tb = read_tb_scalars(run)
    for column in rows[0]:
        if column == "iteration":
            continue
        steps = tb[column]
        assert sorted(steps) == list(range(ITERATIONS)), (algo, column)
        for r in rows:
            assert steps[int(r["iteration"])] == pytest.approx(r[column], rel=1e-6, abs=1e-30)


@pytest.mark.parametrize("algo", list(SETTINGS))
def test_sigkill_resume_is_exact(algo, tmp_path):
    env = subprocess_env(tmp_path / "jax-cache")
    ref, run = tmp_path / "ref", tmp_path / "killed"
    done = subprocess.run(train_cmd(algo, ref), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    stats = kill_chain(algo, run, env, seed=sum(map(ord, algo)))
    check_same(algo, ref, run)
    print(f"\nSIGKILL resume, {algo}: {stats['kills']} kills ({stats['mid_write']} left a "
          f"checkpoint write half-done): {stats}")
    assert stats["kills"] >= DEMAND, stats
