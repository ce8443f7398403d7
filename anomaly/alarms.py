"""Alarms: raised once when a condition starts, cleared once when it ends; stored and published,
and kept in the ISA-18.2 alarm store (`anomaly.alarmstate`) that the UI reads and acts on.

The alarm record itself (`Alarm`, `alarm_record`, `alarm_message`) lives in `gridverse.schema`,
shared with the gateway; it is re-exported here for existing importers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping

import paho.mqtt.client as mqtt

from anomaly.alarmstate import AlarmStore, AlarmStoreError
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

    Every change also goes through the ISA-18.2 alarm store (`anomaly.alarm_state_path`), which
    outlives the process: at start the book *reconciles* it (an alarm stored active is cleared
    until the first evaluation finds its condition true again, then restored to its former state;
    nothing comes back active from storage alone). A raise waits for its rule's on-delay
    (`anomaly.raise_after`), a clear for `anomaly.clear_after` evaluations without the condition;
    an alarm raised `chatter_count` times within `chatter_window_s` is *chattering*: it is held
    raised until its condition has been gone for a whole window, and each return is folded into
    it (its count goes up) instead of being raised again.

    `update` runs on the detector thread while the stack and the UI read the active alarms from
    others: every read goes through `active_alarms()`, a copy taken under the book's lock."""

    def __init__(
        self,
        site: str,
        anomaly: AnomalyConfig,
        mqtt_config: MqttConfig,
        historian: Historian,
        client: mqtt.Client | None,
        store: AlarmStore | None = None,
        *,
        now_ns: int | None = None,
    ):
        self.site = site
        self.config = anomaly
        self.mqtt_config = mqtt_config
        self.historian = historian
        self.client = client
        self.store = store if store is not None else AlarmStore(anomaly.alarm_state_path)
        self._lock = threading.Lock()
        self._active: dict[AlarmKey, Alarm] = {}
        self._absent: dict[AlarmKey, int] = {}
        self._absent_since: dict[AlarmKey, int] = {}
        self._pending: dict[AlarmKey, int] = {}
        self._raises: dict[AlarmKey, deque[int]] = {}
        self._held: set[AlarmKey] = set()  # chattering: held raised
        self._suppressed: dict[AlarmKey, str] = {}  # in the store as suppressed
        self._quiet: set[AlarmKey] = set()  # raised while suppressed: never announced
        self.raised = 0
        self.folded = 0  # chattering returns folded into a standing alarm
        self.restored = 0
        self._store_failed = False
        self.store_failures = 0  # evaluations whose changes the alarm store refused
        self._reconciling: dict[AlarmKey, Alarm] = {}
        self._reconcile(time.time_ns() if now_ns is None else now_ns)

    @classmethod
    def of(
        cls, settings: Settings, historian: Historian, client: mqtt.Client | None, store: AlarmStore | None = None
    ) -> AlarmBook:
        """The alarm book of a whole configuration (it takes the site name, anomaly and MQTT sections)."""
        return cls(settings.site.name, settings.anomaly, settings.mqtt, historian, client, store)

    def active_alarms(self) -> list[Alarm]:
        """The alarms active now, as a consistent snapshot (safe to iterate from any thread)."""
        with self._lock:
            return list(self._active.values())

    @property
    def active(self) -> dict[AlarmKey, Alarm]:
        """The active alarms by (rule, device, point): a snapshot copy, like `active_alarms()`."""
        with self._lock:
            return dict(self._active)

    def active_keys(self) -> frozenset[AlarmKey]:
        """The keys of the active alarms (what a detector's hysteresis needs)."""
        with self._lock:
            return frozenset(self._active)

    def _reconcile(self, time_ns: int) -> None:
        """Clear what the store holds active from a previous run (see the class docstring)."""
        try:
            rows = self.store.reconcile(time_ns)
        except AlarmStoreError as exc:
            log.error("%s; alarms from before the restart are not reconciled", exc)
            return
        self._reconciling = {
            r.key: Alarm(r.rule, r.substation, r.device, r.point, r.severity, r.message, r.value) for r in rows
        }
        if rows:
            log.info("%d alarm(s) stored active by the previous run cleared until confirmed", len(rows))
            records = [self._record(a, time_ns, False) for a in self._reconciling.values()]
            self._emit(records)

    def update(self, conditions: list[Alarm], time_ns: int, suppress: Mapping[str, str] | None = None) -> list[Alarm]:
        """Raise the new conditions, clear the ones gone; returns the newly raised alarms.

        `suppress` names devices whose alarms are suppressed by design now (device → why, e.g.
        its breaker is open): their new alarms go to the store as suppressed, unannounced."""
        current = {a.key: a for a in conditions}
        suppress = suppress or {}
        cfg = self.config
        window = int(cfg.chatter_window_s * 1e9)
        with self._lock:
            first = self._reconciling
            self._reconciling = {}
            restored = [a for k, a in current.items() if k in first and k not in self._active]
            for a in restored:
                self._pending.pop(a.key, None)
            pending = {}
            for k in current:
                if k not in self._active and k not in first:
                    pending[k] = self._pending.get(k, 0) + 1
            self._pending = pending
            new = [current[k] for k, n in pending.items() if n >= max(1, cfg.raise_after.get(str(current[k].rule), 1))]
            for a in new:
                del self._pending[a.key]
            folded = []
            cleared = []
            for k, a in self._active.items():
                if k in current:
                    if self._absent.pop(k, 0) and k in self._held:
                        folded.append(current[k])  # a chattering alarm came back: one more occurrence
                    self._absent_since.pop(k, None)
                    continue
                self._absent[k] = self._absent.get(k, 0) + 1
                since = self._absent_since.setdefault(k, time_ns)
                if k in self._held:
                    if time_ns - since >= window:
                        cleared.append(a)
                elif self._absent[k] >= cfg.clear_after:
                    cleared.append(a)
            for a in cleared:
                self._absent.pop(a.key, None)
                self._absent_since.pop(a.key, None)
                self._held.discard(a.key)
            chattering = set()
            for a in new + folded:
                times = self._raises.setdefault(a.key, deque())
                times.append(time_ns)
                while times and times[0] <= time_ns - window:
                    times.popleft()
                if len(times) >= cfg.chatter_count:
                    chattering.add(a.key)
            self._held |= chattering
            gone = {a.key for a in cleared}
            active = {k: current.get(k, a) for k, a in self._active.items() if k not in gone}
            active.update({a.key: a for a in new + restored})
            self._active = active
            for k in [k for k, times in self._raises.items() if k not in active and times[-1] <= time_ns - window]:
                del self._raises[k]
            announce = [a for a in new if a.device not in suppress]
            quiet = [a for a in new if a.device in suppress]
            quiet_before = set(self._quiet)
            self._quiet |= {a.key for a in quiet}
            self._quiet -= {a.key for a in cleared}
            unquiet = [a for k, a in self._active.items() if k in self._quiet and k[1] not in suppress]
            self._quiet -= {a.key for a in unquiet}
            self.raised += len(announce) + len(unquiet)
            self.folded += len(folded)
            self.restored += len(restored)
        self._to_store(announce, quiet, restored, folded, cleared, current, chattering, suppress, time_ns, bool(first))
        records = [self._record(a, time_ns, True) for a in announce + restored]
        records += [self._record(a, time_ns, False) for a in cleared if a.key not in quiet_before]
        records += [self._record(a, time_ns, True) for a in unquiet]
        for a in announce:
            log.warning("ALARM %s %s/%s: %s", a.severity, a.device, a.point, a.message)
        for a in cleared:
            log.info("alarm cleared %s/%s (%s)", a.device, a.point, a.rule)
        for a in first.values():
            if a.key not in current:
                log.info("alarm %s/%s (%s) from before the restart is not true now", a.device, a.point, a.rule)
        self._emit(records)
        return announce

    def _to_store(
        self,
        announce: list[Alarm],
        quiet: list[Alarm],
        restored: list[Alarm],
        folded: list[Alarm],
        cleared: list[Alarm],
        current: dict[AlarmKey, Alarm],
        chattering: set[AlarmKey],
        suppress: Mapping[str, str],
        time_ns: int,
        reconciled: bool,
    ) -> None:
        """Apply this evaluation's changes to the alarm store; a failing store is logged once and
        once again when it recovers (the historian and MQTT records go out regardless)."""
        store = self.store
        try:
            for a in restored:
                store.restore(a, time_ns)
            for a in announce + quiet:
                store.raise_alarm(a, time_ns, chattering=a.key in chattering)
            for a in folded:
                store.recur(a, time_ns)
            changed = {a.key for a in announce + quiet + restored + folded}
            for k, a in current.items():
                if k not in changed and k in self._active:
                    store.update_condition(a, time_ns)
            for a in cleared:
                store.clear_alarm(a.key, time_ns)
            for k in list(self._suppressed):
                if k[1] not in suppress:
                    store.unsuppress(k, time_ns)
                    del self._suppressed[k]
            for k in self._active:
                reason = suppress.get(k[1])
                if reason is not None and k not in self._suppressed:
                    store.suppress(k, time_ns, reason)
                    self._suppressed[k] = reason
            if reconciled:
                store.end_reconcile()
            store.mark_evaluated(time_ns)
        except Exception as exc:  # the store must not stop the alarms: logged once, and once recovered
            self.store_failures += 1
            if not self._store_failed:
                log.error("alarm store %s not updated: %s; alarms still go to the historian and MQTT",
                          store.path, exc)  # fmt: skip
                self._store_failed = True
            return
        if self._store_failed:
            log.info("alarm store %s updated again", store.path)
            self._store_failed = False

    def _record(self, a: Alarm, time_ns: int, active: bool) -> Record:
        return alarm_record(self.site, a, time_ns, active)

    def _emit(self, records: list[Record]) -> None:
        if not records:
            return
        try:
            self.historian.write(records)
        except HistorianError as exc:
            log.error("alarms not stored: %s", exc)
        self._publish(records)

    def _publish(self, records: list[Record]) -> None:
        if self.client is None:
            return
        for r in records:
            self.client.publish(*alarm_message(self.mqtt_config, r), qos=self.mqtt_config.qos)
