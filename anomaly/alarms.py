"""Alarms: raised once when a condition starts, cleared once when it ends; stored and published.

The alarm record itself (`Alarm`, `alarm_record`, `alarm_message`) lives in `gridverse.schema`,
shared with the gateway; it is re-exported here for existing importers.
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt

from anomaly.config import AnomalyConfig
from gridverse.config import MqttConfig, Settings
from gridverse.historian import Historian, HistorianError
from gridverse.points import Record
from gridverse.schema import ALARM, Alarm, AlarmRule, Severity, alarm_message, alarm_record

__all__ = ["ALARM", "Alarm", "AlarmBook", "AlarmRule", "Severity", "alarm_message", "alarm_record"]

log = logging.getLogger(__name__)

AlarmKey = tuple[str, str, str]


class AlarmBook:
    """Keeps the active alarms; turns each evaluation's conditions into raise/clear events.

    `update` runs on the detector thread while the stack and the UI read the active alarms from
    others: every read goes through `active_alarms()`, a copy taken under the book's lock."""

    def __init__(
        self,
        site: str,
        anomaly: AnomalyConfig,
        mqtt_config: MqttConfig,
        historian: Historian,
        client: mqtt.Client | None,
    ):
        self.site = site
        self.config = anomaly
        self.mqtt_config = mqtt_config
        self.historian = historian
        self.client = client
        self._lock = threading.Lock()
        self._active: dict[AlarmKey, Alarm] = {}
        self._absent: dict[AlarmKey, int] = {}
        self.raised = 0

    @classmethod
    def of(cls, settings: Settings, historian: Historian, client: mqtt.Client | None) -> AlarmBook:
        """The alarm book of a whole configuration (it takes the site name, anomaly and MQTT sections)."""
        return cls(settings.site.name, settings.anomaly, settings.mqtt, historian, client)

    def active_alarms(self) -> list[Alarm]:
        """The alarms active now, as a consistent snapshot (safe to iterate from any thread)."""
        with self._lock:
            return list(self._active.values())

    @property
    def active(self) -> dict[AlarmKey, Alarm]:
        """The active alarms by (rule, device, point): a snapshot copy, like `active_alarms()`."""
        with self._lock:
            return dict(self._active)

    def update(self, conditions: list[Alarm], time_ns: int) -> list[Alarm]:
        """Raise the new conditions, clear the ones gone; returns the newly raised alarms.

        An alarm clears only after its condition has been absent for `anomaly.clear_after`
        evaluations in a row (an off-delay), so a value hovering at a limit does not flap."""
        current = {a.key: a for a in conditions}
        need = self.config.clear_after
        with self._lock:
            new = [a for k, a in current.items() if k not in self._active]
            cleared = []
            for k, a in self._active.items():
                if k in current:
                    self._absent.pop(k, None)
                    continue
                self._absent[k] = self._absent.get(k, 0) + 1
                if self._absent[k] >= need:
                    cleared.append(a)
            for a in cleared:
                self._absent.pop(a.key, None)
            gone = {a.key for a in cleared}
            active = {k: current.get(k, a) for k, a in self._active.items() if k not in gone}
            active.update({a.key: a for a in new})
            self._active = active
            self.raised += len(new)
        records = [self._record(a, time_ns, True) for a in new]
        records += [self._record(a, time_ns, False) for a in cleared]
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
        return alarm_record(self.site, a, time_ns, active)

    def _publish(self, records: list[Record]) -> None:
        if self.client is None:
            return
        for r in records:
            self.client.publish(*alarm_message(self.mqtt_config, r), qos=self.mqtt_config.qos)
