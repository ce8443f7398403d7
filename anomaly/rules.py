"""Rule detectors: limits on points, residuals of the twin, violations, dead and stuck devices."""

from __future__ import annotations

from collections import defaultdict

from anomaly.alarms import Alarm
from gridverse.config import Settings
from gridverse.points import Point, Quality


def _substation_of(settings: Settings) -> dict[str, str]:
    out = {d.name: sub.name for sub in settings.site.substations for d in sub.devices}
    out.update({s.name: s.substation for s in settings.site.sensors})
    return out


def limit_alarms(settings: Settings, points: list[Point]) -> list[Alarm]:
    rules = defaultdict(list)
    for rule in settings.anomaly.limits:
        rules[rule.point].append(rule)
    out = []
    for p in points:
        for rule in rules.get(p.name, []):
            if p.value is None:
                continue
            if rule.high is not None and p.value > rule.high:
                msg = f"{p.name} = {p.value:.1f} {p.unit} above {rule.high}".replace("  ", " ")
            elif rule.low is not None and p.value < rule.low:
                msg = f"{p.name} = {p.value:.1f} {p.unit} below {rule.low}".replace("  ", " ")
            else:
                continue
            out.append(Alarm("limit", p.substation, p.device, p.name, rule.severity.value, msg, p.value))
    return out


def comm_alarms(points: list[Point]) -> list[Alarm]:
    """One alarm per device whose latest points say it did not answer."""
    seen: dict[str, Alarm] = {}
    for p in points:
        if p.quality is Quality.COMM_FAIL and p.device not in seen:
            seen[p.device] = Alarm(
                "comm_fail", p.substation, p.device, "*", "warning", f"device {p.device} is not answering"
            )
    return list(seen.values())


def stuck_alarms(settings: Settings, history: dict[tuple[str, str], list[float]]) -> list[Alarm]:
    """Analogue points whose last N readings are identical: real, noisy instruments never are."""
    n = settings.anomaly.stuck_after_samples
    subs = _substation_of(settings)
    out = []
    for (device, point), values in history.items():
        if point.endswith(".Pos") or point.endswith("TapPos") or len(values) < n:
            continue
        tail = values[-n:]
        if max(tail) == min(tail):
            out.append(
                Alarm(
                    "stuck",
                    subs.get(device, ""),
                    device,
                    point,
                    "warning",
                    f"{point} has read {tail[-1]:g} for {n} samples",
                    tail[-1],
                )
            )
    return out


def residual_alarms(settings: Settings, residuals: list[tuple[str, str, float, float, bool]]) -> list[Alarm]:
    """(device, point, normalised residual, measured, suspect) from the twin's newest cycle: an
    alarm for each measurement its largest-normalised-residual test identified as bad data."""
    subs = _substation_of(settings)
    return [
        Alarm(
            "residual",
            subs.get(d, ""),
            d,
            p,
            "warning",
            f"{p} is suspect bad data: normalised residual {r:+.1f} (measured {measured:.4g})",
            measured,
        )
        for d, p, r, measured, suspect in residuals
        if suspect
    ]


def violation_alarms(violations: list[tuple[str, str, float, float]]) -> list[Alarm]:
    """(element, kind, value, limit) from the twin's limit check."""
    return [
        Alarm(
            "violation",
            "",
            element,
            kind,
            "critical" if kind == "loading" else "warning",
            f"{element}: {kind} {value:.3f} beyond {limit}",
            value,
        )
        for element, kind, value, limit in violations
    ]
