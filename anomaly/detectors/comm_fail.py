"""Comm-fail rule: one alarm per device whose latest points say it did not answer."""

from __future__ import annotations

from typing import ClassVar

from anomaly.config import AnomalyConfig
from anomaly.detectors.base import Snapshot, register
from gridverse.points import Quality
from gridverse.schema import Alarm, AlarmRule, Severity


@register
class CommFailDetector:
    name: ClassVar[str] = AlarmRule.COMM_FAIL

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        seen: dict[str, Alarm] = {}
        for p in snapshot.points:
            if p.quality is Quality.COMM_FAIL and p.device not in seen:
                message = f"device {p.device} is not answering"
                seen[p.device] = Alarm(self.name, p.substation, p.device, "*", Severity.WARNING, message)
        return list(seen.values())
