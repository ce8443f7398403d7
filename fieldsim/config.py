"""The field simulator's configuration: clock, noise, where RTUs listen, injected faults."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from gridverse.configbase import Strict


class FaultKind(StrEnum):
    STUCK = "stuck"
    DRIFT = "drift"
    SPIKE = "spike"
    DROPOUT = "dropout"
    LINE_OUTAGE = "line_outage"


class FaultConfig(Strict):
    kind: FaultKind
    device: str | None = None
    point: str | None = None
    line: int | None = None
    start_s: float = Field(default=0.0, ge=0, description="real seconds after the simulator starts")
    duration_s: float | None = Field(default=None, gt=0, description="none: until the end")
    magnitude: float = Field(
        default=0.0, description="spike: offset in the point's unit; drift: that offset per minute"
    )

    def active(self, elapsed_s: float) -> bool:
        if elapsed_s < self.start_s:
            return False
        return self.duration_s is None or elapsed_s < self.start_s + self.duration_s

    @model_validator(mode="after")
    def _target(self) -> FaultConfig:
        if self.kind == FaultKind.LINE_OUTAGE:
            if self.line is None:
                raise ValueError("a line_outage fault needs `line` (the line index)")
        elif self.device is None or self.point is None:
            raise ValueError(f"a {self.kind.value} fault needs `device` and `point`")
        return self


class SimulatorConfig(Strict):
    start: str = "2016-06-15T11:00:00"
    speed: float = Field(default=60.0, gt=0, description="simulated seconds per real second")
    step_s: float = Field(default=1.0, gt=0, description="real seconds between power flows")
    deviation: float = Field(default=0.1, ge=0, description="random deviation of real loads from their profiles")
    noise: bool = True
    seed: int = 7
    ambient_c: float = 20.0
    bind_host: str | None = Field(
        default=None, description="where simulated RTUs listen (none: each substation's host)"
    )
    faults: list[FaultConfig] = []
