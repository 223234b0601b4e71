"""States a run directory is left in: a run that fails before its first checkpoint leaves
nothing that blocks a retry, and resuming a finished run says so at once. Real
``adaptrl`` processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest
from test_reliability import _env

from adaptrl import runs
from adaptrl.errors import UserError

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


# ---- trust in what was kept ------------------------------------------------------------
def _trained(root: Path, env: dict[str, str]) -> Path:
    """A finished 4-iteration run with checkpoints at 2 and 4."""
    out = root / "r"
    done = adaptrl("train", "maml-vpg", "--tasks", "sinusoid", "--iterations", "4", *TINY,
                   "--set", "checkpoint_every=2", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert runs.list_checkpoints(out) == [2, 4]
    return out


def test_a_newest_checkpoint_without_metadata_is_reported_not_replaced(tmp_path,
                                                                      tmp_path_factory):
    env = _env(tmp_path_factory)
    out = _trained(tmp_path, env)
    config = runs.load_run(out)
    trained = runs.load_trained(out, config)
    algorithm, state = trained  # unpacks as before
    assert trained.checkpoint_iteration == int(state["iteration"]) == 4
    assert runs.load_trained(out, config, 2).checkpoint_iteration == 2
    ckpt = out / "checkpoints"
    (ckpt / "ckpt-00000004.json").unlink()
    before = tree(out)
    lost = (f"error: {ckpt}/ckpt-00000004.msgpack: checkpoint of iteration 4 has no "
            "metadata file (ckpt-00000004.json); delete it to resume from iteration 2")
    for argv in (["train", "--resume", str(out)], ["train", "--resume", str(out),
                                                   "--iterations", "6"],
                 ["eval", str(out), "--num-tasks", "2"]):
        assert one_error_line(adaptrl(*argv, env=env)) == lost, argv
        assert tree(out) == before, argv
    # a save that a kill cut short (its marker is there) is not an error: iteration 2 is
    # the newest committed checkpoint
    (ckpt / "ckpt-00000004.saving").touch()
    assert runs.load_trained(out, config).checkpoint_iteration == 2
    (ckpt / "ckpt-00000004.saving").unlink()
    # the only checkpoint, without metadata: resuming would silently start over
    (ckpt / "ckpt-00000002.json").unlink()
    with pytest.raises(UserError, match=r"delete it to train from the start$"):
        runs.train(out, resume=True)
    # deleting it, as told, resumes from the start and ends like a fresh run
    (ckpt / "ckpt-00000004.msgpack").unlink()
    (ckpt / "ckpt-00000002.msgpack").unlink()
    res = adaptrl("train", "--resume", str(out), env=env)
    assert res.returncode == 0, res.stderr
    assert runs.list_checkpoints(out) == [2, 4]
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "ckpt-00000002.json", "ckpt-00000002.msgpack", "ckpt-00000004.json",
        "ckpt-00000004.msgpack"]


def test_a_refused_resume_changes_nothing_on_disk(tmp_path, tmp_path_factory):
    env = _env(tmp_path_factory)
    out = _trained(tmp_path, env)
    data = out / "checkpoints" / "ckpt-00000004.msgpack"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 1
    data.write_bytes(bytes(raw))
    (out / "checkpoints" / ".ckpt-00000006.msgpack.tmp-1").write_bytes(b"left by a kill")
    before = tree(out)
    for iterations, needle in (("6", "checkpoint is corrupt (hash mismatch); delete it to "
                                     "resume from iteration 2"),
                               ("3", "already at iteration 4; cannot shorten it to 3")):
        err = one_error_line(adaptrl("train", "--resume", str(out), "--iterations",
                                     iterations, env=env))
        assert needle in err, err
        assert tree(out) == before  # config.json still says 4 iterations
    assert runs.load_run(out).run.iterations == 4


def test_checkpoint_metadata_that_disagrees_with_its_file_is_refused(tmp_path):
    config = runs.resolve("maml-vpg", "sinusoid", sets=["algo.meta_batch_size=2",
                                                        "algo.hidden=[8]", "iterations=4"])
    run_dir = tmp_path / "r"
    runs.create_run(run_dir, config)
    template = config.algorithm().init(key=jax.random.PRNGKey(0))
    runs.save_checkpoint(run_dir, template, keep=3, config=config)
    runs.save_checkpoint(run_dir, {**template, "iteration": template["iteration"] + 2},
                         keep=3, config=config)
    meta_path = run_dir / "checkpoints" / "ckpt-00000002.json"
    meta = json.loads(meta_path.read_text())
    hint = "; delete it to resume from iteration 0"
    for field, value, message in (
            ("iteration", 3, "metadata says iteration 3, but the file is checkpoint 2"),
            ("iteration", True, "metadata says iteration True, but the file is checkpoint 2"),
            ("format", 2, "unsupported checkpoint format 2 (this version reads 1)"),
            ("format", None, "unsupported checkpoint format None"),
            ("bytes", meta["bytes"] + 1,
             f"metadata says {meta['bytes'] + 1} bytes, but ckpt-00000002.msgpack holds "
             f"{meta['bytes']}")):
        meta_path.write_text(json.dumps({**meta, field: value}))
        with pytest.raises(UserError) as e:
            runs.load_checkpoint(run_dir, template, config=config)
        assert message in str(e.value) and str(e.value).endswith(hint), str(e.value)
        assert "\n" not in str(e.value)
    meta_path.write_text('{"sha256": ')
    with pytest.raises(UserError, match=r"\(not valid JSON\); delete it to resume from "
                                        r"iteration 0$"):
        runs.load_checkpoint(run_dir, template, config=config)
    meta_path.write_text(json.dumps(meta))
    assert int(runs.load_checkpoint(run_dir, template, config=config)["iteration"]) == 2
