"""The tutorials' code runs: their files are written out and their commands run through
the command line (with tiny settings appended, so each takes seconds)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from adaptrl.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"<!-- (file: (\S+)|run) -->\n```\w*\n(.*?)```", re.S)
TINY = {
    "maml-trpo": ["--set", "algo.meta_batch_size=2", "--set", "algo.episodes_per_task=2",
                  "--set", "algo.eval_episodes=2", "--set", "tasks.horizon=8"],
    "rl2": ["--set", "algo.trials_per_iteration=4", "--set", "algo.minibatches=2",
            "--set", "tasks.horizon=8", "--set", "algo.ppo_epochs=1"],
}


def blocks(name: str) -> tuple[dict[str, str], list[list[str]]]:
    files, commands = {}, []
    for _, filename, body in BLOCK.findall((DOCS / name).read_text()):
        if filename:
            files[filename] = body
        else:
            commands += [shlex.split(line) for line in body.splitlines() if line.strip()]
    return files, commands


def tiny(argv: list[str]) -> list[str]:
    argv = argv[1:]  # drop "adaptrl"
    if argv[0] == "train":
        i = argv.index("--iterations")
        argv[i + 1] = "1"
        argv += TINY[argv[1]]
    if argv[0] == "eval":
        i = argv.index("--num-tasks")
        argv[i + 1] = "3"
        argv += ["--adapt-steps", "1"]
    return argv


@pytest.mark.parametrize("doc", ["tutorial_gymnasium.md", "tutorial_jax_family.md"])
def test_tutorial_code_runs(doc, tmp_path, monkeypatch, capsys):
    files, commands = blocks(doc)
    assert files and commands
    for filename, body in files.items():
        (tmp_path / filename).write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned sampler workers inherit sys.path
    for argv in commands:
        assert argv[0] == "adaptrl"
        assert main(tiny(argv)) == 0, argv
    out = capsys.readouterr()
    assert "passes every check" in out.out
    assert "no paper setting" in out.err  # the defaults are stated, not silent


def test_the_tutorial_family_is_the_benchmarked_one():
    files, _ = blocks("tutorial_gymnasium.md")
    assert files["cartpole_tasks.py"] == (DOCS / "tutorials" / "cartpole_tasks.py").read_text()
