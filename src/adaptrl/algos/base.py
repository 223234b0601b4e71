"""The algorithm protocol and registry.

An algorithm is a class built from ``(config, family)`` and, for RL families, a *sampler*
(:mod:`adaptrl.sampling`) that collects its experience: ``init`` makes the training state
(a pytree holding params, optimiser state, the RNG key and the iteration), ``update``
performs one meta-iteration, and ``adaptation_curve`` measures performance on given tasks
after 0..K units of adaptation (gradient steps for MAML, episodes within a trial for RL²).
The run loop, the checkpoints, the meta-test harness and the CLI know only this protocol.

An algorithm never steps an environment: it asks its sampler for episodes or trials, then
learns from them in jitted functions. With a JAX-native family the sampler is jittable
(``sampler.jittable``) and the run loop jits the whole ``update`` — one XLA program per
meta-iteration. With a host family the run loop calls ``update`` as Python: collection
runs in worker processes, and the algorithm's adaptation and learning steps are jitted
on their own.

The curve's x axis has one meaning everywhere (tables, ``eval --json``, plots): point ``k``
was measured after the learner had seen ``k`` units of the task's data, 0 meaning nothing:
``k`` gradient steps (MAML, each on fresh episodes of the task), or ``k`` earlier episodes
of the trial (RL² and the reference strategies: point 0 is the trial's first episode), or
``k`` labelled shots (the task-embedding learner on regression families).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from adaptrl import lazy
from adaptrl.errors import UserError
from adaptrl.tasks.base import TaskFamily

if TYPE_CHECKING:
    import jax

    from adaptrl.sampling.base import Sampler

State = dict[str, Any]  # pytree: at least "key" and "iteration"


class Algorithm(abc.ABC):
    """Abstract base; concrete algorithms are final."""

    #: frozen dataclass of options, one comment under each field
    Config: ClassVar[type]
    #: which family kinds it can learn ("rl", "regression")
    kinds: ClassVar[tuple[str, ...]] = ("rl",)
    #: what the adaptation curve's x axis counts (a key of ``AXES``)
    curve_unit: ClassVar[str] = "gradient_steps"
    #: per-family settings of the papers: {family name: {field: value}}; the key
    #: "iterations" sets the run's default number of meta-iterations, and the key "tasks"
    #: holds family options ({option: value}) that the algorithm's setting needs
    paper_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_iterations: ClassVar[int] = 100

    def __init__(self, config: Any, family: TaskFamily, *, sampler: Sampler | None = None):
        if family.kind not in self.kinds:
            raise UserError(
                f"{type(self).__name__} cannot learn {family.kind} families"
            )
        self.config = config
        self.family = family
        self.sampler: Sampler | None = sampler
        if sampler is None and family.kind == "rl":
            from adaptrl.sampling.base import make_sampler  # imports JAX: not when listing

            self.sampler = make_sampler(family)

    @property
    def _sampler(self) -> Sampler:
        """The sampler of an RL algorithm (regression families have none)."""
        assert self.sampler is not None, "regression families have no sampler"
        return self.sampler

    @property
    def jittable(self) -> bool:
        """Whether ``update`` and ``adaptation_curve`` can be traced by ``jax.jit`` (no host
        sampler): the run loop and the harness jit them whole where they can."""
        return self.sampler is None or self.sampler.jittable

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

    def curve_axis(self) -> str:
        """The curve's x axis in words (a plot's label, a table's caption)."""
        return AXES[self.curve_unit]


#: the x axis of adaptation curves in words, by ``curve_unit``
AXES = {
    "gradient_steps": "gradient steps taken before scoring",
    "episodes": "episodes of the trial seen before the scored one",
    "shots": "labelled points (shots) of the task seen before scoring",
}


@dataclasses.dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    description: str
    target: str | type[Algorithm]
    # the algorithm class, or "module:Class", imported when the algorithm is first built
    kinds: tuple[str, ...]
    # the class's ``kinds``, declared here so that listing algorithms imports nothing
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    # config fields fixed by the registered name

    @property
    def cls(self) -> type[Algorithm]:
        return lazy.load(self.target)


_MAML = "adaptrl.algos.maml:MAML"

#: every registered algorithm by name; the built-in ones as data (their modules, and JAX,
#: are imported when an algorithm is built), a user's own through :func:`register`
REGISTRY: dict[str, AlgorithmEntry] = {e.name: e for e in [
    AlgorithmEntry("maml-trpo", "MAML, TRPO meta-update (Finn et al.)", _MAML,
                   ("rl", "regression"), {"outer": "trpo"}),
    AlgorithmEntry("maml-ppo", "MAML, PPO-clipped meta-update (ProMP)", _MAML,
                   ("rl", "regression"), {"outer": "ppo"}),
    AlgorithmEntry("maml-vpg", "MAML, vanilla policy-gradient update", _MAML,
                   ("rl", "regression"), {"outer": "vpg"}),
    AlgorithmEntry("rl2", "RL² (Duan et al. 2016): PPO over trials", "adaptrl.algos.rl2:RL2",
                   ("rl",)),
    AlgorithmEntry("pearl", "PEARL: SAC on a probabilistic context",
                   "adaptrl.algos.pearl:PEARL", ("rl",)),
    AlgorithmEntry("task-embedding", "policy on an inferred task embedding",
                   "adaptrl.algos.task_embedding:TaskEmbedding", ("rl", "regression")),
]}


def register(name: str, description: str, **defaults: Any):
    """Class decorator registering an algorithm of the user's own under ``name``, with
    the config fields that the name fixes."""

    def deco(cls):
        REGISTRY[name] = AlgorithmEntry(name, description, cls, tuple(cls.kinds), defaults)
        return cls

    return deco


def algorithm_entry(name: str) -> AlgorithmEntry:
    if name not in REGISTRY:
        raise UserError(f"unknown algorithm {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]
