"""A module imported on first use, for heavy dependencies that a default server
never touches (PyJWT and cryptography unless tokens are on, requests unless a
webhook is sent): importing them anyway costs every server process their memory
(docs/performance.md, "Workers, threads and memory").
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute read imports it.

    Plain ``importlib.import_module`` under the import system's own locks, so
    several threads touching it at once are safe (unlike ``importlib.util.LazyLoader``
    before Python 3.12).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports on first attribute access."""
    return LazyModule(name)
