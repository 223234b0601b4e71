"""Registry targets named as ``"module:attr"`` and imported only when they are needed.

The registries of task families and algorithms list names, descriptions and kinds as plain
data, so ``adaptrl tasks`` and ``adaptrl algos`` answer without importing JAX; the class
behind a name is imported when a family or an algorithm is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from adaptrl.errors import UserError


def load(target: str | Any) -> Any:
    """The object named by ``target`` (``"package.module:attr"``); any other ``target``
    is already the object and is returned as it is."""
    if not isinstance(target, str):
        return target
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise UserError(f"{target!r} is not of the form module:attr")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise UserError(f"cannot import {module} for {target} ({e})") from None
    except AttributeError:
        raise UserError(f"{module} has no attribute {attr!r} (for {target})") from None


def optional(module: str, *, needed_by: str, extra: str) -> Any:
    """The module ``module`` of an optional extra, or a one-line :class:`UserError` naming
    the ``pip install`` that provides it."""
    package = module.split(".")[0]
    try:
        importlib.import_module(package)  # first: a cached submodule must not hide its absence
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{needed_by} need the {package.replace('_', '-')} "
                        f"package ({e}); install it with: pip install \"adaptrl[{extra}]\""
                        ) from None
