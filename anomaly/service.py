"""The detector loop: reads the latest points and twin results, evaluates the rules."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque

from anomaly.alarms import AlarmBook
from anomaly.detectors import Snapshot, run_detectors
from anomaly.live import LiveScorer
from gridverse.config import Settings
from gridverse.historian import Historian
from gridverse.mqtt import broker_host, stop_client
from gridverse.points import TELEMETRY, Point
from gridverse.schema import TWIN_CYCLE, TWIN_RESIDUAL, TWIN_VIOLATION
from gridverse.watchdog import DEFAULT_MISSES, Watchdog, Worker

log = logging.getLogger(__name__)


class Detectors:
    def __init__(self, settings: Settings, historian: Historian, alarms: AlarmBook) -> None:
        self.settings = settings
        self.historian = historian
        self.alarms = alarms
        self.interval_s = settings.twin.interval_s
        n = settings.anomaly.stuck_after_samples
        self.history: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=n))
        self._last_seen: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker = Worker("detector evaluation", logger=log)  # the watchdog's once started
        self.model = LiveScorer(settings, historian)  # the deployed lab model (anomaly.model_*)

    def evaluate(self) -> None:
        now = time.time_ns()
        site = {"site": self.settings.site.name}
        window = int(max(self.interval_s * 3, 5) * 1e9)
        points = [Point.from_record(r) for r in self.historian.latest(TELEMETRY, tags=site, start_ns=now - window)]
        for p in points:
            key = (p.device, p.name)
            if p.value is not None and self._last_seen.get(key) != p.time_ns:
                self.history[key].append(p.value)
                self._last_seen[key] = p.time_ns
        last_cycle = self.historian.latest(TWIN_CYCLE, tags=site)
        residuals = []
        if last_cycle:
            t = last_cycle[0].time_ns
            residuals = [
                (
                    r.tags["device"],
                    r.tags["point"],
                    float(r.fields.get("normalised", r.fields["residual_sigma"])),
                    float(r.fields["measured"]),
                    bool(int(r.fields.get("suspect", 0))),
                )
                for r in self.historian.latest(TWIN_RESIDUAL, tags=site, start_ns=t, end_ns=t)
            ]
        violations = []
        if last_cycle:
            t = last_cycle[0].time_ns
            violations = [
                (r.tags["element"], r.tags["kind"], float(r.fields["value"]), float(r.fields["limit"]))
                for r in self.historian.latest(TWIN_VIOLATION, tags=site, start_ns=t, end_ns=t)
            ]
        history = {k: list(v) for k, v in self.history.items()}
        snapshot = Snapshot.of(self.settings, points, history, residuals, violations, self.alarms.active_keys())
        conditions = run_detectors(snapshot, self.settings.anomaly)
        conditions += self.model.conditions(now)  # never raises: its failures are in its status
        self.alarms.update(conditions, now, suppress=snapshot.suppressed())

    def start(self, watchdog: Watchdog | None = None) -> None:
        """Evaluate every `interval_s` in a thread of its own and publish alarms over MQTT;
        `watchdog` (when given) restarts what ends and reports a loop that stopped evaluating."""
        client = self.alarms.client
        if client is not None:
            cfg = self.settings.mqtt
            client.connect_async(broker_host(cfg), cfg.port)
            client.loop_start()
        if watchdog is not None:
            stuck_after = max(DEFAULT_MISSES * self.interval_s, 30.0)
            self.worker = watchdog.add(
                "detectors", alive=self._alive, restart=self._spawn, stuck_after_s=stuck_after, logger=log
            )
            if client is not None:  # paho's network thread ends when a callback raises
                watchdog.add(
                    "alarm-mqtt-loop",
                    alive=lambda: getattr(client, "_thread", None) is not None,
                    restart=client.loop_start,
                )
        self._spawn()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _spawn(self) -> None:
        if self._alive():
            return
        self._thread = threading.Thread(target=self._run, name="detectors", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = self.interval_s
        while not self._stop.wait(delay):
            try:
                self.evaluate()
            except Exception as exc:  # logged once, counted, backed off; logged again on recovery
                delay = self.worker.failed(exc, self.interval_s)
                continue
            delay = self.interval_s
            self.worker.ok()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the evaluation under way; disconnect the alarm publisher."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.alarms.client is not None:
            stop_client(self.alarms.client)
