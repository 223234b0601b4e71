"""The sampler: the seam between algorithms and environments.

An algorithm says *what* to collect — episodes of each task under per-task policy
parameters (MAML), or trials of several episodes with the recurrent state kept across
them (RL²) — and learns from what comes back. A sampler collects it:

* :class:`JaxSampler` for JAX-native families: pure and jittable, so an algorithm's whole
  meta-iteration (collect, adapt, meta-update) stays one XLA program;
* :class:`adaptrl.sampling.host.HostSampler` for host families (Gymnasium): environments
  step in worker processes (or Ray actors), each running the policy on its own block of
  environments (one jitted call per step), one message each way per collection.

Both return the same arrays (:class:`~adaptrl.sampling.rollout.Trajectory`,
:class:`~adaptrl.sampling.trials.Trial`) with the same layout and masking rules, and both
derive every random draw from the keys they are given, so a host sampler gives the same
trajectories on every run and for any number of workers.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar

import jax

from adaptrl.sampling import rollout, trials
from adaptrl.sampling.rollout import Trajectory
from adaptrl.sampling.settings import SamplerSettings
from adaptrl.sampling.trials import Trial
from adaptrl.tasks.base import HostFamily, RLFamily, TaskFamily


class Sampler(abc.ABC):
    """Abstract: collects experience for an algorithm."""

    #: True where ``episodes`` and ``trials`` are pure and can be traced inside ``jax.jit``
    jittable: ClassVar[bool]

    @abc.abstractmethod
    def episodes(self, policy, params: Any, tasks: Any, *, keys: jax.Array, num: int,
                 per_task: bool = True) -> Trajectory:
        """``num`` episodes of each of the ``N`` tasks with key ``keys[i]``: arrays
        ``[N, num, T, ...]``. Task ``i`` runs under ``params[i]`` (``per_task``: parameters
        batched over tasks, e.g. MAML's adapted ones), or all under the same ``params``."""

    @abc.abstractmethod
    def trials(self, policy, params: Any, tasks: Any, *, keys: jax.Array, episodes: int,
               greedy: bool = False) -> Trial:
        """One trial of ``episodes`` episodes on each of the ``N`` tasks under the shared
        recurrent-policy ``params``, trial ``i`` with key ``keys[i]``: arrays
        ``[N, episodes * horizon, ...]`` (:mod:`adaptrl.sampling.trials`)."""

    def close(self) -> None:  # noqa: B027 - optional: most samplers hold nothing
        """Release workers (a no-op for samplers without any)."""


class JaxSampler(Sampler):
    """Jitted rollouts of a JAX-native family: ``lax.scan`` over time, ``vmap`` over
    episodes and tasks. Inlined into the caller's jitted function."""

    jittable = True

    def __init__(self, family: RLFamily):
        self.family = family

    def episodes(self, policy, params, tasks, *, keys, num, per_task=True):
        run = functools.partial(rollout.episodes, self.family, policy, num=num)
        return jax.vmap(lambda p, t, k: run(p, t, key=k), in_axes=(0 if per_task else None, 0, 0))(
            params, tasks, keys)

    def trials(self, policy, params, tasks, *, keys, episodes, greedy=False):
        run = functools.partial(trials.trial, self.family, policy, params, episodes=episodes,
                                greedy=greedy)
        return jax.vmap(lambda t, k: run(t, key=k))(tasks, keys)


def make_sampler(family: TaskFamily, settings: SamplerSettings | None = None) -> Sampler:
    """The sampler of ``family``: jitted for JAX-native families, host workers (local
    processes, or Ray actors with ``settings.ray``) for host families."""
    if isinstance(family, HostFamily):
        from adaptrl.sampling.host import HostSampler

        return HostSampler(family, settings or SamplerSettings())
    if isinstance(family, RLFamily):
        return JaxSampler(family)
    raise TypeError(f"{type(family).__name__} is not an RL family; it has no sampler")
