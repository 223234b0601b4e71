"""Config resolution: a run's settings, the resolved config of a run, and how defaults,
the paper's settings, a YAML file, ``--set`` and flags combine into it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

from adaptrl import config as cfg
from adaptrl.algos import algorithm_entry
from adaptrl.algos.base import Algorithm
from adaptrl.errors import UserError
from adaptrl.sampling.settings import SamplerSettings
from adaptrl.tasks import family_entry, make_family

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Run-level options (the algorithm's and the family's live in their own configs)."""

    seed: int = 0
    # seed of every random draw of the run
    iterations: int = 100
    # number of meta-iterations
    checkpoint_every: int = 10
    # save a checkpoint every N meta-iterations (and at the end)
    keep_checkpoints: int = 3
    # how many of the newest checkpoints to keep

    def __post_init__(self) -> None:
        for name in ("iterations", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise cfg.OptionError(name, "must be >= 1")
        if self.keep_checkpoints > 10_000:
            raise cfg.OptionError("keep_checkpoints", "must be <= 10000")
        if not 0 <= self.seed < 2**31:
            raise cfg.OptionError("seed", "must be in [0, 2**31)")


#: run options that have a flag of their own: messages name them as the user gave them
RUN_FLAGS = {"iterations": "--iterations", "seed": "--seed"}


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    algo: str
    tasks: str
    run: RunSettings
    algo_options: Any  # the algorithm's Config dataclass
    task_options: Any  # the family dataclass itself
    sampler: SamplerSettings = SamplerSettings()  # where host environments step (not identity)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION, "algo": self.algo, "tasks": self.tasks,
            **cfg.to_dict(self.run), "algo_options": cfg.to_dict(self.algo_options),
            "task_options": cfg.to_dict(self.task_options), "sampler": cfg.to_dict(self.sampler),
        }

    def algorithm(self) -> Algorithm:
        sampler = None
        if self.task_options.kind == "rl":
            from adaptrl.sampling.base import make_sampler

            sampler = make_sampler(self.task_options, self.sampler)
        return algorithm_entry(self.algo).cls(self.algo_options, self.task_options,
                                              sampler=sampler)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed by this config (the schedule —
        iterations, checkpoint cadence — may differ)."""
        full = self.to_json()
        return {k: full[k] for k in ("algo", "tasks", "seed", "algo_options", "task_options")}


def _set_path(layers: dict[str, dict[str, Any]], fields: dict[str, set[str]], path: list[str],
              value: Any) -> None:
    """Route one ``--set`` to the run, ``algo``, ``tasks`` or ``sampler`` layer."""
    if len(path) == 2 and path[0] in ("algo", "tasks", "sampler"):
        layers[path[0]][path[1]] = value
        return
    if len(path) != 1:
        raise UserError(f"--set key {cfg.short('.'.join(path))} must be KEY, algo.KEY or tasks.KEY")
    key = path[0]
    owners = [layer for layer, names in fields.items() if key in names]
    if not owners:
        valid = sorted(f"{layer}.{n}" if layer != "run" else n
                       for layer, names in fields.items() for n in names)
        raise UserError(f"unknown config key {cfg.short(key)} (valid: {', '.join(valid)})")
    if len(owners) > 1:
        raise UserError(f"config key {key!r} is ambiguous: use {' or '.join(f'{o}.{key}' for o in owners)}")
    layers[owners[0]][key] = value


ANNEAL = "lr_anneal_iterations"  # an algorithm option: the step size reaches 0 after it


def resolve(algo: str, tasks: str, *, file_data: dict[str, Any] | None = None,
            sets: Sequence[str] = (), overrides: dict[str, Any] | None = None) -> ResolvedConfig:
    """Defaults < the paper's settings for (algo, family) < YAML file < ``--set`` < flags."""
    entry = algorithm_entry(algo)
    fam = family_entry(tasks)
    cls = entry.cls
    kind = fam.kind
    if kind not in cls.kinds:
        raise UserError(f"{algo} cannot learn {tasks}, a {kind} family: it learns "
                        f"{' and '.join(cls.kinds)} families (see `adaptrl algos`)")
    paper = dict(cls.paper_defaults.get(tasks, {}))
    run_layer: dict[str, Any] = {"iterations": paper.pop("iterations", cls.default_iterations)}
    # a paper step size that anneals to 0 over the run follows the run's length, unless the
    # user sets its schedule (below)
    follow = paper.get(ANNEAL) == run_layer["iterations"]
    if follow:
        del paper[ANNEAL]
    paper_tasks = dict(paper.pop("tasks", {}))
    layers = {"run": run_layer, "algo": {**entry.defaults, **paper},
              "tasks": {**fam.defaults, **paper_tasks}, "sampler": {}}
    data = dict(file_data or {})
    for name in ("algo", "tasks", "sampler"):
        sub = data.pop(name, {})
        if not isinstance(sub, dict):
            raise UserError(f"config key {name!r} must be a mapping")
        layers[name].update(sub)
    layers["run"].update(data)
    fields = {
        "run": {f.name for f in dataclasses.fields(RunSettings)},
        "algo": {f.name for f in dataclasses.fields(cls.Config)},
        "tasks": {f.name for f in dataclasses.fields(cast(Any, fam.factory))},
    }
    for item in sets:
        path, value = cfg.parse_set(item)
        _set_path(layers, fields, path, value)
    layers["run"].update({k: v for k, v in (overrides or {}).items() if v is not None})
    if follow and ANNEAL not in layers["algo"]:
        layers["algo"][ANNEAL] = layers["run"]["iterations"]
    for key, value in entry.defaults.items():
        if layers["algo"].get(key) != value:
            raise UserError(f"{algo} fixes algo.{key}={value!r}; choose another algorithm name")
    resolved = ResolvedConfig(
        algo=algo, tasks=tasks, run=cfg.from_dict(RunSettings, layers["run"], names=RUN_FLAGS),
        algo_options=cfg.from_dict(cls.Config, layers["algo"], where="algo."),
        task_options=make_family(tasks, layers["tasks"]),
        sampler=cfg.from_dict(SamplerSettings, layers["sampler"], where="sampler."),
    )
    resolved.algorithm()  # refuses what the algorithm cannot build, before any file is made
    cls.check_new_run(resolved.algo_options, resolved.task_options)
    return resolved


def config_from_json(data: Any, *, source: str) -> ResolvedConfig:
    """Rebuild a resolved config from a run's ``config.json`` with full validation."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a run config")
    if data.get("format") != FORMAT_VERSION or isinstance(data.get("format"), bool):
        raise UserError(f"{source}: unsupported run format {cfg.short(data.get('format'))}")
    data = dict(data)
    data.pop("format")
    algo, tasks = data.pop("algo", None), data.pop("tasks", None)
    if not isinstance(algo, str) or not isinstance(tasks, str):
        raise UserError(f"{source}: config names no algorithm or task family")
    entry = algorithm_entry(algo)
    family_entry(tasks)
    algo_options = data.pop("algo_options", {})
    task_options = data.pop("task_options", {})
    sampler = data.pop("sampler", {})
    for name, sub in (("algo_options", algo_options), ("task_options", task_options),
                      ("sampler", sampler)):
        if not isinstance(sub, dict):
            raise UserError(f"{source}: {name} must be a mapping")
    for key, value in entry.defaults.items():
        if algo_options.get(key, value) != value:
            raise UserError(f"{source}: {algo} fixes algo.{key}={value!r}")
    try:
        return ResolvedConfig(
            algo=algo, tasks=tasks, run=cfg.from_dict(RunSettings, data),
            algo_options=cfg.from_dict(entry.cls.Config, algo_options, where="algo."),
            task_options=make_family(tasks, task_options),
            sampler=cfg.from_dict(SamplerSettings, sampler, where="sampler."),
        )
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
