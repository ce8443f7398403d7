"""Stuck rule: an analogue point whose last N readings are identical although it should have moved.

N is `anomaly.stuck_after_samples`; breaker and tap positions are expected to hold. Identical
readings alone are not enough: a lightly loaded feeder's current, quantised at 0.1 A, can hold
still for minutes while its noisy instrument works perfectly (the rule used to fire 17 times in 10
healthy minutes for that). So the rule asks how far the point *should* have moved: its peers on
the same device give the relative movement seen meanwhile (for a current, its apparent power
√(P² + Q²); otherwise the peer that moved most), and the point is stuck only when that movement,
applied to its value, is at least `stuck_min_quanta` of its resolution steps
(`Snapshot.resolution`). With no moving peer, a quantised reading must sit at least
`stuck_quiet_quanta` steps from zero; a continuous (floating-point) reading that repeats exactly
is stuck, unless it reads exactly 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from anomaly.config import AnomalyConfig
from anomaly.detectors.base import Snapshot, register
from gridverse.schema import Alarm, AlarmRule, Severity


def _held(point: str) -> bool:
    return point.endswith(".Pos") or point.endswith("TapPos")


def _relative_movement(values: Sequence[float]) -> float:
    """(max − min) / mean magnitude of a peer's readings; 0 for a peer hovering around zero
    (its movement says nothing about the scale of the others)."""
    lo, hi = min(values), max(values)
    mean = sum(abs(v) for v in values) / len(values)
    if mean == 0 or hi - lo > mean:
        return 0.0
    return (hi - lo) / mean


@register
class StuckDetector:
    name: ClassVar[str] = AlarmRule.STUCK

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
        n = config.stuck_after_samples
        tails: dict[str, dict[str, list[float]]] = defaultdict(dict)
        for (device, point), values in snapshot.history.items():
            if not _held(point) and len(values) >= n:
                tails[device][point] = list(values)[-n:]
        out = []
        for device, points in tails.items():
            for point, tail in points.items():
                if max(tail) != min(tail):
                    continue
                value = tail[-1]
                step = snapshot.resolution.get((device, point), 0.0)
                if not self._should_have_moved(device, point, value, step, points, snapshot, config):
                    continue
                message = f"{point} has read {value:g} for {n} samples while it should have moved"
                substation = snapshot.substations.get(device, "")
                out.append(Alarm(self.name, substation, device, point, Severity.WARNING, message, value))
        return out

    @staticmethod
    def _should_have_moved(
        device: str,
        point: str,
        value: float,
        step: float,
        peers: dict[str, list[float]],
        snapshot: Snapshot,
        config: AnomalyConfig,
    ) -> bool:
        if value == 0:
            return False  # a dead or unloaded measurand reads exactly zero on purpose
        apparent = _apparent_power(point, peers)
        if apparent is not None:  # a current follows |S| = √(P² + Q²), not P or Q alone
            moving = [_relative_movement(apparent)] if max(apparent) != min(apparent) else []
        else:
            moving = [
                _relative_movement(tail)
                for name, tail in peers.items()
                if name != point and max(tail) != min(tail) and _relative_movement(tail) > 0
            ]
        if not moving:
            return step == 0 or abs(value) >= config.stuck_quiet_quanta * step
        if step == 0:
            return True
        expected = abs(value) * max(moving)  # how far this reading should have moved meanwhile
        return expected >= config.stuck_min_quanta * step


def _apparent_power(point: str, peers: dict[str, list[float]]) -> list[float] | None:
    """For a current (`<LN>.A`) whose device also reads `<LN>.TotW` and `<LN>.TotVAr`: the apparent
    power over the same samples. A feeder's P can swing by 7 % while Q swings the other way and
    |S|, hence its current, stays within 0.2 %."""
    ln, _, name = point.rpartition(".")
    if name != "A":
        return None
    p, q = peers.get(f"{ln}.TotW"), peers.get(f"{ln}.TotVAr")
    if p is None or q is None or len(p) != len(q):
        return None
    return [math.hypot(a, b) for a, b in zip(p, q, strict=True)]
