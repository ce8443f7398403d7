"""Violation rule: each limit the twin's newest estimate breaks (an overload is critical, a
voltage outside the band a warning)."""

from __future__ import annotations

from typing import ClassVar

from anomaly.config import AnomalyConfig
from anomaly.detectors.base import Snapshot, register
from gridverse.schema import Alarm, AlarmRule, Severity


@register
class ViolationDetector:
    name: ClassVar[str] = AlarmRule.VIOLATION

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        return [
            Alarm(
                self.name,
                "",
                element,
                kind,
                Severity.CRITICAL if kind == "loading" else Severity.WARNING,
                f"{element}: {kind} {value:.3f} beyond {limit}",
                value,
            )
            for element, kind, value, limit in snapshot.violations
        ]
