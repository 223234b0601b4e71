"""Hostile run files: corrupted checkpoints (bit flips, truncation, junk, valid msgpack of
the wrong shape, pickles) and metrics files go through the real loaders in-process — only
success or a short :class:`UserError` may come out. Then a handful of real ``adaptrl``
processes check that each kind of bad input ends with exit status 2 and exactly one
``error:`` line on stderr.

Example counts (derandomised): checkpoints 3,500, metrics 1,000 (with
``test_config_fuzz.py``: 10,500 in all).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adaptrl import runs
from adaptrl.errors import UserError

FUZZ = dict(deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate, Phase.shrink])
SCALE = float(os.environ.get("ADAPTRL_FUZZ_SCALE", "1"))

TINY = {
    ("maml-vpg", "sinusoid"): ["algo.meta_batch_size=2", "algo.hidden=[8]"],
    ("rl2", "bandit"): ["algo.trials_per_iteration=2", "algo.minibatches=1", "algo.hidden=8",
                        "algo.trial_episodes=6"],
}


def make_run(root: Path, algo: str, tasks: str) -> tuple[Path, runs.ResolvedConfig, dict]:
    """A run directory with a committed checkpoint at iteration 0 (no training needed)."""
    config = runs.resolve(algo, tasks, sets=TINY[(algo, tasks)])
    run_dir = root / f"{algo}-{tasks}"
    runs.create_run(run_dir, config)
    template = config.algorithm().init(key=jax.random.PRNGKey(config.run.seed))
    runs.save_checkpoint(run_dir, template, keep=3, config=config)
    return run_dir, config, template


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt-fuzz")
    out = []
    for algo, tasks in TINY:
        run_dir, config, template = make_run(root, algo, tasks)
        base = run_dir / "checkpoints" / "ckpt-00000000"
        data = base.with_suffix(".msgpack").read_bytes()
        meta = json.loads(base.with_suffix(".json").read_text())
        out.append((run_dir, config, template, data, meta))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield out
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 500, f"peak memory grew by {grown_mib:.0f} MiB while fuzzing"


def _mutate_structure(data: bytes, rnd: random.Random) -> bytes:
    """Valid msgpack that decodes to the wrong tree: a leaf replaced, a key dropped or added."""
    tree = serialization.msgpack_restore(data)
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        paths.append(path)

    walk(tree, ())
    path = rnd.choice([p for p in paths if p])
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    choice = rnd.randrange(7)
    if choice == 0:
        del parent[path[-1]]
    elif choice == 1:
        parent[path[-1]] = np.zeros((rnd.randrange(1, 5),) * rnd.randrange(1, 3), np.float32)
    elif choice == 2:
        parent[path[-1]] = rnd.choice(["a string", None, 3, 2.5, [1, 2], {"x": 1}, b"raw"])
    elif choice == 3:
        parent["extra"] = np.ones(3)
    elif choice == 4:
        leaf = parent[path[-1]]
        if isinstance(leaf, np.ndarray):
            parent[path[-1]] = leaf.astype(np.float64 if leaf.dtype != np.float64 else np.int32)
    elif choice == 5:
        leaf = parent[path[-1]]
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f" and leaf.size:
            leaf = leaf.copy()
            leaf.flat[0] = np.nan
            parent[path[-1]] = leaf
    else:
        tree = rnd.choice([[], "state", 7, {"params": None}])
    return serialization.msgpack_serialize(tree)


@st.composite
def corrupted(draw):
    which = draw(st.integers(0, len(TINY) - 1))
    kind = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "junk", "structure",
                                 "structure", "pickle", "empty", "valid"]))
    seed = draw(st.integers(0, 2**32 - 1))
    meta_kind = draw(st.sampled_from(["rehash", "rehash", "rehash", "stale", "junk",
                                      "other-config", "bad-size"]))
    return which, kind, seed, meta_kind


def apply(kind: str, data: bytes, rnd: random.Random) -> bytes:
    raw = bytearray(data)
    if kind == "flip":
        for _ in range(rnd.randrange(1, 4)):
            i = rnd.randrange(len(raw))
            raw[i] ^= 1 << rnd.randrange(8)
        return bytes(raw)
    if kind == "truncate":
        return bytes(raw[: rnd.randrange(len(raw))])
    if kind == "insert":
        i = rnd.randrange(len(raw))
        return bytes(raw[:i] + rnd.randbytes(rnd.randrange(1, 20)) + raw[i:])
    if kind == "junk":
        return rnd.randbytes(rnd.randrange(0, 300))
    if kind == "structure":
        return _mutate_structure(data, rnd)
    if kind == "pickle":
        return pickle.dumps({"params": Evil()})
    if kind == "empty":
        return b""
    return data


@settings(max_examples=max(1, round(3500 * SCALE)), **FUZZ)
@given(case=corrupted())
def test_fuzz_checkpoints(targets, case, tmp_path_factory, monkeypatch):
    which, kind, seed, meta_kind = case
    run_dir, config, template, data, meta = targets[which]
    rnd = random.Random(seed)
    bad = apply(kind, data, rnd)
    new_meta = dict(meta)
    if meta_kind in ("rehash", "other-config", "bad-size"):
        new_meta["sha256"] = hashlib.sha256(bad).hexdigest()
    if meta_kind == "other-config":
        other = targets[1 - which][1]
        new_meta["config"] = rnd.choice([other.to_json(), {"format": 1}, [], "x"])
    if meta_kind == "bad-size":
        new_meta["bytes"] = rnd.choice([-1, 0, 10**12, "big"])
    meta_bytes = json.dumps(new_meta).encode()
    if meta_kind == "junk":
        meta_bytes = rnd.choice([b"", b"{", b"[]", b"null", rnd.randbytes(40),
                                 b'{"sha256": 5}', b"[" * 50_000])
    base = run_dir / "checkpoints" / "ckpt-00000000"
    base.with_suffix(".msgpack").write_bytes(bad)
    base.with_suffix(".json").write_bytes(meta_bytes)
    monkeypatch.chdir(tmp_path_factory.getbasetemp())
    t0 = time.perf_counter()
    try:
        state = runs.load_checkpoint(run_dir, template, config=config)
    except UserError as e:
        assert str(e) and len(str(e)) < 1000
    else:
        assert int(state["iteration"]) == 0
        assert runs._tree_signature(state) == runs._tree_signature(template)
    assert time.perf_counter() - t0 < 5.0
    assert not (tmp_path_factory.getbasetemp() / "PWNED").exists()


@settings(max_examples=max(1, round(1000 * SCALE)), **FUZZ)
@given(rows=st.lists(st.one_of(
    st.tuples(st.integers(0, 20), st.floats(allow_nan=True)).map(
        lambda r: f"{r[0]},{r[1]}\r\n".encode()),
    st.binary(max_size=20), st.just(b"5,1.0"), st.just(b"x,y\r\n")), max_size=12),
    header=st.sampled_from([b"iteration,loss\r\n", b"", b"loss,iteration\r\n", b"\xff\r\n"]),
    start=st.integers(0, 25))
def test_fuzz_metrics_files(rows, header, start, tmp_path_factory):
    run_dir = tmp_path_factory.getbasetemp() / "metrics-fuzz"
    run_dir.mkdir(exist_ok=True)
    (run_dir / runs.METRICS_FILE).write_bytes(header + b"".join(rows))
    got = runs.read_metrics(run_dir)
    assert all(set(r) == {"iteration", "loss"} for r in got)
    head, kept = runs._read_metric_lines(run_dir / runs.METRICS_FILE)
    assert all(line.endswith(b"\n") for _, line, _ in kept)


# ---- the command line ------------------------------------------------------------------
def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("ADAPTRL_FAULT_NAN_AT", None)
    return subprocess.Popen([sys.executable, "-m", "adaptrl.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_hostile_inputs_exit_2_with_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("iterations: [1, 2\nalgo: {")
    (tmp_path / "deep.yaml").write_text("x: " + "[" * 3000 + "]" * 3000)
    (tmp_path / "evil.yaml").write_text("algo: !!python/object/apply:os.system ['touch PWNED']")
    flipped, _, _ = make_run(tmp_path / "flipped", "maml-vpg", "sinusoid")
    ckpt = flipped / "checkpoints" / "ckpt-00000000.msgpack"
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    ckpt.write_bytes(bytes(raw))
    other, _, _ = make_run(tmp_path / "other", "maml-vpg", "sinusoid")
    rl2_dir, _, _ = make_run(tmp_path / "rl2", "rl2", "bandit")
    (other / runs.CONFIG_FILE).write_bytes((rl2_dir / runs.CONFIG_FILE).read_bytes())
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / runs.CONFIG_FILE).write_bytes(b"\x00\x01{{{")
    train = ["train", "maml-vpg", "--tasks", "sinusoid", "--out", str(tmp_path / "new")]
    cases = {
        "malformed YAML": [*train, "--config", str(tmp_path / "bad.yaml")],
        "nests too deeply": [*train, "--config", str(tmp_path / "deep.yaml")],
        "malformed YAML at line 1": [*train, "--config", str(tmp_path / "evil.yaml")],
        "out of range": [*train, "--set", "algo.meta_batch_size=" + "9" * 30],
        "unknown task family": ["train", "maml-vpg", "--tasks", "no-such-family"],
        "hash mismatch": ["train", "--resume", str(flipped)],
        "belongs to another run": ["train", "--resume", str(other)],
        "malformed run config": ["train", "--resume", str(garbage)],
    }
    procs = {expect: _cli(args, tmp_path) for expect, args in cases.items()}
    for expect, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (expect, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (expect, err)
        assert expect in lines[0], (expect, lines[0])
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "new" / "checkpoints").exists()
