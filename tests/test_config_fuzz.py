"""Hostile configs: generated YAML files, ``--set`` items and run ``config.json`` files go
through the real loaders in-process. The only outcomes allowed are success or a
:class:`UserError` with a short message — no other exception, no hang, no memory blow-up,
and nothing a file says is ever executed.

Example counts (all derandomised, so every run checks the same inputs): YAML 3,500,
``--set`` 1,500, run configs 1,000 — 6,000 here, plus the checkpoint and metrics fuzzing
of ``test_reliability_fuzz.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adaptrl import config as cfg
from adaptrl import runs
from adaptrl.algos import REGISTRY as ALGOS
from adaptrl.errors import UserError
from adaptrl.tasks import REGISTRY as FAMILIES

FUZZ = dict(deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate, Phase.shrink])
#: scale the example counts (e.g. 10 for a long local fuzzing session)
SCALE = float(os.environ.get("ADAPTRL_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, round(n * SCALE))

RUN_KEYS = [f.name for f in dataclasses.fields(runs.RunSettings)]
ALGO_KEYS = sorted({f.name for e in ALGOS.values() for f in dataclasses.fields(e.cls.Config)})
TASK_KEYS = sorted({f.name for e in FAMILIES.values() for f in dataclasses.fields(e.factory)})
ALGO_NAMES = sorted(ALGOS)
FAMILY_NAMES = sorted(FAMILIES)

NASTY_YAML = [
    # an "alias bomb": 10^9 references if expanded
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
    "x: " + "[" * 5000 + "]" * 5000,
    "x: " + "{a: " * 3000 + "1" + "}" * 3000,
    "iterations: " + "9" * 5000,
    "iterations: 1e400",
    "seed: .nan",
    "iterations: !!python/object/apply:os.system ['touch PWNED']",
    "!!python/object/new:os.system [touch PWNED]",
    "algo: !!python/name:os.system",
    "tasks: !!binary aGVsbG8=",
    "iterations: 2\niterations: 3",
    "? [a, b]\n: 1",
    "\ufeffiterations: 3",
    "iterations: 3\x00",
    "algo:\n  hidden: [" + ", ".join(["4"] * 1000) + "]",
    "algo: {hidden: !!set {1, 2}}",
    "tasks: {arms: 2001-01-01}",
    "- just\n- a list",
    "'a string'",
    "",
    "a" * 1_100_000,
    "%YAML 9.9\n---\na: 1",
    "x: *undefined_alias",
    "\t- bad: indentation",
]


def plausible() -> st.SearchStrategy:
    return st.one_of(
        st.integers(-3, 12), st.floats(-2, 2, allow_nan=False), st.booleans(),
        st.sampled_from(["trpo", "ppo", "vpg", "linear", "learned", "none"]),
        st.lists(st.integers(1, 16), min_size=1, max_size=3))


def hostile() -> st.SearchStrategy:
    scalars = st.one_of(
        st.integers(), st.integers(-(2**80), 2**80),
        st.sampled_from([10**9, 10**9 + 1, 10**12 + 1, -(10**30), 2**63, 1e12, 1e13]),
        st.floats(), st.none(), st.text(max_size=20), st.binary(max_size=8))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def value() -> st.SearchStrategy:
    return st.one_of(plausible(), plausible(), hostile())


def key(names: list[str]) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(names), st.sampled_from(names), st.text(max_size=12),
                     st.integers(-3, 3))


def config_data() -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={
        "run": st.dictionaries(key(RUN_KEYS), value(), max_size=3),
        "algo": st.one_of(st.dictionaries(key(ALGO_KEYS), value(), max_size=5), value()),
        "tasks": st.one_of(st.dictionaries(key(TASK_KEYS), value(), max_size=3), value()),
    })


def yaml_text() -> st.SearchStrategy:
    def dump(data):
        run = data.pop("run", {})
        out = {**{k: v for k, v in run.items()}, **data}
        try:
            return yaml.safe_dump(out)
        except yaml.YAMLError:
            return "a: 1"

    mutations = st.lists(st.tuples(st.integers(0, 400), st.text(
        alphabet="{}[]:,&*!|>-'\"\n\t #%@`?\\", max_size=3)), max_size=3)

    def mutate(text_and_edits):
        text, edits = text_and_edits
        for pos, junk in edits:
            pos = pos % (len(text) + 1)
            text = text[:pos] + junk + text[pos + 1:]
        return text

    generated = st.tuples(config_data().map(dump), mutations).map(mutate)
    return st.one_of(generated, generated, generated, st.sampled_from(NASTY_YAML),
                     st.text(max_size=200))


def names(registry: list[str]) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(registry), st.sampled_from(registry),
                     st.sampled_from(registry), st.text(max_size=12))


def check_user_error(fn, *args, **kwargs):
    """Run a loader: success or a short one-line-able UserError, in bounded time."""
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
    except UserError as e:
        message = str(e)
        assert message and len(message) < 2000, message[:200]
        out = None
    assert time.perf_counter() - t0 < 5.0, "a loader took too long"
    return out


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 500, f"peak memory grew by {grown_mib:.0f} MiB while fuzzing"


@settings(max_examples=examples(3500), **FUZZ)
@given(text=yaml_text(), algo=names(ALGO_NAMES), tasks=names(FAMILY_NAMES),
       sets=st.lists(st.text(max_size=30), max_size=2))
def test_fuzz_yaml_config(text, algo, tasks, sets):
    data = check_user_error(cfg.load_yaml, text, source="fuzz.yaml")
    if data is None:
        return
    resolved = check_user_error(runs.resolve, algo, tasks, file_data=data, sets=sets)
    if resolved is not None:
        # a config that loads must survive its own round trip through config.json
        again = runs.config_from_json(json.loads(json.dumps(resolved.to_json())), source="rt")
        assert again == resolved


@settings(max_examples=examples(1500), **FUZZ)
@given(algo=names(ALGO_NAMES), tasks=names(FAMILY_NAMES),
       items=st.lists(st.tuples(
           st.one_of(key(RUN_KEYS).map(str), key(ALGO_KEYS).map(lambda k: f"algo.{k}"),
                     key(TASK_KEYS).map(lambda k: f"tasks.{k}"), st.text(max_size=15)),
           st.one_of(value().map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
                     st.text(max_size=30), st.sampled_from(NASTY_YAML[1:6]))),
           max_size=4))
def test_fuzz_set_items(algo, tasks, items):
    sets = [f"{k}={v}" for k, v in items]
    check_user_error(runs.resolve, algo, tasks, sets=sets)


def _valid_run_configs() -> list[dict]:
    out = []
    for algo, tasks in [("maml-trpo", "point-nav"), ("rl2", "bandit"), ("maml-vpg", "sinusoid"),
                        ("rl2", "tabular-mdp")]:
        out.append(runs.resolve(algo, tasks).to_json())
    return out


VALID_RUN_CONFIGS = _valid_run_configs()


@st.composite
def run_config_json(draw) -> bytes:
    data = json.loads(json.dumps(draw(st.sampled_from(VALID_RUN_CONFIGS))))
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from(["top", "algo_options", "task_options"]))
        target = data if section == "top" or not isinstance(data.get(section), dict) else \
            data[section]
        k = draw(st.one_of(st.sampled_from(sorted(target) or ["x"]), st.text(max_size=8)))
        action = draw(st.sampled_from(["set", "set", "delete"]))
        if action == "delete":
            target.pop(k, None)
        else:
            target[k] = draw(value())
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        text = "{}"
    if draw(st.booleans()) and draw(st.booleans()):  # truncate or flip a byte
        raw = bytearray(text.encode())
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if draw(st.booleans()):
            raw = raw[:pos]
        elif raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(raw)
    return text.encode()


@settings(max_examples=examples(1000), **FUZZ)
@given(raw=st.one_of(run_config_json(), run_config_json(), run_config_json(),
                     st.binary(max_size=64),
                     st.sampled_from([b"[" * 100_000, b'{"format": 1' + b"9" * 5000 + b"}",
                                      b"1" * 6000, b"\xff\xfe\x00", b'"\\ud800"'])))
def test_fuzz_run_config_json(raw, tmp_path_factory):
    run_dir = tmp_path_factory.getbasetemp() / "fuzz-run-config"
    run_dir.mkdir(exist_ok=True)
    (run_dir / runs.CONFIG_FILE).write_bytes(raw)
    check_user_error(runs.load_run, run_dir)


def test_nothing_is_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in NASTY_YAML:
        if "PWNED" in text:
            with pytest.raises(UserError):
                runs.resolve("maml-vpg", "sinusoid",
                             file_data=cfg.load_yaml(text, source="evil.yaml"))
    assert not (tmp_path / "PWNED").exists()


def test_messages_name_the_problem():
    with pytest.raises(UserError, match="unknown config key algo.hiden"):
        runs.resolve("maml-vpg", "sinusoid", sets=["algo.hiden=[8]"])
    with pytest.raises(UserError, match="out of range"):
        runs.resolve("maml-vpg", "sinusoid", sets=["algo.meta_batch_size=" + "9" * 40])
    with pytest.raises(UserError, match="nests too deeply|too large"):
        cfg.load_yaml(NASTY_YAML[1], source="deep.yaml")
    with pytest.raises(UserError, match="too large"):
        cfg.load_yaml(NASTY_YAML[0], source="bomb.yaml")
    with pytest.raises(UserError, match="unknown task family 'nope'"):
        runs.resolve("maml-vpg", "nope")
    with pytest.raises(UserError, match="malformed YAML"):
        cfg.load_yaml("iterations: " + "9" * 5000, source="big.yaml")
    with pytest.raises(UserError, match="sensible size"):
        runs.resolve("maml-vpg", "sinusoid", sets=["algo.inner_lr=" + "9" * 400])
    long_value = "x" * 10_000
    with pytest.raises(UserError) as e:
        runs.resolve("maml-vpg", "sinusoid", sets=[f"algo.outer={long_value}"])
    assert len(str(e.value)) < 300


def test_config_path_roundtrip(tmp_path: Path):
    config = runs.resolve("rl2", "bandit", sets=["algo.hidden=8", "keep_checkpoints=5"])
    runs.create_run(tmp_path / "r", config)
    assert runs.load_run(tmp_path / "r") == config


def test_step_size_schedule_follows_the_run_length(tmp_path: Path):
    """The paper's RL² step size anneals to 0 over its run; a shorter or longer run keeps
    that unless the user sets the schedule, and a run cannot be extended past its end."""
    anneal = runs.ANNEAL
    assert getattr(runs.resolve("rl2", "bandit").algo_options, anneal) == 1000
    assert getattr(runs.resolve("rl2", "bandit", overrides={"iterations": 200}).algo_options,
                   anneal) == 200
    assert getattr(runs.resolve("rl2", "bandit", sets=["iterations=300"]).algo_options,
                   anneal) == 300
    for sets in (["iterations=300", f"algo.{anneal}=50"], ["iterations=300", f"{anneal}=50"]):
        assert getattr(runs.resolve("rl2", "bandit", sets=sets).algo_options, anneal) == 50
    config = runs.resolve("rl2", "bandit", file_data={"algo": {anneal: 0}, "iterations": 7})
    assert getattr(config.algo_options, anneal) == 0
    config = runs.resolve("rl2", "bandit", sets=["algo.hidden=8", "iterations=3"])
    runs.create_run(tmp_path / "r", config)
    with pytest.raises(UserError, match="step size reaches 0 at iteration 3"):
        runs.extend_run(tmp_path / "r", 5)
    assert runs.load_run(tmp_path / "r") == config  # nothing rewritten


def test_extending_a_run_waits_for_no_trainer(tmp_path: Path):
    config = runs.resolve("maml-vpg", "sinusoid", sets=["iterations=3"])
    runs.create_run(tmp_path / "r", config)
    with runs._locked(tmp_path / "r"), pytest.raises(UserError, match="another process"):
        runs.extend_run(tmp_path / "r", 5)
    assert runs.load_run(tmp_path / "r") == config
    assert runs.extend_run(tmp_path / "r", 5).run.iterations == 5
