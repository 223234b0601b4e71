"""Task families. Importing this package registers every built-in family."""

from adaptrl.tasks import bandit, point_nav, sinusoid, tabular_mdp  # noqa: F401  (registration)
from adaptrl.tasks.base import (
    REGISTRY,
    RegressionFamily,
    RLFamily,
    TaskFamily,
    family_entry,
    family_names,
    make_family,
    register,
)

__all__ = [
    "REGISTRY",
    "RLFamily",
    "RegressionFamily",
    "TaskFamily",
    "family_entry",
    "family_names",
    "make_family",
    "register",
]
