"""Meta-learning algorithms, one file each. The registry lists the built-in ones without
importing them (or JAX); each algorithm's module is imported when it is first built."""

from adaptrl.algos.base import REGISTRY, Algorithm, algorithm_entry, register

__all__ = ["REGISTRY", "Algorithm", "algorithm_entry", "register"]
