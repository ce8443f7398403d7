"""Residual rule: an alarm for each measurement of the twin's newest cycle that its
largest-normalised-residual test identified as bad data."""

from __future__ import annotations

from typing import ClassVar

from anomaly.config import AnomalyConfig
from anomaly.detectors.base import Snapshot, register
from gridverse.schema import Alarm, AlarmRule, Severity


@register
class ResidualDetector:
    name: ClassVar[str] = AlarmRule.RESIDUAL

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        return [
            Alarm(
                self.name,
                snapshot.substations.get(device, ""),
                device,
                point,
                Severity.WARNING,
                f"{point} is suspect bad data: normalised residual {r:+.1f} (measured {measured:.4g})",
                measured,
            )
            for device, point, r, measured, suspect in snapshot.residuals
            if suspect
        ]
