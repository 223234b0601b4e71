"""RL² on bandits: a trial of n pulls is said one way, ``algo.trial_episodes=n`` with one
pull per episode; ``tasks.pulls`` != 1 is refused for a new run, and results report the
optimum per trial beside the total per trial."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from adaptrl import runs
from adaptrl.errors import UserError
from adaptrl.evaluation.harness import _result, evaluate_reference
from adaptrl.tasks.bandit import Bandit


def test_rl2_bandit_trials_are_trial_episodes_pulls():
    config = runs.resolve("rl2", "bandit")
    assert config.task_options.pulls == 1 and config.algo_options.trial_episodes == 100
    config = runs.resolve("rl2", "bandit", sets=["algo.trial_episodes=30"])
    assert (config.task_options.pulls, config.algo_options.trial_episodes) == (1, 30)
    with pytest.raises(UserError, match=r"^rl2 on bandit: .*tasks\.pulls must stay 1 "
                                        r"\(tasks\.pulls=30 would make trials of 3000 pulls\); "
                                        r"for 30-pull trials use --set algo\.trial_episodes=30$"):
        runs.resolve("rl2", "bandit", sets=["tasks.pulls=30"])
    with pytest.raises(UserError, match="tasks.pulls must stay 1"):
        runs.resolve("rl2", "bandit", file_data={"tasks": {"pulls": 5}})
    # other algorithms keep pulls per episode; a saved RL² run from before the rule loads
    assert runs.resolve("maml-ppo", "bandit", sets=["tasks.pulls=30"]).task_options.pulls == 30
    old = runs.resolve("rl2", "bandit").to_json()
    old["task_options"]["pulls"] = 10
    assert runs.config_from_json(old, source="old").task_options.pulls == 10


def test_the_command_line_refuses_pulls_for_rl2_in_one_line(tmp_path):
    out = tmp_path / "r"
    res = subprocess.run([sys.executable, "-m", "adaptrl.cli", "train", "rl2", "--tasks",
                          "bandit", "--set", "tasks.pulls=30", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res
    assert lines[0].startswith("error: rl2 on bandit:") and lines[0].endswith(
        "use --set algo.trial_episodes=30"), lines
    assert not out.exists()


def test_results_report_the_optimum_per_trial():
    fam = Bandit(arms=3, pulls=1)
    result = evaluate_reference("ucb1", fam, "bandit", steps=9, num_tasks=50)
    assert len(result["curve"]) == 10
    assert result["trial_optimum"] == pytest.approx(10 * result["optimum"])
    assert result["trial_total"]["mean"] < result["trial_optimum"]
    # a curve over adaptation steps (MAML) has no trials, so no per-trial optimum
    per_seed = [{"return": np.zeros((4, 3))}]
    steps = _result("maml-vpg", "bandit", fam, "gradient_steps", "gradient steps", per_seed,
                    split="test", num_tasks=4, seed=0, checkpoints=[], task_changes={})
    assert "optimum" in steps and "trial_optimum" not in steps and "trial_total" not in steps
