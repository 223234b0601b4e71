"""Meta-World v3 as task families: ``ml1-<task>`` (one manipulation task, held-out goals),
``ml10``, ``ml25`` and ``ml45`` (held-out task types), through the ``metaworld`` package
(version 3.1.1, its ``v3`` environments, reward function ``v2`` by default).

The split is Meta-World's own: meta-train tasks are drawn from the benchmark's
``train_tasks`` (50 goals per training task type), held-out tasks from its ``test_tasks``
(ML1: 50 other goals of the same type; ML10/ML45: 50 goals of each held-out type). The
benchmark is built with ``seed=split_seed``, so the goals are a function of the family's
options. The performance measure is the return, with the success rate beside it
(``info["success"]`` at any step of an episode); ``adaptrl eval RUN --protocol metaworld``
reports success first, per task type and overall.

A task is two integers, ``{"split": 0 | 1, "index": i}``: the ``i``-th task of the
benchmark's train (0) or test (1) list. What the package calls a task — a
``metaworld.types.Task`` whose ``data`` are pickled bytes — is only ever built by the
package in this process (and sent to our own worker processes with the family); a task
pytree, a checkpoint or a config holds indices, never pickles, so no file a user hands us
is unpickled.

Known defects of Meta-World 3.1.1 and how they are avoided (each has a test in
``tests/test_metaworld.py``):

* ``gymnasium.make_vec("Meta-World/ML1-train", ...)`` builds the *test* split: its
  registration lambda captures the loop variable ``split`` late. We never go through the
  Gymnasium registrations; the benchmark's ``train_tasks`` and ``test_tasks`` are read
  directly.
* ``reset(seed=...)`` ignores the seed. :class:`MetaWorldEnv` seeds the environment's own
  RNG (``env.seed``) before every reset, and the goal comes from the task, so the same task
  and seed give the same episode.
* ``make_vec`` environments fail unless ``env.call("sample_tasks")`` ran before the first
  reset. Here every reset sets its task explicitly first (``env.set_task``).
* The vector wrapper needs ``meta_batch_size`` to divide the number of task types times 50
  goals. We build single environments and the host sampler stacks them, so any number of
  tasks per meta-batch works.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from adaptrl import lazy
from adaptrl.errors import UserError
from adaptrl.tasks.base import _TRAIN_STREAM, ML1_TASKS, HostFamily, Split, Task

if TYPE_CHECKING:
    import jax

os.environ.setdefault("MUJOCO_GL", "egl")  # nothing renders; no display is needed

#: the benchmarks of the package, by the name of their class in ``metaworld``
BENCHMARKS = ("ML1", "ML10", "ML25", "ML45")
REWARD_VERSIONS = ("v1", "v2")


def import_metaworld():
    """The ``metaworld`` module, or a one-line error saying which extra installs it."""
    return lazy.optional("metaworld", needed_by="Meta-World families", extra="metaworld")


def metaworld_version() -> str:
    from importlib.metadata import version

    return version("metaworld")


@functools.lru_cache(maxsize=8)
def _benchmark_tasks(benchmark: str, env_name: str, seed: int):
    """(train tasks, test tasks, train type names, test type names) of one benchmark, built
    by the package in this process (ML10 takes about 20 s, ML45 about 2 min: cached)."""
    mw = import_metaworld()
    bench = (mw.ML1(f"{env_name}-v3", seed=seed) if benchmark == "ML1"
             else getattr(mw, benchmark)(seed=seed))
    return (tuple(bench.train_tasks), tuple(bench.test_tasks),
            tuple(bench.train_classes), tuple(bench.test_classes))


@dataclasses.dataclass(frozen=True)
class MetaWorld(HostFamily):
    """A Meta-World benchmark: meta-train on its training goals or task types, meta-test
    on its held-out ones; success rate beside the return."""

    benchmark: str = "ML1"
    # ML1 (one task type, held-out goals), ML10, ML25 or ML45 (held-out task types)
    env_name: str = ""
    # the ML1 task type, e.g. "reach", "push", "pick-place" (ML1 only)
    horizon: int = 500
    # steps per episode (Meta-World's max_path_length is 500; at most 500)
    reward_version: str = "v2"
    # Meta-World's reward function version ("v2": the v3 environments' default)

    has_success: ClassVar[bool] = True
    DISTRIBUTION_OPTIONS: ClassVar[tuple[str, ...]] = ("split_seed",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.benchmark not in BENCHMARKS:
            raise UserError(f"unknown Meta-World benchmark {self.benchmark!r} "
                            f"(valid: {', '.join(BENCHMARKS)})")
        if self.benchmark == "ML1" and self.env_name not in ML1_TASKS:
            raise UserError(f"unknown Meta-World task {self.env_name!r} "
                            f"(valid: {', '.join(ML1_TASKS)})")
        if self.benchmark != "ML1" and self.env_name:
            raise UserError(f"env_name is an ML1 option; {self.benchmark} has its own types")
        if self.reward_version not in REWARD_VERSIONS:
            raise UserError(f"reward_version must be one of {', '.join(REWARD_VERSIONS)}")
        if not 1 <= self.horizon <= 500:
            raise UserError("horizon must be between 1 and 500 (Meta-World's episode length)")
        if self.train_pool:
            raise UserError("Meta-World's meta-train goals are already a fixed pool (50 per "
                            "task type): train_pool must be 0")
        import_metaworld()

    # ---- Meta-World's tasks, built by the package in this process ---------------------
    @property
    def _tasks(self):
        """The benchmark's task lists, built once per process; they travel with the family
        to our own worker processes (in its ``__dict__``), which so skip rebuilding them."""
        cached = self.__dict__.get("_mw_tasks")
        if cached is None:
            cached = _benchmark_tasks(self.benchmark, self.env_name, self.split_seed)
            object.__setattr__(self, "_mw_tasks", cached)  # a cache, not a field
        return cached

    def task_list(self, split: int) -> tuple:
        """The package's own tasks of the train (0) or test (1) split."""
        return self._tasks[split]

    def type_names(self, split: int) -> tuple[str, ...]:
        return tuple(n.removesuffix("-v3") for n in self._tasks[2 + split])

    def task_type(self, task: Task) -> str:
        """The task type (``"reach"``, ...) of one task pytree."""
        return self._mw_task(task).env_name.removesuffix("-v3")

    def _mw_task(self, task: Task):
        if set(task) != {"split", "index"}:
            raise UserError(f"a Meta-World task is {{split, index}}, got keys {sorted(task)}")
        split, index = int(np.asarray(task["split"])), int(np.asarray(task["index"]))
        if split not in (0, 1) or not 0 <= index < len(self.task_list(split)):
            raise UserError(f"no Meta-World task {index} in split {split}")
        return self.task_list(split)[index]

    # ---- the task distribution: indices into the package's lists ---------------------
    def sample_one(self, key: jax.Array) -> Task:
        import jax
        import jax.numpy as jnp

        n = len(self.task_list(0))
        return {"split": jnp.int32(0), "index": jax.random.randint(key, (), 0, n)}

    def tasks(self, split: Split, n: int, *, key: jax.Array | None = None) -> Task:
        """Meta-train tasks: uniform over the benchmark's training tasks, from ``key``.
        Held-out tasks: its test tasks in a fixed order that cycles through the task types
        (task ``i`` is of type ``i mod types``) and, within a type, through its goals in a
        permutation fixed by ``split_seed``; a longer draw starts with a shorter one."""
        import jax
        import jax.numpy as jnp

        if split == "train":
            if key is None:
                raise ValueError("meta-train tasks are drawn from the run's key")
            return self.sample(jax.random.fold_in(key, _TRAIN_STREAM), n)
        if split != "test":
            raise UserError(f"unknown split {split!r} (valid: train, test)")
        index = jnp.asarray(self.test_order()[np.arange(n) % len(self.task_list(1))])
        return {"split": jnp.ones((n,), jnp.int32), "index": index.astype(jnp.int32)}

    def test_order(self) -> np.ndarray:
        """Indices of every test task, in the order that :meth:`tasks` hands them out."""
        names = [t.env_name for t in self.task_list(1)]
        types = list(dict.fromkeys(names))
        rng = np.random.default_rng(self.split_seed)
        per_type = [rng.permutation([i for i, n in enumerate(names) if n == t]) for t in types]
        return np.stack(per_type, axis=1).reshape(-1)

    # ---- environments -----------------------------------------------------------------
    def build(self, env_name: str) -> Any:
        """A fresh environment of one task type (no task set yet), rendering off."""
        cls = import_metaworld().env_dict.ALL_V3_ENVIRONMENTS[env_name]
        return cls(reward_function_version=self.reward_version)

    @functools.cached_property
    def _spaces(self) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        # the first training type's spaces, without building the benchmark's tasks
        env_dict = import_metaworld().env_dict
        first = (f"{self.env_name}-v3" if self.benchmark == "ML1"
                 else next(iter(getattr(env_dict, f"{self.benchmark}_V3")["train"])))
        env = self.build(first)
        obs: Any = env.observation_space
        act: Any = env.action_space
        env.close()
        return (gym.spaces.Box(obs.low.astype(np.float32), obs.high.astype(np.float32),
                               obs.shape, np.float32),
                gym.spaces.Box(act.low.astype(np.float32), act.high.astype(np.float32),
                               act.shape, np.float32))

    @property
    def observation_space(self) -> gym.spaces.Box:
        return self._spaces[0]

    @property
    def action_space(self) -> gym.spaces.Box:
        return self._spaces[1]

    def make_env(self) -> gym.Env:
        return MetaWorldEnv(self)


class MetaWorldEnv(gym.Env):
    """One Meta-World slot that takes its task at reset:
    ``reset(seed=s, options={"task": {"split": ..., "index": ...}})`` seeds the
    environment's own RNG with ``s``, sets the package's task, then resets. One simulator
    per task type is kept and reused."""

    metadata = {"render_modes": []}

    def __init__(self, family: MetaWorld):
        self.family = family
        self.observation_space = family.observation_space
        self.action_space = family.action_space
        self.envs: dict[str, Any] = {}
        self.env: Any = None
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        task = (options or {}).get("task")
        if task is None:
            raise ValueError("MetaWorldEnv.reset needs options={'task': task}")
        mw_task = self.family._mw_task(task)
        env = self.envs.get(mw_task.env_name)
        if env is None:
            env = self.envs[mw_task.env_name] = self.family.build(mw_task.env_name)
        if seed is not None:
            env.seed(int(seed))  # Meta-World's reset(seed=) ignores its seed
        env.set_task(mw_task)  # before every reset: never a reset without a task
        obs, info = env.reset()
        self.env, self.t = env, 0
        return np.asarray(obs, np.float32), info

    def step(self, action):
        assert self.env is not None, "reset() first"
        obs, reward, terminated, truncated, info = self.env.step(
            np.asarray(action, np.float32))
        self.t += 1
        info = {**info, "success": bool(info["success"])}
        return (np.asarray(obs, np.float32), float(reward), bool(terminated),
                bool(truncated or self.t >= self.family.horizon), info)

    def close(self):
        for env in self.envs.values():
            env.close()
        self.envs.clear()
        self.env = None
