"""Sampling: where experience is collected, and the only place that steps environments.

* :mod:`adaptrl.sampling.base` — the :class:`Sampler` protocol, the jitted
  :class:`JaxSampler`, :class:`SamplerSettings` and :func:`make_sampler`;
* :mod:`adaptrl.sampling.rollout` — jitted episodes of JAX-native families;
* :mod:`adaptrl.sampling.trials` — RL² trials and their rules (one definition, shared by
  the jitted and the host loops);
* :mod:`adaptrl.sampling.host` — the host sampler: Gymnasium vector environments in worker
  processes;
* :mod:`adaptrl.sampling.ray_workers` — the same workers as Ray actors (optional extra).
"""

from adaptrl.sampling.base import JaxSampler, Sampler, SamplerSettings, make_sampler

__all__ = ["JaxSampler", "Sampler", "SamplerSettings", "make_sampler"]
