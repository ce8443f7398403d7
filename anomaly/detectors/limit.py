"""Limit rule: a point above its configured `high` or below its `low` (`anomaly.limits`), with
hysteresis: once raised, the alarm holds until the value is back inside the bound by the rule's
`deadband` (default 2 % of the bound's magnitude), so a value hovering at a limit does not chatter."""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

from anomaly.config import AnomalyConfig, LimitRule
from anomaly.detectors.base import Snapshot, register
from gridverse.schema import Alarm, AlarmRule


def deadband(rule: LimitRule, bound: float) -> float:
    """The rule's hysteresis around `bound` (its own, or 2 % of the bound's magnitude)."""
    return rule.deadband if rule.deadband is not None else 0.02 * abs(bound)


@register
class LimitDetector:
    name: ClassVar[str] = AlarmRule.LIMIT

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        rules: dict[str, list[LimitRule]] = defaultdict(list)
        for rule in config.limits:
            rules[rule.point].append(rule)
        out = []
        for p in snapshot.points:
            held = (self.name, p.device, p.name) in snapshot.active
            for rule in rules.get(p.name, []):
                if p.value is None:
                    continue
                high, low = rule.high, rule.low
                if high is not None and (p.value > high or held and p.value > high - deadband(rule, high)):
                    msg = f"{p.name} = {p.value:.1f} {p.unit} above {high}".replace("  ", " ")
                elif low is not None and (p.value < low or held and p.value < low + deadband(rule, low)):
                    msg = f"{p.name} = {p.value:.1f} {p.unit} below {low}".replace("  ", " ")
                else:
                    continue
                out.append(Alarm(self.name, p.substation, p.device, p.name, rule.severity, msg, p.value))
        return out
