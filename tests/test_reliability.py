"""Reliability of the run loop: the NaN guard (a NaN injected into the loss mid-run is
caught, named, and the run resumes exactly from the last good checkpoint), crashes inside
a checkpoint write, the memory guard, and the run lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adaptrl import runs
from adaptrl.errors import UserError

SINUSOID = ["algo.meta_batch_size=2", "algo.hidden=[8]", "algo.shots=3"]


def _env(tmp_path_factory, **extra: str) -> dict[str, str]:
    cache = tmp_path_factory.getbasetemp() / "jax-cache"
    cache.mkdir(exist_ok=True)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop(runs.FAULT_ENV, None)
    # no progress lines on the piped stderr: what is checked here is the error line alone
    # (tests/test_cli.py checks the progress lines)
    env["ADAPTRL_PROGRESS"] = "off"
    env.update(extra)
    return env


def _train(out: Path, env: dict[str, str], *, resume: bool = False) -> subprocess.Popen:
    if resume:
        args = ["train", "--resume", str(out)]
    else:
        args = ["train", "maml-vpg", "--tasks", "sinusoid", "--iterations", "12", "--out",
                str(out), "--set", "checkpoint_every=3", "--set", "keep_checkpoints=2"]
        for s in SINUSOID:
            args += ["--set", s]
    return subprocess.Popen([sys.executable, "-m", "adaptrl.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_nan_in_loss_is_caught_and_run_resumes_exactly(tmp_path, tmp_path_factory):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "nan"
    ref = _train(ref_dir, _env(tmp_path_factory))
    bad = _train(run_dir, _env(tmp_path_factory, **{runs.FAULT_ENV: "7"}))
    _, err = bad.communicate(timeout=300)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    lines = err.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: non-finite metric 'query_mse_after_adaptation'"), err
    assert "at iteration 7;" in lines[0] and "checkpoint 6 is the latest" in lines[0], err
    # nothing of the bad update was saved; the last good checkpoint is the newest
    assert runs.list_checkpoints(run_dir) == [3, 6]
    assert [r["iteration"] for r in runs.read_metrics(run_dir)] == list(range(7))
    # resume (the fault gone) continues from iteration 6 and ends exactly like the reference
    resumed = _train(run_dir, _env(tmp_path_factory), resume=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert (run_dir / "metrics.csv").read_bytes() == (ref_dir / "metrics.csv").read_bytes()
    last = "checkpoints/ckpt-00000012.msgpack"
    assert (run_dir / last).read_bytes() == (ref_dir / last).read_bytes()


def test_diverged_names_the_parameter(tmp_path, monkeypatch):
    """Non-finite parameters with finite metrics are reported by their path in the state."""
    import jax.numpy as jnp

    config = runs.resolve("maml-vpg", "sinusoid", sets=[*SINUSOID, "iterations=3"])
    runs.create_run(tmp_path / "r", config)
    real = runs.guarded_update

    def poisoned(algorithm, *, nan_at=None):
        update = algorithm.update

        def bad_update(state):
            new, metrics = update(state)
            params = dict(new["params"])
            first = sorted(params)[0]
            params[first] = {k: v * jnp.where(state["iteration"] == 1, jnp.inf, 1.0)
                             for k, v in params[first].items()}
            return dict(new, params=params), metrics

        algorithm.update = bad_update
        return real(algorithm, nan_at=nan_at)

    monkeypatch.setattr(runs.training, "guarded_update", poisoned)
    with pytest.raises(runs.Diverged, match=r"non-finite state\['params'\]\['Dense_0'\].* "
                                            r"at iteration 1; .*no checkpoint yet"):
        runs.train(tmp_path / "r")


def test_crash_inside_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    """A crash at each step of a save — data file rename, commit record rename, pruning of
    the older checkpoint — leaves a loadable newest checkpoint; resuming then finishes
    exactly like an uninterrupted run."""
    sets = [*SINUSOID, "iterations=4", "checkpoint_every=2", "keep_checkpoints=1"]
    config = runs.resolve("maml-vpg", "sinusoid", sets=sets)
    runs.create_run(tmp_path / "ref", config)
    runs.train(tmp_path / "ref")

    class Crash(BaseException):  # like a kill: nothing in the loop catches it
        pass

    real_replace, real_unlink = os.replace, Path.unlink
    for crash_at, survivors in [(0, [2]), (1, [2]), (2, [2, 4])]:
        run_dir = tmp_path / f"crash{crash_at}"
        runs.create_run(run_dir, config)
        renames = []

        def replace(src, dst, _at=crash_at, _renames=renames):
            if "ckpt-00000004" in str(dst):
                _renames.append(dst)
                if len(_renames) == _at + 1:
                    raise Crash
            return real_replace(src, dst)

        def unlink(self, *args, _at=crash_at, **kwargs):
            if _at == 2 and self.name.startswith("ckpt-00000002"):
                raise Crash
            return real_unlink(self, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(Path, "unlink", unlink)
        with pytest.raises(Crash):
            runs.train(run_dir)
        monkeypatch.undo()
        assert runs.list_checkpoints(run_dir) == survivors
        runs.load_checkpoint(run_dir, config.algorithm().init(
            key=__import__("jax").random.PRNGKey(0)), config=config)
        runs.train(run_dir, resume=True)
        ref = tmp_path / "ref"
        assert (run_dir / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
        assert runs.list_checkpoints(run_dir) == runs.list_checkpoints(ref) == [4]
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
            "ckpt-00000004.json", "ckpt-00000004.msgpack"]


def test_memory_guard_refuses_a_run_that_cannot_fit(tmp_path, monkeypatch):
    config = runs.resolve("maml-vpg", "sinusoid", sets=[*SINUSOID, "iterations=2"])
    runs.create_run(tmp_path / "r", config)
    monkeypatch.setattr(runs.training, "_available_memory", lambda: 1)
    with pytest.raises(UserError, match="GiB of memory"):
        runs.train(tmp_path / "r")
    assert runs.list_checkpoints(tmp_path / "r") == []


def test_a_run_cannot_be_trained_twice_at_once(tmp_path):
    config = runs.resolve("maml-vpg", "sinusoid", sets=[*SINUSOID, "iterations=2"])
    runs.create_run(tmp_path / "r", config)
    with runs._locked(tmp_path / "r"), pytest.raises(UserError, match="another process"):
        runs.train(tmp_path / "r")


def test_special_files_are_refused_not_read_forever(tmp_path):
    import jax

    config = runs.resolve("maml-vpg", "sinusoid", sets=SINUSOID)
    run_dir = tmp_path / "r"
    runs.create_run(run_dir, config)
    template = config.algorithm().init(key=jax.random.PRNGKey(0))
    runs.save_checkpoint(run_dir, template, keep=2, config=config)
    data = run_dir / "checkpoints" / "ckpt-00000000.msgpack"
    data.unlink()
    data.symlink_to("/dev/zero")
    with pytest.raises(UserError, match="too large"):
        runs.load_checkpoint(run_dir, template, config=config)
    meta = run_dir / "checkpoints" / "ckpt-00000000.json"
    meta.unlink()
    meta.symlink_to("/dev/zero")
    with pytest.raises(UserError, match="too large"):
        runs.load_checkpoint(run_dir, template, config=config)
    (run_dir / runs.METRICS_FILE).symlink_to("/dev/zero")
    with pytest.raises(UserError, match="not a regular file"):
        runs.MetricsLog(run_dir, start=0)
    assert runs.read_metrics(run_dir) == []
