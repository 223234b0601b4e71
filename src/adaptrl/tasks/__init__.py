"""Task families. The registry lists the built-in ones without importing them (or JAX);
each family's module is imported when the family is first built."""

from adaptrl.tasks.base import (
    REGISTRY,
    RegressionFamily,
    RLFamily,
    TaskFamily,
    family_entry,
    family_names,
    make_family,
    meta_test_family,
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
    "meta_test_family",
    "register",
]
