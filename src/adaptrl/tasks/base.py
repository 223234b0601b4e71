"""The task model: a task family is (T, D, P) — task parameters, their distribution, and
the performance measure — plus, for RL families, a functional JAX environment.

A *task* is a pytree of parameters (a goal, arm probabilities, a sine's amplitude). It is
never stored in the environment state and an episode reset never resamples it: batching
over tasks is a ``vmap`` over task pytrees.

Two kinds of RL family, one protocol for the algorithms:

* :class:`RLFamily` — JAX-native; every environment method is pure and jittable::

      obs, state = family.reset(key, task)
      obs, state, reward, done, info = family.step(key, state, action, task)

* :class:`HostFamily` — simulated on the host (a Gymnasium environment, MuJoCo, ...);
  ``family.make_env()`` builds a ``gymnasium.Env`` that takes its task at reset
  (``reset(seed=..., options={"task": task})``). :mod:`adaptrl.tasks.gymnasium` adapts any
  Gymnasium environment this way.

Algorithms never step an environment themselves: a *sampler* does
(:mod:`adaptrl.sampling`), the jitted one for JAX-native families, the host one (worker
processes or Ray actors) for host families.

    obs, state = family.reset(key, task)
    obs, state, reward, done, info = family.step(key, state, action, task)

Splits: meta-test tasks are drawn from a fixed key stream (``split_seed``) that no training
run ever touches, so every run and every learner is scored on the same held-out tasks.
Meta-train tasks are drawn fresh from the run's own key each iteration, or, with
``train_pool > 0``, from a fixed finite pool (the PEARL-style setting).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from adaptrl import lazy
from adaptrl.errors import UserError

if TYPE_CHECKING:
    import gymnasium as gym
    import jax

# JAX and Gymnasium are imported inside the functions that use them: this module also
# holds the registry, which lists families without importing JAX (fast ``adaptrl tasks``).

Task = Any  # a pytree of task parameters
Split = Literal["train", "test"]

_TRAIN_STREAM, _TEST_STREAM, _POOL_STREAM = 0, 1, 2


def indexed_keys(key: jax.Array, n: int) -> jax.Array:
    """``n`` keys where key ``i`` depends only on ``(key, i)``: the first tasks of a longer
    draw equal a shorter draw, so "the first 40 test tasks" means the same tasks always."""
    import jax
    import jax.numpy as jnp

    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n))


@dataclasses.dataclass(frozen=True)
class TaskFamily(abc.ABC):
    """Abstract base of every family. Concrete families are frozen dataclasses whose fields
    are their options (so ``--set tasks.arms=10`` reaches them) and are final."""

    split_seed: int = 0
    # seed of the fixed key stream the held-out meta-test tasks come from
    train_pool: int = 0
    # 0: draw fresh meta-train tasks every iteration; N > 0: a fixed pool of N train tasks

    kind: ClassVar[Literal["rl", "regression"]] = "rl"
    #: the performance measure reported by the harness, and whether larger is better
    measure: ClassVar[str] = "return"
    higher_is_better: ClassVar[bool] = True
    #: True where ``optimum(task)`` gives the exact optimal expected performance
    has_optimum: ClassVar[bool] = False
    #: True where ``step`` reports ``info["success"]``
    has_success: ClassVar[bool] = False
    #: True where the family has finitely many tasks (cheetah-dir's two directions), so its
    #: held-out tasks are necessarily meta-training tasks too, as in the papers
    finite_tasks: ClassVar[bool] = False
    #: options that change only which tasks are drawn — not the observation or action
    #: spaces, the horizon, the dynamics or the measure that a trained learner depends on —
    #: so ``adaptrl eval RUN --set tasks.KEY=VALUE`` may change them (out-of-distribution
    #: meta-test); every family lists its own
    DISTRIBUTION_OPTIONS: ClassVar[tuple[str, ...]] = ("split_seed",)

    def __post_init__(self) -> None:
        if self.train_pool < 0:
            raise ValueError("train_pool must be >= 0")

    # ---- the task distribution D -------------------------------------------------
    @abc.abstractmethod
    def sample_one(self, key: jax.Array) -> Task:
        """Draw one task's parameters."""

    def sample(self, key: jax.Array, n: int) -> Task:
        """Draw ``n`` tasks (a batched pytree with leading axis ``n``)."""
        import jax

        return jax.vmap(self.sample_one)(indexed_keys(key, n))

    def tasks(self, split: Split, n: int, *, key: jax.Array | None = None) -> Task:
        """``n`` tasks of ``split``. Test tasks are deterministic; train tasks need ``key``."""
        import jax

        base = jax.random.PRNGKey(self.split_seed)
        if split == "test":
            return self.sample(jax.random.fold_in(base, _TEST_STREAM), n)
        if split != "train":
            raise UserError(f"unknown split {split!r} (valid: train, test)")
        if key is None:
            raise ValueError("meta-train tasks are drawn from the run's key")
        pool = self.pool()
        if pool is not None:
            idx = jax.random.randint(key, (n,), 0, self.train_pool)
            return jax.tree.map(lambda x: x[idx], pool)
        return self.sample(jax.random.fold_in(key, _TRAIN_STREAM), n)

    def pool(self) -> Task | None:
        """The fixed pool of ``train_pool`` meta-train tasks, or None (fresh draws)."""
        import jax

        if not self.train_pool:
            return None
        base = jax.random.PRNGKey(self.split_seed)
        return self.sample(jax.random.fold_in(base, _POOL_STREAM), self.train_pool)

    @staticmethod
    def shuffle(tasks: Task, *, key: jax.Array) -> Task:
        """Permute a batch of tasks."""
        import jax

        n = jax.tree.leaves(tasks)[0].shape[0]
        perm = jax.random.permutation(key, n)
        return jax.tree.map(lambda x: x[perm], tasks)

    # ---- the performance measure P -----------------------------------------------
    def optimum(self, task: Task) -> jax.Array:
        """Exact optimal expected performance on ``task`` (families with ``has_optimum``)."""
        raise NotImplementedError(f"{type(self).__name__} does not know its optimum")


class RLFamily(TaskFamily):
    """Abstract: a family of MDPs with a functional, jittable environment."""

    horizon: int  # steps per episode: a field or property of each family

    @property
    @abc.abstractmethod
    def observation_space(self) -> gym.spaces.Box: ...

    @property
    @abc.abstractmethod
    def action_space(self) -> gym.spaces.Box | gym.spaces.Discrete: ...

    @abc.abstractmethod
    def reset(self, key: jax.Array, task: Task) -> tuple[jax.Array, Any]: ...

    @abc.abstractmethod
    def step(
        self, key: jax.Array, state: Any, action: jax.Array, task: Task
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, dict[str, jax.Array]]: ...

    def task_features(self, task: Task) -> jax.Array:
        """The task's parameters as one flat float vector ``[F]`` (every leaf of the task,
        raveled): what a privileged critic sees during meta-training (RL²'s
        ``privileged_critic``). Never an input of a policy."""
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        return ravel_pytree(task)[0].astype(jnp.float32)

    def task_features_dim(self) -> int:
        import jax

        return int(jax.eval_shape(lambda k: self.task_features(self.sample_one(k)),
                                  jax.random.PRNGKey(0)).shape[0])


class HostFamily(TaskFamily):
    """Abstract: a family of MDPs simulated on the host, outside JAX.

    Tasks are still pytrees drawn by ``sample_one`` (so splits, ``--set tasks.X=...`` and
    checkpoints work as for every family); only the environment lives on the host. A host
    sampler (:mod:`adaptrl.sampling.host`) builds ``make_env()`` once per environment slot
    in its worker processes and gives each episode its task and seed at reset.
    """

    horizon: int  # steps per episode: a field or property of each family

    @property
    @abc.abstractmethod
    def observation_space(self) -> gym.spaces.Box: ...

    @property
    @abc.abstractmethod
    def action_space(self) -> gym.spaces.Box | gym.spaces.Discrete: ...

    @abc.abstractmethod
    def make_env(self) -> gym.Env:
        """A fresh environment; ``reset(seed=s, options={"task": task})`` starts an episode
        of ``task`` (an unbatched task pytree of NumPy values)."""

    task_features = RLFamily.task_features
    task_features_dim = RLFamily.task_features_dim


class RegressionFamily(TaskFamily):
    """Abstract: a family of supervised few-shot regression problems (MAML's sinusoid)."""

    kind: ClassVar[Literal["rl", "regression"]] = "regression"
    measure: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False
    input_dim: ClassVar[int] = 1
    output_dim: ClassVar[int] = 1

    @abc.abstractmethod
    def data(self, key: jax.Array, task: Task, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` labelled points ``(x [n, input_dim], y [n, output_dim])`` of one task."""


# ---- registry ------------------------------------------------------------------------
#: Meta-World v3's 50 task types (``metaworld.ML1.ENV_NAMES`` without "-v3"), as data so
#: that listing the ml1-* families imports nothing
ML1_TASKS = tuple("""
    assembly basketball bin-picking box-close button-press-topdown button-press-topdown-wall
    button-press button-press-wall coffee-button coffee-pull coffee-push dial-turn
    disassemble door-close door-lock door-open door-unlock hand-insert drawer-close
    drawer-open faucet-open faucet-close hammer handle-press-side handle-press
    handle-pull-side handle-pull lever-pull pick-place-wall pick-out-of-hole pick-place
    plate-slide plate-slide-side plate-slide-back plate-slide-back-side peg-insert-side
    peg-unplug-side soccer stick-push stick-pull push push-wall push-back reach reach-wall
    shelf-place sweep-into sweep window-open window-close""".split())
_METAWORLD = "adaptrl.tasks.metaworld:MetaWorld"


@dataclasses.dataclass(frozen=True)
class FamilyEntry:
    name: str
    description: str
    target: str | type[TaskFamily]
    # the family class (a frozen dataclass), or "module:Class", imported when first built
    kind: Literal["rl", "regression"]
    # the class's ``kind``, declared here so that listing families imports nothing
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    # options fixed by the registered name, e.g. point-nav-sparse is PointNav(sparse=True)

    @property
    def factory(self) -> type[TaskFamily]:
        return lazy.load(self.target)


#: every registered family by name; the built-in ones as data (their modules, and JAX,
#: are imported when a family is built), a user's own through :func:`register`
REGISTRY: dict[str, FamilyEntry] = {e.name: e for e in [
    FamilyEntry("point-nav", "2D navigation to a goal (MAML), dense reward",
                "adaptrl.tasks.point_nav:PointNav", "rl"),
    FamilyEntry("point-nav-sparse", "2D navigation, reward 1 within 0.1 of goal",
                "adaptrl.tasks.point_nav:PointNav", "rl", {"sparse": True}),
    FamilyEntry("bandit", "k-armed Bernoulli bandits, means ~ U[0, 1]",
                "adaptrl.tasks.bandit:Bandit", "rl"),
    FamilyEntry("tabular-mdp", "RL²'s random MDPs: 10 states, 5 actions",
                "adaptrl.tasks.tabular_mdp:TabularMDP", "rl"),
    FamilyEntry("sinusoid", "few-shot sine regression (MAML), MSE",
                "adaptrl.tasks.sinusoid:Sinusoid", "regression"),
    # MuJoCo locomotion through Gymnasium (host families; adaptrl.tasks.locomotion)
    FamilyEntry("cheetah-vel", "HalfCheetah, target velocity U[0, 2] (MAML)",
                "adaptrl.tasks.locomotion:CheetahVel", "rl"),
    FamilyEntry("cheetah-dir", "HalfCheetah forward or backward (MAML)",
                "adaptrl.tasks.locomotion:CheetahDir", "rl"),
    FamilyEntry("ant-dir", "Ant forward or backward (PEARL)",
                "adaptrl.tasks.locomotion:AntDir", "rl"),
    FamilyEntry("ant-goal", "Ant to a goal in a disc, radius 3 (PEARL)",
                "adaptrl.tasks.locomotion:AntGoal", "rl"),
    FamilyEntry("walker-params", "Walker2d, random body parameters (PEARL)",
                "adaptrl.tasks.locomotion:WalkerParams", "rl"),
    # Meta-World v3 (adaptrl.tasks.metaworld; the metaworld extra) and DeepMind Control
    # (adaptrl.tasks.dmc; the dmc extra)
    *[FamilyEntry(f"ml1-{t}", "Meta-World ML1, held-out goals",
                  _METAWORLD, "rl", {"benchmark": "ML1", "env_name": t}) for t in ML1_TASKS],
    *[FamilyEntry(f"ml{n}", f"Meta-World ML{n}, 5 held-out types",
                  _METAWORLD, "rl", {"benchmark": f"ML{n}"}) for n in (10, 25, 45)],
    FamilyEntry("dmc-cheetah-vel", "DMC cheetah, target speed U[0, 4]",
                "adaptrl.tasks.dmc:DMCCheetahVel", "rl"),
    FamilyEntry("dmc-walker-mass", "DMC walker-walk, masses x 2^U[-1, 1]",
                "adaptrl.tasks.dmc:DMCWalkerMass", "rl"),
]}


def register(name: str, description: str, **defaults: Any):
    """Class decorator (usable several times) registering a family of the user's own under
    ``name`` with option defaults (as ``point-nav-sparse`` is ``PointNav(sparse=True)``)."""

    def deco(cls):
        REGISTRY[name] = FamilyEntry(name, description, cls, cls.kind, defaults)
        return cls

    return deco


def family_names() -> list[str]:
    return sorted(REGISTRY)


_USER_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def user_family(name: str) -> FamilyEntry:
    """Resolve a user's family named ``"package.module:ClassName"``.

    The module is imported (the user named it), and the attribute is accepted only if it is
    a concrete task-family class — a frozen-dataclass subclass of :class:`TaskFamily` —
    which is checked before anything is called or instantiated. A name never resolves to an
    arbitrary callable, so a run directory that names a family cannot make ``eval`` or
    ``--resume`` run a function of its choosing.
    """
    if len(name) > 300 or not _USER_NAME.match(name):
        raise UserError(f"task family {name[:80]!r} must be a registered name or "
                        "MODULE:CLASS, e.g. mypkg.envs:MyFamily")
    module_name, attr = name.split(":")
    if attr.startswith("__"):
        raise UserError(f"task family {name!r}: {attr!r} is not a task-family class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"task family {name!r}: cannot import module {module_name!r} "
                        f"({type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise UserError(f"task family {name!r}: importing {module_name!r} failed "
                        f"({type(e).__name__}: {e})") from None
    obj = module.__dict__.get(attr)  # a plain lookup: no module __getattr__ runs
    if obj is None:
        raise UserError(f"task family {name!r}: module {module_name!r} has no {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, TaskFamily)):
        raise UserError(f"task family {name!r} is a {type(obj).__name__}, not a task-family "
                        "class (a subclass of adaptrl.tasks.TaskFamily)")
    params = getattr(obj, "__dataclass_params__", None)
    if params is None or not params.frozen or "__dataclass_fields__" not in obj.__dict__:
        raise UserError(f"task family {name!r} must be a frozen dataclass "
                        "(@dataclasses.dataclass(frozen=True))")
    if getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise UserError(f"task family {name!r} is abstract (does not define {missing})")
    doc = (obj.__doc__ or "").strip().splitlines()
    return FamilyEntry(name, doc[0] if doc else name, obj, obj.kind, {})


def family_entry(name: str) -> FamilyEntry:
    """The registry entry of a built-in family, or of a user's ``"module:Class"``."""
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" in name:
        return user_family(name)
    if name.startswith("ml1-"):
        raise UserError(f"unknown Meta-World task {name[4:]!r} in {name!r} (valid: "
                        f"{', '.join(ML1_TASKS)})")
    raise UserError(f"unknown task family {name!r} (known: {', '.join(family_names())}; "
                    "or MODULE:CLASS for your own)")


def make_family(name: str, options: dict[str, Any] | None = None) -> TaskFamily:
    """Build the family ``name`` with its registry defaults overridden by ``options``."""
    from adaptrl.config import from_dict

    entry = family_entry(name)
    return from_dict(entry.factory, {**entry.defaults, **(options or {})}, where="tasks.")


def meta_test_family(family: TaskFamily, changes: dict[str, Any]) -> TaskFamily:
    """``family`` with ``changes`` to options that only move its task distribution (its
    ``DISTRIBUTION_OPTIONS``), for out-of-distribution meta-test of a trained run; any
    other option is refused, since the trained policy depends on it."""
    from adaptrl.config import replace

    if not changes:
        return family
    allowed = type(family).DISTRIBUTION_OPTIONS
    for key in changes:
        if key not in allowed:
            fields = {f.name for f in dataclasses.fields(family)}
            what = ("changes more than the task distribution (the trained learner depends on "
                    "it)" if key in fields else "is not an option of this family")
            raise UserError(f"tasks.{key} {what}; at meta-test only these may change: "
                            f"{', '.join(f'tasks.{k}' for k in allowed) or 'none'}")
    return replace(family, changes, where="tasks.")
