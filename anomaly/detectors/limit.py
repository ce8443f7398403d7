"""Limit rule: a point above its configured `high` or below its `low` (`anomaly.limits`)."""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

from anomaly.config import AnomalyConfig, LimitRule
from anomaly.detectors.base import Snapshot, register
from gridverse.schema import Alarm, AlarmRule


@register
class LimitDetector:
    name: ClassVar[str] = AlarmRule.LIMIT

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        rules: dict[str, list[LimitRule]] = defaultdict(list)
        for rule in config.limits:
            rules[rule.point].append(rule)
        out = []
        for p in snapshot.points:
            for rule in rules.get(p.name, []):
                if p.value is None:
                    continue
                if rule.high is not None and p.value > rule.high:
                    msg = f"{p.name} = {p.value:.1f} {p.unit} above {rule.high}".replace("  ", " ")
                elif rule.low is not None and p.value < rule.low:
                    msg = f"{p.name} = {p.value:.1f} {p.unit} below {rule.low}".replace("  ", " ")
                else:
                    continue
                out.append(Alarm(self.name, p.substation, p.device, p.name, rule.severity, msg, p.value))
        return out
