"""States a run directory is left in: a run that fails before its first checkpoint leaves
nothing that blocks a retry, and resuming a finished run says so at once. Real
``adaptrl`` processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from test_reliability import _env

from adaptrl import runs

TINY = ["--set", "algo.meta_batch_size=2", "--set", "algo.hidden=[8]", "--set", "algo.shots=3"]


def adaptrl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adaptrl.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res
    return lines[0]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b""
            for p in sorted(path.rglob("*"))}


def test_an_algorithm_that_cannot_learn_the_family_makes_no_directory(tmp_path,
                                                                      tmp_path_factory):
    env = _env(tmp_path_factory)
    out = tmp_path / "new" / "r"
    res = adaptrl("train", "rl2", "--tasks", "sinusoid", "--out", str(out), env=env)
    assert one_error_line(res) == ("error: rl2 cannot learn sinusoid, a regression family: "
                                   "it learns rl families (see `adaptrl algos`)")
    assert not (tmp_path / "new").exists()


def test_a_run_that_fails_before_its_first_checkpoint_can_be_retried(tmp_path,
                                                                     tmp_path_factory):
    train = ["train", "maml-vpg", "--tasks", "sinusoid", "--iterations", "4", *TINY,
             "--set", "checkpoint_every=3"]
    # a fresh directory (and its parent) is removed again
    out = tmp_path / "parent" / "r"
    bad = adaptrl(*train, "--out", str(out), env=_env(tmp_path_factory, **{runs.FAULT_ENV: "1"}))
    assert "non-finite" in one_error_line(bad) and "no checkpoint yet" in bad.stderr
    assert not (tmp_path / "parent").exists()
    # in a directory the user already had, only what this command wrote goes
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    (mine / "checkpoints" / "README").write_text("and me")
    before = tree(mine)
    bad = adaptrl(*train, "--out", str(mine), env=_env(tmp_path_factory, **{runs.FAULT_ENV: "2"}))
    assert "at iteration 2;" in one_error_line(bad)
    assert tree(mine) == before
    # the same command, the fault gone, now works, in both places
    for d in (out, mine):
        good = adaptrl(*train, "--out", str(d), env=_env(tmp_path_factory))
        assert good.returncode == 0, good.stderr
        assert runs.list_checkpoints(d) == [3, 4]
    assert (mine / "notes.txt").read_text() == "keep me"
    # a failure after a checkpoint keeps the run: it is resumed, not retried
    bad = adaptrl("train", "--resume", str(out), "--iterations", "8",
                  env=_env(tmp_path_factory, **{runs.FAULT_ENV: "7"}))
    assert "checkpoint 6 is the latest" in one_error_line(bad)
    assert runs.list_checkpoints(out) == [3, 4, 6] and (out / runs.CONFIG_FILE).exists()


def test_resuming_a_finished_run_says_it_is_complete_at_once(tmp_path, tmp_path_factory):
    env = _env(tmp_path_factory)
    out = tmp_path / "r"
    done = adaptrl("train", "maml-vpg", "--tasks", "sinusoid", "--iterations", "2", *TINY,
                   "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    before = tree(out)
    hint = (f"{out} is complete at iteration 2; to train it further: adaptrl train --resume "
            f"{out} --iterations M (M > 2)")
    for extra in ([], ["--iterations", "2"]):
        t0 = time.monotonic()
        res = adaptrl("train", "--resume", str(out), *extra, env=env)
        assert res.returncode == 0 and res.stderr.strip() == hint, res
        assert time.monotonic() - t0 < 60
        assert tree(out) == before  # nothing trained, compiled into the run, or rewritten
    # a step size annealed to 0 at the end: training further would change nothing
    rl2 = tmp_path / "rl2"
    done = adaptrl("train", "rl2", "--tasks", "bandit", "--iterations", "1", "--out", str(rl2),
                   "--set", "algo.trials_per_iteration=2", "--set", "algo.minibatches=1",
                   "--set", "algo.trial_episodes=3", "--set", "algo.hidden=8",
                   "--set", "algo.ppo_epochs=1", "--set", "algo.input_layer=0", env=env)
    assert done.returncode == 0, done.stderr
    res = adaptrl("train", "--resume", str(rl2), env=env)
    assert res.returncode == 0 and res.stderr.strip() == (
        f"{rl2} is complete at iteration 1; its step size reached 0 at iteration 1, so start "
        "a new run with a larger --iterations to train longer"), res
