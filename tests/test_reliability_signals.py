"""Stopping a run with real signals: SIGTERM (what Slurm and Ray send before a kill) and
Ctrl-C (SIGINT) on a real ``adaptrl train`` process stop it at the next iteration
boundary with a checkpoint, print the exact command that continues it, and exit 143 or
130; the resumed run ends byte for byte like an uninterrupted one. A second Ctrl-C ends
the process at once (the signal's default action)."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import pytest
from test_reliability import _env
from test_reliability_kill import read_tb_scalars

from adaptrl import runs

ITERATIONS = 3000  # about 1 ms each
EVERY = 100  # checkpoint cadence
FAST = ["--set", "algo.meta_batch_size=2", "--set", "algo.hidden=[8]", "--set", "algo.shots=3"]
#: an iteration of about a second on 2 busy cores: the second Ctrl-C lands inside one
SLOW = ["--set", "algo.meta_batch_size=512", "--set", "algo.hidden=[256,256]",
        "--set", "algo.shots=10"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "adaptrl.cli", *args]


def _train(out: Path, iterations: int, sets: list[str], checkpoint_every: int) -> list[str]:
    return _cmd("train", "maml-vpg", "--tasks", "sinusoid", "--iterations", str(iterations),
                "--out", str(out), "--set", f"checkpoint_every={checkpoint_every}",
                "--set", "keep_checkpoints=2", *sets)


class _Lines:
    """Collect a process's stderr lines in a thread, so the test can wait for one."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append(line)

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in ln for ln in self.lines):
            assert time.monotonic() < deadline, self.lines
            time.sleep(0.005)

    def text(self) -> str:
        self.thread.join(timeout=30)
        return "".join(self.lines)


def _wait_until_training(proc: subprocess.Popen, run_dir: Path) -> None:
    """The loop has started once the metrics log opened its TensorBoard file (after the
    update compiled)."""
    deadline = time.monotonic() + 180
    while not list(run_dir.glob("events.out.tfevents.*")):
        assert proc.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.005)


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM at their default action, as in a user's terminal. A
    shell without job control (a CI script, ``cmd &``) starts background jobs with SIGINT
    ignored, and the CLI leaves an ignored signal ignored, as ``nohup`` expects."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_at_a_boundary_with_a_checkpoint_and_resume_is_exact(
        sig, tmp_path, tmp_path_factory):
    env = _env(tmp_path_factory)
    ref, run_dir = tmp_path / "ref", tmp_path / "stopped"
    done = subprocess.run(_train(ref, ITERATIONS, FAST, EVERY), env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(_train(run_dir, ITERATIONS, FAST, EVERY), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 180
    while not (seen := runs.list_checkpoints(run_dir)):  # iterations are logged
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.002)
    time.sleep(0.02)  # some iterations past that checkpoint, before the next one
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 128 + sig, proc.stderr.read()
    err = proc.stderr.read().strip().splitlines()
    name = signal.Signals(sig).name
    assert err[0] == (f"{name}: stopping after this iteration and writing a checkpoint "
                      "(Ctrl-C again to exit at once)"), err
    # stopped at the next boundary, almost always between two regular checkpoints
    stopped_at = runs.list_checkpoints(run_dir)[-1]
    print(f"\n{sig!r}: checkpoint {seen[-1]} seen, stopped at {stopped_at}")
    assert seen[-1] <= stopped_at < ITERATIONS
    regular = list(range(EVERY, stopped_at + 1, EVERY))
    assert runs.list_checkpoints(run_dir) == sorted({*regular, stopped_at})[-2:]
    resume = f"adaptrl train --resume {shlex.quote(str(run_dir))}"
    assert err[-1] == (f"{name}: stopped at iteration {stopped_at} of {ITERATIONS} "
                       f"(checkpointed); to continue: {resume}"), err
    assert len(err) == 2, err
    # the metrics of every iteration done are on disk with the checkpoint
    assert [r["iteration"] for r in runs.read_metrics(run_dir)] == list(range(stopped_at))
    # the printed command continues the run, which ends exactly like the uninterrupted one
    argv = shlex.split(err[-1].split("to continue: ")[1])
    assert argv[0] == "adaptrl"
    resumed = subprocess.run(_cmd(*argv[1:]), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / runs.METRICS_FILE).read_bytes() == (ref / runs.METRICS_FILE).read_bytes()
    last = f"checkpoints/ckpt-{ITERATIONS:08d}.msgpack"
    assert (run_dir / last).read_bytes() == (ref / last).read_bytes()
    assert runs.list_checkpoints(run_dir) == runs.list_checkpoints(ref) == [
        ITERATIONS - EVERY, ITERATIONS]
    untimed = lambda d: {k: v for k, v in read_tb_scalars(d).items()  # noqa: E731
                         if not k.startswith("time/")}
    assert untimed(run_dir) == untimed(ref)


def test_a_second_ctrl_c_exits_at_once(tmp_path, tmp_path_factory):
    env = _env(tmp_path_factory)
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(_train(run_dir, 3, SLOW, 1), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    lines = _Lines(proc)
    _wait_until_training(proc, run_dir)
    proc.send_signal(signal.SIGINT)
    lines.wait_for("stopping after this iteration")
    proc.send_signal(signal.SIGINT)  # inside the same (slow) iteration
    t0 = time.monotonic()
    # the default action of SIGINT: the process dies by the signal (a shell shows 130),
    # without waiting for the iteration to end or writing anything more
    assert proc.wait(timeout=60) == -signal.SIGINT, lines.text()
    assert time.monotonic() - t0 < 5
    assert "stopped at iteration" not in lines.text()
    # what is on disk is a consistent run: resuming finishes it
    resumed = subprocess.run(_cmd("train", "--resume", str(run_dir)), env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert runs.list_checkpoints(run_dir) == [2, 3]


def test_the_library_loop_stops_when_asked(tmp_path):
    """``runs.train(should_stop=...)``: asked at each iteration boundary; the iterations
    done since the last checkpoint are checkpointed, and resuming equals an uninterrupted
    run."""
    sets = ["algo.meta_batch_size=2", "algo.hidden=[8]", "algo.shots=3", "iterations=7",
            "checkpoint_every=3", "keep_checkpoints=5"]
    config = runs.resolve("maml-vpg", "sinusoid", sets=sets)
    for name in ("ref", "stopped", "early"):
        runs.create_run(tmp_path / name, config)
    ref = runs.train(tmp_path / "ref")
    asked: list[int] = []

    def after_five() -> bool:
        asked.append(len(asked))
        return len(asked) > 5

    state = runs.train(tmp_path / "stopped", should_stop=after_five)
    assert int(state["iteration"]) == 5 and len(asked) == 6
    assert runs.list_checkpoints(tmp_path / "stopped") == [3, 5]
    # stopped before any iteration: nothing is written, and resume starts from the start
    state = runs.train(tmp_path / "early", should_stop=lambda: True)
    assert int(state["iteration"]) == 0 and runs.list_checkpoints(tmp_path / "early") == []
    for name in ("stopped", "early"):
        final = runs.train(tmp_path / name, resume=True)
        assert (tmp_path / name / "metrics.csv").read_bytes() == (
            tmp_path / "ref" / "metrics.csv").read_bytes()
        assert all(bool((a == b).all()) for a, b in zip(
            jax.tree.leaves(final), jax.tree.leaves(ref), strict=True))
