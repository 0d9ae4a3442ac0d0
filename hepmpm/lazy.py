"""Package attributes that import their module on first use (PEP 562).

Used where a package's convenience names would pull heavy dependencies into processes that do
not need them (a coffea skim worker importing torch through ``hepmpm.data``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name ``n`` comes from ``package.where[n]``."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
