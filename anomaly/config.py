"""The detectors' configuration: limit rules, bands, alarm timing."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gridverse.configbase import Strict
from gridverse.schema import Severity  # the alarm record's enum, shared with every part

__all__ = ["AnomalyConfig", "LimitRule", "Severity"]


class LimitRule(Strict):
    point: str = Field(description="IEC 61850 point name, e.g. YPTR1.TmpOil")
    low: float | None = None
    high: float | None = None
    severity: Severity = Severity.WARNING


class AnomalyConfig(Strict):
    limits: list[LimitRule] = []
    voltage_band_pu: tuple[float, float] = (0.95, 1.05)
    loading_limit_percent: float = 100.0
    stuck_after_samples: int = Field(default=8, ge=3)
    clear_after: int = Field(default=3, ge=1, description="evaluations without the condition before an alarm clears")
    models_dir: Path = Field(
        default=Path("var/models"),
        description="the model registry: one folder per model name, one per version, and the `deployed` pointer",
    )
