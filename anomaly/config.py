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
    deadband: float | None = Field(
        default=None,
        ge=0,
        description="hysteresis: an alarm clears only once the value is back this far inside its bound "
        "(default 2 % of the bound's magnitude)",
    )


class AnomalyConfig(Strict):
    limits: list[LimitRule] = []
    voltage_band_pu: tuple[float, float] = (0.95, 1.05)
    loading_limit_percent: float = 100.0
    stuck_after_samples: int = Field(default=8, ge=3)
    clear_after: int = Field(default=3, ge=1, description="evaluations without the condition before an alarm clears")
    alarm_state_path: Path = Field(
        default=Path("var/alarms.db"),
        description="ISA-18.2 alarm states (SQLite), shared by the stack and the UI processes",
    )
    raise_after: dict[str, int] = Field(
        default={"violation": 2},
        description="on-delay per rule: evaluations in a row with the condition before the alarm is raised",
    )
    voltage_deadband_pu: float = Field(
        default=0.005, ge=0, description="a voltage violation is raised only this far beyond the band"
    )
    loading_deadband_percent: float = Field(
        default=2.0, ge=0, description="an overload is raised only this far above the loading limit"
    )
    stuck_min_quanta: float = Field(
        default=3.0,
        gt=0,
        description="stuck: the point's peers must say it should have moved by this many of its resolution steps",
    )
    stuck_quiet_quanta: float = Field(
        default=100.0,
        gt=0,
        description="stuck, when no peer moves: a held value counts only this many resolution steps from zero",
    )
    chatter_window_s: float = Field(default=600.0, gt=0)
    chatter_count: int = Field(
        default=3, ge=2, description="raises within chatter_window_s that make an alarm chattering (then it is held)"
    )
    flood_count: int = Field(default=10, ge=1, description="more alarms than this in flood_window_s is a flood")
    flood_window_s: float = Field(default=600.0, gt=0)
    shelve_max_s: float = Field(default=24 * 3600.0, gt=0, description="the longest an operator may shelve an alarm")
    models_dir: Path = Field(
        default=Path("var/models"),
        description="the model registry: one folder per model name, one per version, and the `deployed` pointer",
    )
    scenarios_dir: Path = Field(
        default=Path("var/scenarios"),
        description="scenario sets the analyst page offers (one folder per set, e.g. OUT of `anomaly scenarios`)",
    )
    model_enabled: bool = Field(default=True, description="score the live points with a lab model each cycle")
    model: str = Field(
        default="deployed",
        pattern=r"^(deployed|[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/v\d+)?)$",
        description='the model live scoring uses: "deployed" (the registry\'s pointer, else the shipped default), '
        "NAME (its newest version) or NAME/vN",
    )
    model_window: int = Field(
        default=150, ge=20, le=5000, description="live samples (one per detector cycle) the model scores each cycle"
    )
    model_warmup: int = Field(
        default=10, ge=4, description="samples of a point the model needs before it may alarm on it (no start-up storm)"
    )
