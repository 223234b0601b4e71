"""Sampling: where experience is collected, and the only place that steps environments.

* :mod:`adaptrl.sampling.base` — the :class:`Sampler` protocol, the jitted
  :class:`JaxSampler` and :func:`make_sampler`; :mod:`adaptrl.sampling.settings` —
  :class:`SamplerSettings`;
* :mod:`adaptrl.sampling.rollout` — jitted episodes of JAX-native families;
* :mod:`adaptrl.sampling.trials` — RL² trials and their rules (one definition, shared by
  the jitted and the host loops);
* :mod:`adaptrl.sampling.host` — the host sampler: Gymnasium vector environments in worker
  processes;
* :mod:`adaptrl.sampling.ray_workers` — the same workers as Ray actors (optional extra).
"""

from typing import Any

from adaptrl.sampling.settings import SamplerSettings

__all__ = ["JaxSampler", "Sampler", "SamplerSettings", "make_sampler"]


def __getattr__(name: str) -> Any:  # JAX is imported only when a sampler is needed
    if name in ("JaxSampler", "Sampler", "make_sampler"):
        from adaptrl.sampling import base

        return getattr(base, name)
    raise AttributeError(name)
