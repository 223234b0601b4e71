"""MAML's few-shot sine regression (Finn et al. 2017, Sec. 5.1): the supervised case.

A task is y = A sin(x - phi) with A ~ U[0.1, 5.0] and phi ~ U[0, pi]; inputs x ~ U[-5, 5].
Performance is the mean squared error on fresh points of the task (lower is better); the
optimum is 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from adaptrl.tasks.base import RegressionFamily


@dataclasses.dataclass(frozen=True)
class Sinusoid(RegressionFamily):
    """Registered as ``sinusoid``."""

    amplitude_low: float = 0.1
    # lower bound of the amplitude A
    amplitude_high: float = 5.0
    # upper bound of the amplitude A
    phase_low: float = 0.0
    # lower bound of the phase
    phase_high: float = float(jnp.pi)
    # upper bound of the phase
    x_low: float = -5.0
    # lower bound of the inputs
    x_high: float = 5.0
    # upper bound of the inputs

    has_optimum = True
    DISTRIBUTION_OPTIONS = ("split_seed", "amplitude_low", "amplitude_high", "phase_low",
                            "phase_high", "x_low", "x_high")

    def __post_init__(self) -> None:
        super().__post_init__()
        for lo, hi in [("amplitude_low", "amplitude_high"), ("phase_low", "phase_high"),
                       ("x_low", "x_high")]:
            if not getattr(self, lo) < getattr(self, hi):
                raise ValueError(f"{lo} must be below {hi}")

    def sample_one(self, key):
        ka, kp = jax.random.split(key)
        return {
            "amplitude": jax.random.uniform(ka, (), minval=self.amplitude_low,
                                            maxval=self.amplitude_high),
            "phase": jax.random.uniform(kp, (), minval=self.phase_low, maxval=self.phase_high),
        }

    def data(self, key, task, n):
        x = jax.random.uniform(key, (n, 1), minval=self.x_low, maxval=self.x_high)
        return x, task["amplitude"] * jnp.sin(x - task["phase"])

    def optimum(self, task):
        return jnp.zeros(())
