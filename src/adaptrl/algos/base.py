"""The algorithm protocol and registry.

An algorithm is a class built from ``(config, family)``. It exposes pure functions that the
run loop jits: ``init`` makes the training state (a pytree holding params, optimiser state,
the RNG key and the iteration), ``update`` performs one meta-iteration, and
``adaptation_curve`` measures performance on given tasks after 0..K units of adaptation
(gradient steps for MAML, episodes within a trial for RL²). The run loop, the checkpoints,
the meta-test harness and the CLI know only this protocol.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import jax

from adaptrl.errors import UserError
from adaptrl.tasks.base import TaskFamily

State = dict[str, Any]  # pytree: at least "key" and "iteration"


class Algorithm(abc.ABC):
    """Abstract base; concrete algorithms are final."""

    #: frozen dataclass of options, one comment under each field
    Config: ClassVar[type]
    #: which family kinds it can learn ("rl", "regression")
    kinds: ClassVar[tuple[str, ...]] = ("rl",)
    #: x-axis of the adaptation curve
    curve_unit: ClassVar[str] = "adaptation_steps"
    #: per-family settings of the papers: {family name: {field: value}}; the key
    #: "iterations" sets the run's default number of meta-iterations, and the key "tasks"
    #: holds family options ({option: value}) that the algorithm's setting needs
    paper_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_iterations: ClassVar[int] = 100

    def __init__(self, config: Any, family: TaskFamily):
        if family.kind not in self.kinds:
            raise UserError(
                f"{type(self).__name__} cannot learn {family.kind} families"
            )
        self.config = config
        self.family = family

    @classmethod
    def check_new_run(cls, config: Any, family: TaskFamily) -> None:
        """Refuse, with a :class:`UserError`, options this algorithm would run but not as a
        user means them. Called when a new run's config is resolved, not when a saved run
        is loaded, so runs made before a rule existed stay loadable."""
        return None

    @abc.abstractmethod
    def init(self, *, key: jax.Array) -> State:
        """The initial training state."""

    @abc.abstractmethod
    def update(self, state: State) -> tuple[State, dict[str, jax.Array]]:
        """One meta-iteration; returns the new state and scalar metrics. Pure, jittable."""

    @abc.abstractmethod
    def adaptation_curve(self, state: State, tasks: Any, *, key: jax.Array,
                         steps: int) -> dict[str, jax.Array]:
        """Performance on each task after 0..``steps`` units of adaptation.

        Returns ``{measure: [num_tasks, steps + 1]}``, with the family's measure
        (``"return"`` or ``"mse"``) and ``"success"`` where the family defines it.
        """

    @property
    def default_eval_steps(self) -> int:
        return 3


@dataclasses.dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    description: str
    cls: type[Algorithm]
    defaults: dict[str, Any]  # config fields fixed by the registered name


REGISTRY: dict[str, AlgorithmEntry] = {}


def register(name: str, description: str, **defaults: Any):
    def deco(cls):
        REGISTRY[name] = AlgorithmEntry(name, description, cls, defaults)
        return cls

    return deco


def algorithm_entry(name: str) -> AlgorithmEntry:
    if name not in REGISTRY:
        raise UserError(f"unknown algorithm {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]
