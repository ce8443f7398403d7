"""Plugin discovery shared by every part that keeps one file per plugin (equipment kinds,
checklists, live detectors, scenario faults): importing a package's modules lets each register
itself."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable


def import_plugins(package: str, path: Iterable[str]) -> None:
    """Import every module of `package` (its `__path__`) except `base` and private ones."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_") and module.name != "base":
            importlib.import_module(f"{package}.{module.name}")
