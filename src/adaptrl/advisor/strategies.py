"""Strategies (an algorithm plus its settings), candidates files, and one *trial*: train a
strategy on a family with one seed, meta-test it, record both.

A candidates file (YAML) lists strategies; each has a name, an algorithm and ``set``, the
``--set`` options of ``adaptrl train`` as a mapping::

    candidates:
      - name: trpo-lr0.1
        algo: maml-trpo
        set: {algo.inner_lr: 0.1, algo.hidden: [16], iterations: 15}

``eval`` (optional, per file) sets the meta-test: ``{num_tasks: 20, adapt_steps: 1}``.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

from adaptrl import config as cfg
from adaptrl.errors import UserError

#: the meta-test of a trial unless a candidates file says otherwise
EVAL_DEFAULTS = {"num_tasks": 20, "adapt_steps": 1, "seed": 0}


@dataclasses.dataclass(frozen=True)
class Strategy:
    name: str
    # short label, unique in a candidates file
    algo: str
    # registered algorithm
    sets: tuple[tuple[str, Any], ...] = ()
    # ``--set`` options (KEY, VALUE), e.g. ("algo.inner_lr", 0.1)

    def set_args(self) -> list[str]:
        return [f"{k}={json.dumps(v)}" for k, v in self.sets]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "algo": self.algo, "set": dict(self.sets)}


def parse_candidates(data: Any, *, source: str) -> tuple[list[Strategy], dict[str, Any]]:
    """Strategies and meta-test settings from a parsed candidates file."""
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), list) or \
            not data["candidates"]:
        raise UserError(f"{source}: a candidates file is a mapping with a non-empty list "
                        "'candidates:'")
    unknown = set(data) - {"candidates", "eval"}
    if unknown:
        raise UserError(f"{source}: unknown key {sorted(unknown)[0]!r} (valid: candidates, eval)")
    ev = data.get("eval", {})
    if not isinstance(ev, dict) or set(ev) - set(EVAL_DEFAULTS) or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in ev.values()):
        raise UserError(f"{source}: 'eval' takes integers {', '.join(EVAL_DEFAULTS)}")
    out, names = [], set()
    for i, c in enumerate(data["candidates"]):
        where = f"{source}: candidate {i + 1}"
        if not isinstance(c, dict) or set(c) - {"name", "algo", "set"} or "algo" not in c:
            raise UserError(f"{where}: needs 'algo' (and optional 'name', 'set')")
        sets = c.get("set") or {}
        if not isinstance(c["algo"], str) or not isinstance(sets, dict):
            raise UserError(f"{where}: 'algo' is a name and 'set' a mapping of KEY: VALUE")
        name = str(c.get("name") or f"{c['algo']}-{i + 1}")
        if name in names:
            raise UserError(f"{where}: duplicate name {name!r}")
        names.add(name)
        out.append(Strategy(name, c["algo"], tuple((str(k), v) for k, v in sets.items())))
    return out, {**EVAL_DEFAULTS, **ev}


def load_candidates(path: Path | None) -> tuple[list[Strategy], dict[str, Any]]:
    """The candidates of a YAML file, or the shipped default candidates."""
    if path is None:
        text = resources.files("adaptrl.advisor").joinpath("candidates.yaml").read_text()
        return parse_candidates(cfg.load_yaml(text, source="candidates.yaml"),
                                source="candidates.yaml")
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read candidates ({type(e).__name__})") from None
    return parse_candidates(cfg.load_yaml(text, source=str(path)), source=str(path))


def resolve_strategy(strategy: Strategy, tasks: str, *, seed: int,
                     task_sets: dict[str, Any] | None = None):
    """The resolved run config of ``strategy`` on ``tasks`` with ``seed``."""
    from adaptrl import runs

    sets = [*strategy.set_args(), *(f"tasks.{k}={json.dumps(v)}"
                                    for k, v in (task_sets or {}).items())]
    try:
        return runs.resolve(strategy.algo, tasks, sets=sets, overrides={"seed": seed})
    except UserError as e:
        raise UserError(f"strategy {strategy.name!r}: {e}") from None


def trial_dir(root: Path, strategy: Strategy, seed: int) -> Path:
    return Path(root) / f"{strategy.name}-seed{seed}"


def run_trial(tasks: str, strategy: Strategy, seed: int, root: Path, *,
              task_sets: dict[str, Any] | None = None,
              evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``strategy`` on ``tasks`` with ``seed`` in ``root/NAME-seedS`` and meta-test
    it; both are recorded (run directory and store). A trial whose run is complete and
    meta-tested already is read back, not rerun, so a killed sweep resumes where it was.
    Returns ``{"strategy", "seed", "run_dir", "score", "result"}``."""
    from adaptrl import runs
    from adaptrl.advisor.store import EVALS_DIR
    from adaptrl.evaluation.harness import evaluate_runs

    ev = {**EVAL_DEFAULTS, **(evaluation or {})}
    config = resolve_strategy(strategy, tasks, seed=seed, task_sets=task_sets)
    d = trial_dir(root, strategy, seed)
    if (d / runs.CONFIG_FILE).is_file():
        if runs.load_run(d).identity() != config.identity():
            raise UserError(f"{d} holds another run; give another output directory")
        done = runs.list_checkpoints(d)
        if done and done[-1] >= config.run.iterations:
            for f in sorted((d / EVALS_DIR).glob("*.json")) if (d / EVALS_DIR).is_dir() else []:
                data = runs.read_json(f, what="meta-test record")
                rec = data["result"]
                if rec.get("num_tasks") == ev["num_tasks"] and data.get("seed") == ev["seed"] \
                        and len(rec["curve"]) == ev["adapt_steps"] + 1 and \
                        len(rec.get("checkpoints") or []) == 1:
                    return _trial(strategy, seed, d, rec)
        else:
            runs.train(d, resume=True)
    else:
        new = runs.create_run(d, config)
        try:
            runs.train(d)
        except BaseException:
            runs.discard_new_run(new)
            raise
    result = evaluate_runs([d], num_tasks=ev["num_tasks"], steps=ev["adapt_steps"],
                           seed=ev["seed"])
    return _trial(strategy, seed, d, result)


def _trial(strategy: Strategy, seed: int, d: Path, result: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": strategy.name, "seed": seed, "run_dir": str(d),
            "score": result["curve"][-1]["mean"], "result": result}
