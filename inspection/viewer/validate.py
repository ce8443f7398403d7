"""Run the Khronos glTF validator (npm `gltf-validator`, via `validate.mjs` and node) on GLB files."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "validate.mjs"
VALIDATOR = HERE / "node_modules" / "gltf-validator"


class ValidatorMissing(RuntimeError):
    """node or the gltf-validator package is not installed; the message says how to install it."""


def node() -> str:
    """The node executable, or ValidatorMissing naming what to install."""
    found = shutil.which("node")
    if found is None:
        raise ValidatorMissing("node is not installed: `apt-get install nodejs npm` (scripts/bootstrap does it)")
    if not VALIDATOR.is_dir():
        raise ValidatorMissing(f"{VALIDATOR} not found: run `npm ci --prefix {HERE}` (scripts/bootstrap does it)")
    return found


def validate_many(paths: Sequence[Path], timeout: float = 120.0) -> list[dict[str, Any]]:
    """The validator's report for each file (one node process for all of them)."""
    result = subprocess.run(
        [node(), str(SCRIPT), *map(str, paths)], capture_output=True, text=True, timeout=timeout, check=False
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    if len(reports) != len(paths) or result.returncode not in (0, 1):
        raise RuntimeError(
            f"gltf-validator failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
        )
    return reports


def validate_glb(path: Path) -> dict[str, Any]:
    """The validator's report for one file: `issues.numErrors`, `issues.messages`, `info`…"""
    return validate_many([path])[0]
