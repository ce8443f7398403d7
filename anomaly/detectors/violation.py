"""Violation rule: each limit the twin's newest estimate breaks (an overload is critical, a
voltage outside the band a warning).

The estimate carries its own uncertainty, so a bus sitting at the band's edge (1.050 against a
1.05 pu band) would raise and clear with every cycle. A violation is therefore raised only once it
is beyond its limit by the deadband (`anomaly.voltage_deadband_pu`, `anomaly.loading_deadband_percent`);
once raised, it holds for as long as the twin still reports it beyond the limit itself."""

from __future__ import annotations

from typing import ClassVar

from anomaly.config import AnomalyConfig
from anomaly.detectors.base import Snapshot, register
from gridverse.schema import Alarm, AlarmRule, Severity


@register
class ViolationDetector:
    name: ClassVar[str] = AlarmRule.VIOLATION

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        out = []
        for element, kind, value, limit in snapshot.violations:
            margin = config.loading_deadband_percent if kind == "loading" else config.voltage_deadband_pu
            held = (self.name, element, kind) in snapshot.active
            if not held and abs(value - limit) < margin:
                continue
            severity = Severity.CRITICAL if kind == "loading" else Severity.WARNING
            out.append(
                Alarm(self.name, "", element, kind, severity, f"{element}: {kind} {value:.3f} beyond {limit}", value)
            )
        return out
