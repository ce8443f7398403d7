"""The viewer's static files are package data: an installed gridverse (a wheel, no checkout)
carries the page, its scripts and styles, the npm manifest the bootstrap installs node_modules
from, and the validator script, and leaves node_modules out."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from inspection.viewer import server, validate
from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[1]
VIEWER = ROOT / "inspection" / "viewer"


def _needed() -> set[str]:
    """The viewer's non-Python files the code reads at run time, relative to `inspection/`."""
    files = {f"viewer/{name}" for name in server.STATIC.values()}
    files |= {f"viewer/{validate.SCRIPT.name}", "viewer/package.json", "viewer/package-lock.json"}
    return files


def test_every_file_the_viewer_reads_is_declared_package_data() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["inspection"]
    for name in sorted(_needed()):
        assert (ROOT / "inspection" / name).is_file(), f"inspection/{name} is read by the viewer but does not exist"
        assert any(fnmatch.fnmatch(name, g) for g in globs), f"inspection/{name} is not in package-data {globs}"


def test_the_wheel_carries_the_viewer_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", ".venv", ".git", "tests", "bench", "*.egg-info")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("gridverse", "fieldsim", "gateway", "gridmodel", "anomaly", "inspection", "ui"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0 and "setuptools" in build.stderr and "Could not find" in build.stderr:
        unavailable(f"pip cannot fetch setuptools>=68 to build the wheel here: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("gridverse-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = {f"inspection/{n}" for n in _needed()} - names
    assert not missing, f"the wheel lacks {sorted(missing)}"
    assert not any("node_modules" in n for n in names), "node_modules must not be packaged"
