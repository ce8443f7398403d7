"""Alarms: raised once when a condition starts, cleared once when it ends; stored and published."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from gridverse.config import MqttConfig, Settings
from gridverse.historian import Historian, HistorianError
from gridverse.mqtt import topic
from gridverse.points import Record

log = logging.getLogger(__name__)

ALARM = "alarm"


@dataclass(frozen=True)
class Alarm:
    rule: str  # limit, residual, violation, comm_fail, stuck
    substation: str
    device: str
    point: str
    severity: str
    message: str
    value: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.device, self.point)


class AlarmBook:
    """Keeps the active alarms; turns each evaluation's conditions into raise/clear events."""

    def __init__(self, settings: Settings, historian: Historian, client: mqtt.Client | None):
        self.settings = settings
        self.historian = historian
        self.client = client
        self.active: dict[tuple[str, str, str], Alarm] = {}
        self._absent: dict[tuple[str, str, str], int] = {}
        self.raised = 0

    def update(self, conditions: list[Alarm], time_ns: int) -> list[Alarm]:
        """Raise the new conditions, clear the ones gone; returns the newly raised alarms.

        An alarm clears only after its condition has been absent for `anomaly.clear_after`
        evaluations in a row (an off-delay), so a value hovering at a limit does not flap."""
        current = {a.key: a for a in conditions}
        new = [a for k, a in current.items() if k not in self.active]
        need = self.settings.anomaly.clear_after
        cleared = []
        for k, a in self.active.items():
            if k in current:
                self._absent.pop(k, None)
                continue
            self._absent[k] = self._absent.get(k, 0) + 1
            if self._absent[k] >= need:
                cleared.append(a)
        records = [self._record(a, time_ns, True) for a in new]
        records += [self._record(a, time_ns, False) for a in cleared]
        for a in cleared:
            self._absent.pop(a.key, None)
        gone = {a.key for a in cleared}
        self.active = {k: current.get(k, a) for k, a in self.active.items() if k not in gone}
        self.active.update({a.key: a for a in new})
        self.raised += len(new)
        for a in new:
            log.warning("ALARM %s %s/%s: %s", a.severity, a.device, a.point, a.message)
        for a in cleared:
            log.info("alarm cleared %s/%s (%s)", a.device, a.point, a.rule)
        if records:
            try:
                self.historian.write(records)
            except HistorianError as exc:
                log.error("alarms not stored: %s", exc)
            self._publish(records)
        return new

    def _record(self, a: Alarm, time_ns: int, active: bool) -> Record:
        return alarm_record(self.settings.site.name, a, time_ns, active)

    def _publish(self, records: list[Record]) -> None:
        if self.client is None:
            return
        for r in records:
            self.client.publish(*alarm_message(self.settings.mqtt, r), qos=self.settings.mqtt.qos)


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
        "rule": a.rule,
        "severity": a.severity,
    }
    return Record(ALARM, tags, fields, time_ns)


def alarm_message(config: MqttConfig, r: Record) -> tuple[str, str]:
    """(topic, JSON body) of an alarm record on `…/<substation>/<device>/alarm`."""
    t = topic(config, r.tags["site"], r.tags["substation"] or "-", r.tags["device"] or "-", "alarm")
    return t, json.dumps({"time": r.time_ns // 1_000_000, **r.tags, **r.fields})
