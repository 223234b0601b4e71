"""The command line: a tiny train + eval round trip, and one-line errors with status 2."""

import json
import subprocess
import sys

import pytest

from adaptrl.cli import main

TINY = ["--set", "algo.meta_batch_size=2", "--set", "algo.episodes_per_task=2",
        "--set", "tasks.horizon=5", "--set", "algo.hidden=[8]", "--set", "algo.eval_episodes=2"]


def test_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "maml-trpo", "--tasks", "point-nav", "--iterations", "2",
                 "--out", str(out), *TINY]) == 0
    assert (out / "config.json").exists() and (out / "metrics.csv").exists()
    assert list((out / "checkpoints").glob("ckpt-*.msgpack"))
    assert list(out.glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert main(["eval", str(out), "--num-tasks", "5", "--adapt-steps", "2", "--json",
                 "--plot", str(tmp_path / "curve.png")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1
    result = json.loads(printed[0])
    assert {"algo", "tasks", "split", "num_tasks", "curve", "optimum"} <= set(result)
    assert result["algo"] == "maml-trpo" and result["tasks"] == "point-nav"
    assert result["split"] == "test" and result["num_tasks"] == 5
    assert [p["adaptation_steps"] for p in result["curve"]] == [0, 1, 2]
    for p in result["curve"]:
        assert p["ci_low"] <= p["iqm"] <= p["ci_high"]
    assert (tmp_path / "curve.png").stat().st_size > 1000
    # the same evaluation again gives the same numbers
    assert main(["eval", str(out), "--num-tasks", "5", "--adapt-steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result


def test_plot_curves_mean_center(tmp_path):
    """The means-only plot (the RL² benchmarks' per-episode curves of 0/1 rewards): one line
    per strategy, its band the given interval, a PNG of the usual size."""
    import matplotlib.image

    from adaptrl.evaluation.plots import plot_curves

    curve = [{"adaptation_steps": e, "mean": m, "ci_low": m - 0.05, "ci_high": m + 0.05}
             for e, m in enumerate([0.5, 0.7, 0.8], start=1)]
    res = {"algo": "x", "tasks": "bandit", "unit": "pulls", "curve": curve, "optimum": 0.9}
    path = plot_curves([res], tmp_path / "mean.png", title="t", center="mean")
    assert matplotlib.image.imread(path).shape == (480, 720, 4)
    with pytest.raises(ValueError, match="center"):
        plot_curves([res], tmp_path / "bad.png", center="median")


def test_family_option_reaches_the_family(tmp_path):
    out = tmp_path / "bandit"
    assert main(["train", "maml-vpg", "--tasks", "bandit", "--iterations", "1", "--out", str(out),
                 "--set", "tasks.arms=7", "--set", "algo.meta_batch_size=2",
                 "--set", "algo.episodes_per_task=2", "--set", "algo.hidden=[8]"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["task_options"]["arms"] == 7 and config["algo_options"]["outer"] == "vpg"


@pytest.mark.parametrize("argv, needle", [
    (["train", "maml-nope", "--tasks", "point-nav"], "unknown algorithm 'maml-nope'"),
    (["train", "maml-trpo", "--tasks", "moon-walk"], "unknown task family 'moon-walk'"),
    (["train", "maml-trpo", "--tasks", "point-nav", "--set", "algo.bogus=1"],
     "unknown config key algo.bogus"),
    (["train", "maml-trpo", "--tasks", "point-nav", "--set", "algo.inner_lr=fast"],
     "algo.inner_lr must be a number"),
    (["train", "maml-trpo", "--tasks", "point-nav", "--set", "algo.first_order=3"],
     "algo.first_order must be true or false"),
    (["train", "maml-trpo", "--tasks", "point-nav", "--set", "algo.outer=ppo"],
     "maml-trpo fixes algo.outer"),
    (["train", "maml-trpo", "--tasks", "bandit", "--set", "tasks.arms=1"], "arms"),
    (["train", "maml-trpo", "--tasks", "point-nav", "--iterations", "x"], "invalid int value"),
    (["eval", "/nonexistent/run"], "no such run directory"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_malformed_yaml_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: {inner_lr: [1, 2\n")
    proc = subprocess.run([sys.executable, "-m", "adaptrl.cli", "train", "maml-trpo",
                           "--tasks", "point-nav", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed YAML" in lines[0] and "Traceback" not in proc.stderr


def test_tasks_lists_every_family(capsys):
    from adaptrl.tasks import REGISTRY

    assert main(["tasks"]) == 0
    printed = capsys.readouterr().out
    for name in REGISTRY:
        assert name in printed


def test_reference_strategies_through_eval(capsys):
    assert main(["eval", "--reference", "ucb1", "--reference", "random", "--tasks", "bandit",
                 "--set", "tasks.pulls=1", "--adapt-steps", "9", "--num-tasks", "200",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["algo"] == "ucb1" and result["unit"] == "episodes"
    assert len(result["curve"]) == 10
    random = result["references"][0]
    assert random["algo"] == "random"
    # UCB1 beats random over a 10-pull trial on the same 200 held-out bandits
    assert result["trial_total"]["mean"] > random["trial_total"]["mean"] + 0.5
    assert main(["eval", "--reference", "psrl", "--tasks", "bandit"]) == 2
    assert "does not support" in capsys.readouterr().err


def test_resume_with_more_iterations_equals_a_longer_run(tmp_path):
    short, full = tmp_path / "short", tmp_path / "full"
    common = ["train", "maml-vpg", "--tasks", "bandit", "--set", "algo.meta_batch_size=2",
              "--set", "algo.episodes_per_task=2", "--set", "algo.hidden=[8]",
              "--set", "checkpoint_every=1"]
    assert main([*common, "--iterations", "2", "--out", str(short)]) == 0
    assert main(["train", "--resume", str(short), "--iterations", "4"]) == 0
    assert main([*common, "--iterations", "4", "--out", str(full)]) == 0
    assert (short / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()
    assert main(["train", "--resume", str(short), "--iterations", "1"]) == 2


def test_eval_help_names_every_reference_strategy(capsys):
    from adaptrl.evaluation.reference import REFERENCE

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in REFERENCE:
        assert name in text.split("also score a reference strategy")[1].split("--tasks")[0], name
