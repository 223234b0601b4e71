"""Where a host family's environments step (``--set sampler.KEY=VALUE``); no JAX here, so
run configs load without it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """How a host family's environments are stepped (``--set sampler.KEY=VALUE``). None of
    these change what is sampled, only where: they are not part of a run's identity."""

    workers: int = 0
    # worker processes (or Ray actors) stepping environments; 0: one per CPU core
    ray: str = ""
    # address HOST:PORT of a running Ray cluster whose actors step the environments; "" local
    timeout: float = 300.0
    # seconds to wait for one step of the workers before reporting them as hung

    def __post_init__(self) -> None:
        if not 0 <= self.workers <= 1024:
            raise ValueError("workers must be between 0 and 1024")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
