"""Inspection's configuration: what to render, how often, and the substation assets."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field

from gridverse.configbase import Strict


class InspectionConfig(Strict):
    substation: str
    output_dir: Path = Path("var/render")
    width: int = Field(default=800, ge=64)
    height: int = Field(default=500, ge=64)
    every_s: float = Field(default=10.0, gt=0)


class AssetKind(StrEnum):
    TRANSFORMER = "transformer"
    BREAKER = "breaker"
    BUSBAR = "busbar"
    SENSOR = "sensor"


class AssetConfig(Strict):
    """One piece of substation equipment, named by its IEC 61850 logical node path."""

    name: str = Field(description="IEC 61850 path, e.g. PRIM/T1/YPTR1")
    kind: AssetKind
    position: tuple[float, float] = Field(description="x, y in metres on the substation plot")
    device: str | None = Field(default=None, description="device whose points give its state")
    length: float = Field(default=6.0, gt=0, description="busbars only: length in metres")
