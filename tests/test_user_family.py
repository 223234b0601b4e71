"""A user's own family named MODULE:CLASS: resolved only to a task-family class, usable in
train, eval and --resume without editing adaptrl; the public checker finds what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adaptrl.cli import main
from adaptrl.errors import UserError
from adaptrl.tasks.base import family_entry

USER_MODULE = textwrap.dedent('''
    import dataclasses
    from pathlib import Path

    import gymnasium as gym
    import jax
    import jax.numpy as jnp
    import numpy as np

    from adaptrl.tasks.base import RLFamily

    CALLED = Path(__file__).with_name("called")


    def make_family(*args, **kwargs):  # a callable that must never be called
        CALLED.write_text("called")
        raise AssertionError("called")


    class NotADataclass(RLFamily):
        pass


    @dataclasses.dataclass
    class Mutable:
        x: int = 0


    @dataclasses.dataclass(frozen=True)
    class Line(RLFamily):
        """A point on a line reaching a hidden goal."""

        horizon: int = 5
        broken: bool = False

        @property
        def observation_space(self):
            return gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

        @property
        def action_space(self):
            return gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def sample_one(self, key):
            return {"goal": jax.random.uniform(key, (), minval=-1.0, maxval=1.0)}

        def reset(self, key, task):
            return jnp.zeros(1, jnp.float32), jnp.zeros(1, jnp.float32)

        def step(self, key, state, action, task):
            pos = state + 0.1 * jnp.clip(action, -1.0, 1.0)
            reward = -jnp.abs(pos[0] - task["goal"])
            if self.broken:  # wrong shape and dtype, and random in the key
                return jnp.zeros(3), pos, reward.astype(jnp.int32), jnp.array(0), {}
            return pos, pos, reward, jnp.array(False), {}


    @dataclasses.dataclass(frozen=True)
    class Fixed(Line):
        """Every task the same, even across splits."""

        def sample_one(self, key):
            return {"goal": jnp.float32(0.5) + 0 * jax.random.uniform(key)}
''')
BOOM = "raise RuntimeError('import-time failure')\n"
TINY = ["--set", "algo.meta_batch_size=2", "--set", "algo.episodes_per_task=2",
        "--set", "algo.hidden=[8]", "--set", "algo.eval_episodes=2"]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "myfams.py").write_text(USER_MODULE)
    (tmp_path / "boomfams.py").write_text(BOOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("myfams", "boomfams"):
        sys.modules.pop(name, None)
    return tmp_path


@pytest.mark.parametrize("name,message", [
    ("myfams:make_family", "is a function, not a task-family class"),
    ("myfams:NotADataclass", "must be a frozen dataclass"),
    ("myfams:Mutable", "is a type, not a task-family class"),
    ("myfams:missing", "module 'myfams' has no 'missing'"),
    ("myfams:__dict__", "is not a task-family class"),
    ("nosuchmodule:Family", "cannot import module 'nosuchmodule'"),
    ("boomfams:X", "importing 'boomfams' failed (RuntimeError: import-time failure)"),
    ("my fams:Line", "must be a registered name or MODULE:CLASS"),
    ("myfams:Line()", "must be a registered name or MODULE:CLASS"),
])
def test_only_task_family_classes_resolve(user_module, name, message):
    with pytest.raises(UserError) as e:
        family_entry(name)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (user_module / "called").exists()  # nothing was called


def test_bad_family_names_are_one_line_exit_2(user_module, capsys):
    for name in ("myfams:make_family", "nosuchmodule:F", "moon-walk"):
        assert main(["train", "maml-trpo", "--tasks", name]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    assert not (user_module / "called").exists()


def test_checker_reports_what_is_wrong(user_module, capsys):
    assert main(["check", "myfams:Line"]) == 0
    assert "ok myfams:Line" in capsys.readouterr().out
    assert main(["check", "myfams:Line", "--set", "tasks.broken=true"]) == 1
    out = capsys.readouterr().out
    assert "step gives observations of shape (3,), the observation space says (1,)" in out
    assert "dtypes must be float32 obs and reward, bool done" in out
    assert main(["check", "myfams:Fixed"]) == 1
    assert "every task is the same: the family has no task variation" in capsys.readouterr().out


def test_train_resume_eval_a_user_family(user_module, tmp_path, capsys):
    """The run directory names MODULE:CLASS; a later process resolves it again."""
    run = tmp_path / "run"
    assert main(["train", "maml-vpg", "--tasks", "myfams:Line", "--iterations", "1",
                 "--out", str(run), *TINY]) == 0
    assert "myfams:Line: no paper setting for maml-vpg; defaults apply" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["tasks"] == "myfams:Line"
    assert main(["train", "--resume", str(run), "--iterations", "2"]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(user_module), *sys.path]))
    cli = [sys.executable, "-m", "adaptrl.cli"]
    proc = subprocess.run([*cli, "eval", str(run), "--num-tasks", "2", "--adapt-steps", "1",
                           "--json"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"] == "myfams:Line"
    # without the module on the path: one line, exit 2
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p != str(user_module))
    proc = subprocess.run([*cli, "eval", str(run)], env=env, capture_output=True, text=True,
                          cwd=Path(run).parent.parent)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot import module 'myfams'" in proc.stderr
