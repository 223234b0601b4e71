"""The command line: a tiny train + eval round trip, and one-line errors with status 2."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from adaptrl.cli import _curve_table, listing_table, main
from adaptrl.errors import UserError
from adaptrl.progress import PlainProgress, progress_bar

README = Path(__file__).resolve().parents[1] / "README.md"

TINY = ["--set", "algo.meta_batch_size=2", "--set", "algo.episodes_per_task=2",
        "--set", "tasks.horizon=5", "--set", "algo.hidden=[8]", "--set", "algo.eval_episodes=2"]


def test_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "maml-trpo", "--tasks", "point-nav", "--iterations", "2",
                 "--out", str(out), *TINY]) == 0
    assert (out / "config.json").exists() and (out / "metrics.csv").exists()
    assert list((out / "checkpoints").glob("ckpt-*.msgpack"))
    assert list(out.glob("events.out.tfevents.*"))
    # stderr is not a terminal here: plain progress lines, the first after iteration 1
    err = capsys.readouterr().err.splitlines()
    progress = [ln for ln in err if ": iteration " in ln]
    assert progress[0].startswith("maml-trpo on point-nav: iteration 1/2, elapsed ")
    assert progress[-1].startswith("maml-trpo on point-nav: iteration 2/2, elapsed ")
    assert all(", eta " in ln and "return_step1=" in ln for ln in progress)
    assert main(["eval", str(out), "--num-tasks", "5", "--adapt-steps", "2", "--json",
                 "--plot", str(tmp_path / "curve.png")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1
    result = json.loads(printed[0])
    assert {"algo", "tasks", "split", "num_tasks", "curve", "optimum"} <= set(result)
    assert result["algo"] == "maml-trpo" and result["tasks"] == "point-nav"
    assert result["split"] == "test" and result["num_tasks"] == 5
    assert [p["seen"] for p in result["curve"]] == [0, 1, 2]
    assert result["unit"] == "gradient_steps"
    assert result["axis"] == "gradient steps taken before scoring (each on 2 episodes)"
    # it names the checkpoint it scored, and that nothing of the family was changed
    assert result["checkpoints"] == [{"run": str(out), "iteration": 2}]
    assert result["task_changes"] == {}
    for p in result["curve"]:
        assert p["ci_low"] <= p["iqm"] <= p["ci_high"]
    assert (tmp_path / "curve.png").stat().st_size > 1000
    # the same evaluation again gives the same numbers
    assert main(["eval", str(out), "--num-tasks", "5", "--adapt-steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result
    assert_readme_documents(result)

    # out-of-distribution meta-test: goals beyond the training range, recorded (the same
    # sizes as above: the moved goals are data, so the compiled curve is reused)
    ood = ["eval", str(out), "--num-tasks", "5", "--adapt-steps", "2",
           "--set", "tasks.goal_low=0.5", "--set", "tasks.goal_high=0.7"]
    assert main([*ood, "--json"]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert moved["task_changes"] == {"goal_low": 0.5, "goal_high": 0.7}
    assert moved["optimum"] < result["optimum"]  # farther goals: a lower optimal return
    assert main(ood) == 0
    table = " ".join(capsys.readouterr().out.split())
    assert "meta-test family changed from training: tasks.goal_low=0.5, tasks.goal_high=0.7" in (
        table)
    assert "scored checkpoint: iteration 2" in table and "gradient steps" in table
    # options that the trained policy depends on are refused in one line, as are unknowns
    for item, needle in [("tasks.horizon=7", "tasks.horizon changes more than the task "
                          "distribution"), ("tasks.max_action=0.2", "tasks.max_action"),
                         ("tasks.bogus=1", "tasks.bogus is not an option of this family"),
                         ("algo.inner_lr=1", "eval --set takes only tasks.KEY=VALUE")]:
        assert main(["eval", str(out), "--set", item]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
        assert "tasks.goal_low, tasks.goal_high" in lines[0] or "algo" in item


def test_plot_curves_mean_center(tmp_path):
    """The means-only plot (the RL² benchmarks' per-episode curves of 0/1 rewards): one line
    per strategy, its band the given interval, a PNG of the usual size."""
    import matplotlib.image

    from adaptrl.evaluation.plots import plot_curves

    curve = [{"seen": e, "mean": m, "ci_low": m - 0.05, "ci_high": m + 0.05}
             for e, m in enumerate([0.5, 0.7, 0.8])]
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
    listed = " ".join(printed.split())  # the ML1 task types are a wrapped list
    for name in REGISTRY:
        assert name in printed or (name.startswith("ml1-") and name[4:] in listed
                                   and "ml1-<task>" in printed), name


def test_reference_strategies_through_eval(capsys):
    assert main(["eval", "--reference", "ucb1", "--reference", "random", "--tasks", "bandit",
                 "--set", "tasks.pulls=1", "--adapt-steps", "9", "--num-tasks", "200",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["algo"] == "ucb1" and result["unit"] == "episodes"
    assert len(result["curve"]) == 10
    # the first episode of the trial is scored having seen nothing: 0, like MAML's step 0
    assert [p["seen"] for p in result["curve"]] == list(range(10))
    assert result["axis"] == "episodes of the trial seen before the scored one"
    assert result["checkpoints"] == [] and result["task_changes"] == {"pulls": 1}
    assert_readme_documents(result)
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


def test_reference_for_an_unsupported_family_names_it(capsys):
    """point-nav and point-nav-sparse are one class: the message talks about the family
    the user named."""
    assert main(["eval", "--reference", "gittins", "--tasks", "point-nav"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "does not support family 'point-nav' " in err[0] and "sparse" not in err[0], err
    assert "strategies for point-nav: random" in err[0]


@pytest.mark.parametrize("argv, needle", [
    (["--iterations", "-1"], "error: --iterations must be >= 1, got -1"),
    (["--iterations", "0"], "error: --iterations must be >= 1, got 0"),
    (["--seed", "-2"], "error: --seed must be in [0, 2**31), got -2"),
    (["--set", "checkpoint_every=0"], "error: checkpoint_every must be >= 1, got 0"),
    (["--set", "keep_checkpoints=0"], "error: keep_checkpoints must be >= 1, got 0"),
])
def test_run_options_are_named_as_the_user_gave_them(argv, needle, tmp_path, capsys):
    assert main(["train", "maml-trpo", "--tasks", "point-nav", "--out", str(tmp_path / "r"),
                 *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [needle]
    assert not (tmp_path / "r").exists()


def test_bare_command_prints_the_usage_with_the_commands(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: adaptrl")
    for command in ("tasks", "algos", "train", "eval", "demo"):
        assert f"    {command} " in captured.err, command


def test_unprefixed_set_goes_to_its_one_owner_or_is_refused(capsys):
    import dataclasses

    from adaptrl import runs
    from adaptrl.errors import UserError
    from adaptrl.tasks import REGISTRY, register
    from adaptrl.tasks.point_nav import PointNav

    config = runs.resolve("maml-trpo", "point-nav",
                          sets=["inner_lr=0.3", "goal_high=0.4", "checkpoint_every=7"])
    assert config.algo_options.inner_lr == 0.3
    assert config.task_options.goal_high == 0.4 and config.run.checkpoint_every == 7

    @dataclasses.dataclass(frozen=True)
    class NavWithRate(PointNav):  # a user family with an option named like MAML's
        inner_lr: float = 0.0

    register("nav-with-rate", "point-nav with an option named inner_lr")(NavWithRate)
    try:
        with pytest.raises(UserError, match="'inner_lr' is ambiguous: use algo.inner_lr or "
                                            "tasks.inner_lr"):
            runs.resolve("maml-trpo", "nav-with-rate", sets=["inner_lr=0.3"])
        both = runs.resolve("maml-trpo", "nav-with-rate",
                            sets=["algo.inner_lr=0.3", "tasks.inner_lr=2.0"])
        assert both.algo_options.inner_lr == 0.3 and both.task_options.inner_lr == 2.0
    finally:
        del REGISTRY["nav-with-rate"]
    # documented in --help and in the README
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(inner_lr=0.1 means algo.inner_lr) and is refused when more than one has it" in text
    assert "`--set inner_lr=0.1` means `--set algo.inner_lr=0.1`" in README.read_text()


def test_plain_progress_lines_with_a_fake_clock():
    now = [100.0]
    buf = io.StringIO()
    progress = PlainProgress("rl2 on bandit", 50, every=5.0, clock=lambda: now[0], file=buf)
    for it, t in enumerate([130.0, 131.0, 133.0, 136.0, 137.0], start=1):
        now[0] = t
        progress.update(it, {"trial_return": 5.0 + it, "loss": 1.0})
    now[0] = 190.0
    progress.update(50, {"trial_return": 6.5})
    lines = buf.getvalue().splitlines()
    # the first iteration (30 s: compilation) prints at once; the next line waits 5 s
    assert lines == [
        "rl2 on bandit: iteration 1/50, elapsed 0:00:30, eta ?, trial_return=6.000",
        "rl2 on bandit: iteration 4/50, elapsed 0:00:36, eta 0:01:32, trial_return=9.000",
        "rl2 on bandit: iteration 50/50, elapsed 0:01:30, eta 0:00:00, trial_return=6.500",
    ]


def test_progress_bar_keeps_bar_count_and_eta_in_80_columns():
    for label in ("meta-training maml-trpo on point-nav", "rl2 on tabular-mdp",
                  "a label much longer than any terminal line could ever hold " * 2):
        buf = io.StringIO()
        con = Console(file=buf, width=80, force_terminal=True, color_system=None)
        progress = progress_bar(label, 2200, con)
        task = progress.add_task(label, total=2200, info="return_step0=-41.400  "
                                 "return_step1=-15.800  success_step1=0.100")
        progress.update(task, completed=1100)
        con.print(progress.make_tasks_table(progress.tasks))
        lines = buf.getvalue().splitlines()
        assert len(lines) == 1 and len(lines[0]) <= 80, lines
        assert "━━━━━" in lines[0] and "1100/2200" in lines[0] and " eta " in lines[0], lines


def _rendered(table, width: int = 80) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(table)
    return buf.getvalue().splitlines()


def test_tables_fit_80_columns_without_wrapping():
    from adaptrl.algos import REGISTRY as ALGOS
    from adaptrl.cli import family_rows

    algos = [(n, ", ".join(e.kinds), e.description) for n, e in ALGOS.items()]
    for title, columns, rows in [("task families", ("name", "kind", "description"),
                                  family_rows()),
                                 ("algorithms", ("name", "families", "description"), algos)]:
        lines = _rendered(listing_table(title, columns, rows), width=10**4)
        assert len(lines) == len(rows) + 5 and max(map(len, lines)) <= 80, lines  # fits
        for row in rows:  # nothing cut short, cropped or wrapped
            assert any(all(cell in ln for cell in row) for ln in lines), row
    point = {"mean": -1234.567, "iqm": -1234.567, "ci_low": -12345.678, "ci_high": -1234.5,
             "success": 0.25}
    for unit, extra in [
        ("gradient_steps", {"optimum": -9.5, "checkpoints": [
            {"run": f"runs/seed{i}", "iteration": 100_000} for i in range(10)],
            "task_changes": {"goal_low": 0.5, "goal_high": 0.7}}),
        ("episodes", {"trial_total": {"mean": -12345.678, "iqm": -12345.678,
                                      "ci_low": -12345.678, "ci_high": -12345.678},
                      "optimum": 150.2, "checkpoints": [{"run": "r", "iteration": 2200}]}),
        ("episodes", {"checkpoints": [{"run": f"r{i}", "iteration": 2200 - i} for i in range(20)],
                      "task_changes": {"reward_mean": 0.5}}),
    ]:
        result = {"algo": "maml-trpo", "tasks": "point-nav-sparse", "num_tasks": 100_000,
                  "split": "test", "seeds": 10, "unit": unit, "axis": "x" * 60,
                  "curve": [dict(point, seen=k) for k in range(12)], **extra}
        caption = len(extra) + 1
        lines = _rendered(_curve_table(result))
        assert len(lines) == 12 + 5 + caption and max(map(len, lines)) <= 80, lines


def test_readme_example_config_is_valid():
    """The YAML example beside `--config my.yaml` loads through the real config path."""
    from adaptrl import config as cfg
    from adaptrl import runs

    text = README.read_text()
    command = next(ln for ln in text.splitlines() if "--config my.yaml" in ln).split()
    algo, tasks = command[command.index("train") + 1], command[command.index("--tasks") + 1]
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = cfg.load_yaml(example, source="README my.yaml")
    config = runs.resolve(algo, tasks, file_data=data)
    assert data and (config.algo, config.tasks) == ("rl2", "tabular-mdp")
    for key, value in data.get("algo", {}).items():
        assert getattr(config.algo_options, key) == value, key
    for key, value in data.get("tasks", {}).items():
        assert getattr(config.task_options, key) == value, key


def _json_keys(obj) -> set[str]:
    """Every key of an ``eval --json`` object (not the option names in task_changes)."""
    if isinstance(obj, list):
        return set().union(*map(_json_keys, obj)) if obj else set()
    if not isinstance(obj, dict):
        return set()
    return set(obj) | set().union(*(_json_keys(v) for k, v in obj.items()
                                     if k != "task_changes"))


def assert_readme_documents(result: dict) -> None:
    section = README.read_text().split("What `adaptrl eval --json` prints", 1)[1]
    section = section.split("\n## ", 1)[0]
    missing = sorted(k for k in _json_keys(result) if f"`{k}`" not in section)
    assert not missing, f"README does not document eval --json keys {missing}"


def test_plot_legend_has_the_band_and_integer_ticks():
    from adaptrl.evaluation.plots import curve_figure

    curve = [{"seen": k, "mean": -40 + 8 * k, "iqm": -38 + 8 * k, "ci_low": -45 + 8 * k,
              "ci_high": -30 + 8 * k} for k in range(4)]
    res = {"algo": "maml-trpo", "tasks": "point-nav", "num_tasks": 40, "split": "test",
           "seeds": 1, "unit": "gradient_steps", "curve": curve, "optimum": -5.0,
           "axis": "gradient steps taken before scoring (each on 20 episodes)",
           "task_changes": {"goal_high": 0.7}}
    fig = curve_figure([res])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["maml-trpo (IQM)", "maml-trpo (95% CI of the IQM)", "maml-trpo (mean)",
                      "exact optimum"]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks == [0, 1, 2, 3]
    assert ax.get_xlabel() == res["axis"] and "tasks.goal_high=0.7" in ax.get_title()


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """YAML 1.1 reads 3e-4 as a string; a float option takes it as the number it means."""
    from adaptrl import runs

    assert runs.resolve("rl2", "bandit", sets=["algo.lr=3e-4"]).algo_options.lr == 3e-4
    assert runs.resolve("rl2", "bandit", file_data={"algo": {"lr": "1E-3"}}).algo_options.lr \
        == 1e-3
    with pytest.raises(UserError, match="algo.lr must be a number"):
        runs.resolve("rl2", "bandit", sets=["algo.lr=3e-4x"])
