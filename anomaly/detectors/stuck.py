"""Stuck rule: analogue points whose last N readings are identical (real, noisy instruments never
are). N is `anomaly.stuck_after_samples`; positions and tap positions are expected to hold."""

from __future__ import annotations

from typing import ClassVar

from anomaly.config import AnomalyConfig
from anomaly.detectors.base import Snapshot, register
from gridverse.schema import Alarm, AlarmRule, Severity


@register
class StuckDetector:
    name: ClassVar[str] = AlarmRule.STUCK

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        n = config.stuck_after_samples
        out = []
        for (device, point), values in snapshot.history.items():
            if point.endswith(".Pos") or point.endswith("TapPos") or len(values) < n:
                continue
            tail = list(values)[-n:]
            if max(tail) == min(tail):
                message = f"{point} has read {tail[-1]:g} for {n} samples"
                substation = snapshot.substations.get(device, "")
                out.append(Alarm(self.name, substation, device, point, Severity.WARNING, message, tail[-1]))
        return out
