"""The detector loop: reads the latest points and twin results, evaluates the rules."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque

from anomaly.alarms import AlarmBook
from anomaly.detectors import Snapshot, run_detectors
from gridverse.config import Settings
from gridverse.historian import Historian
from gridverse.points import TELEMETRY, Point

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
        last_cycle = self.historian.latest("twin_cycle", tags=site)
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
                for r in self.historian.latest("twin_residual", tags=site, start_ns=t, end_ns=t)
            ]
        violations = []
        if last_cycle:
            t = last_cycle[0].time_ns
            violations = [
                (r.tags["element"], r.tags["kind"], float(r.fields["value"]), float(r.fields["limit"]))
                for r in self.historian.latest("twin_violation", tags=site, start_ns=t, end_ns=t)
            ]
        history = {k: list(v) for k, v in self.history.items()}
        snapshot = Snapshot.of(self.settings, points, history, residuals, violations)
        conditions = run_detectors(snapshot, self.settings.anomaly)
        self.alarms.update(conditions, now)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="detectors", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.evaluate()
            except Exception:
                log.exception("detector evaluation failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
