"""The shared schema every part writes and reads: measurement names, the alarm record and its MQTT
message, and the thresholds that more than one part draws with.

It lives in the core so that a part (the gateway raising its spool alarm, the UI listing alarms)
never imports another part's internals, only this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from gridverse.points import TELEMETRY, Record

if TYPE_CHECKING:
    from gridverse.config import MqttConfig, SiteConfig
    from gridverse.elements import ElementRef

__all__ = [
    "ALARM",
    "LOADING_ALARM_PERCENT",
    "LOADING_WARNING_PERCENT",
    "REJECTED",
    "SIM_CLOCK",
    "SIM_TRUTH",
    "TELEMETRY",
    "TWIN_BRANCH",
    "TWIN_BUS",
    "TWIN_CYCLE",
    "TWIN_OBSERVABILITY",
    "TWIN_RESIDUAL",
    "TWIN_VIOLATION",
    "Alarm",
    "AlarmRule",
    "OnDurable",
    "Placement",
    "Severity",
    "alarm_message",
    "alarm_record",
    "loading_band",
    "placements",
]

# Measurement names in the historian (one table or InfluxDB measurement each).
REJECTED = "rejected"  # a message or point the gateway could not accept, with the reason
ALARM = "alarm"  # an alarm raised (active=1) or cleared (active=0)
TWIN_BUS, TWIN_BRANCH, TWIN_CYCLE = "twin_bus", "twin_branch", "twin_cycle"
TWIN_RESIDUAL, TWIN_VIOLATION, TWIN_OBSERVABILITY = "twin_residual", "twin_violation", "twin_observability"
SIM_CLOCK, SIM_TRUTH = "sim_clock", "sim_truth"  # the field simulator's clock and ground truth

#: Branch loading (percent of rating) from which equipment is drawn as loaded (amber) and as
#: overloaded (red), in the operators' network view and in the technicians' substation render.
LOADING_WARNING_PERCENT = 50.0
LOADING_ALARM_PERCENT = 80.0

#: Called once the records handed over with it are durable (on disk), e.g. to acknowledge a QoS 1
#: MQTT message only then.
OnDurable = Callable[[], None]


class Placement(NamedTuple):
    """Where a device or sensor is: its substation and the network element it measures."""

    substation: str
    element: ElementRef | None


def placements(site: SiteConfig) -> dict[str, Placement]:
    """Every device and sensor of the site by name (the one lookup the parts share)."""
    out = {d.name: Placement(sub.name, d.element) for sub in site.substations for d in sub.devices}
    out.update({s.name: Placement(s.substation, s.element) for s in site.sensors})
    return out


def loading_band(pct: float | None) -> str:
    """`unknown`, `normal`, `warning` (≥ LOADING_WARNING_PERCENT) or `alarm` (≥ LOADING_ALARM_PERCENT)."""
    if pct is None or pct != pct:
        return "unknown"
    if pct >= LOADING_ALARM_PERCENT:
        return "alarm"
    if pct >= LOADING_WARNING_PERCENT:
        return "warning"
    return "normal"


class Severity(StrEnum):
    """How urgent an alarm is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlarmRule(StrEnum):
    """What raised an alarm: one per detector, plus the gateway's own spool alarm."""

    LIMIT = "limit"
    RESIDUAL = "residual"
    VIOLATION = "violation"
    COMM_FAIL = "comm_fail"
    STUCK = "stuck"
    SPOOL = "spool"


@dataclass(frozen=True)
class Alarm:
    """A condition a detector found; the alarm book turns conditions into raise/clear events."""

    rule: AlarmRule | str  # a learned detector may bring its own name
    substation: str
    device: str
    point: str
    severity: Severity | str  # a Severity after construction: "critcal" is refused here, not stored
    message: str
    value: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.device, self.point)


def alarm_record(site: str, a: Alarm, time_ns: int, active: bool) -> Record:
    """An alarm raised (active) or cleared, as the historian keeps it."""
    fields: dict[str, float | int | str | bool] = {"message": a.message, "active": int(active)}
    if a.value is not None:
        fields["value"] = float(a.value)
    tags = {
        "site": site,
        "substation": a.substation,
        "device": a.device,
        "point": a.point,
        "rule": str(a.rule),
        "severity": str(a.severity),
    }
    return Record(ALARM, tags, fields, time_ns)


def alarm_message(config: MqttConfig, r: Record) -> tuple[str, str]:
    """(topic, JSON body) of an alarm record on `…/<substation>/<device>/alarm`."""
    from gridverse.mqtt import topic

    t = topic(config, r.tags["site"], r.tags["substation"] or "-", r.tags["device"] or "-", "alarm")
    return t, json.dumps({"time": r.time_ns // 1_000_000, **r.tags, **r.fields})
