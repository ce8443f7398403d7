"""Suite-wide fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _main_module_restored() -> Iterator[None]:
    """Streamlit's AppTest runs each page as `__main__` from a temporary script and leaves it in
    `sys.modules`; a process spawned later (the Open3D render process) would re-run that script
    and die. Every test gets the `__main__` it started with back."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
