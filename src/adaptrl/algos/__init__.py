"""Meta-learning algorithms, one file each. Importing this package registers them."""

from adaptrl.algos import maml, rl2  # noqa: F401  (registration)
from adaptrl.algos.base import REGISTRY, Algorithm, algorithm_entry, register

__all__ = ["REGISTRY", "Algorithm", "algorithm_entry", "register"]
