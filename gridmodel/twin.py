"""The live twin: each cycle reads the latest points, estimates the state and writes it back."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import pandas as pd

from gridmodel.estimator import Estimate, EstimationError, run_estimate
from gridmodel.measurements import from_points, pseudo_measurements
from gridmodel.network import GridData, apply_profiles, load_grid, profile_values
from gridverse.config import Settings
from gridverse.historian import Historian, HistorianError
from gridverse.points import TELEMETRY, Point, Record

log = logging.getLogger(__name__)

TWIN_BUS, TWIN_BRANCH, TWIN_CYCLE = "twin_bus", "twin_branch", "twin_cycle"
TWIN_RESIDUAL, TWIN_VIOLATION = "twin_residual", "twin_violation"


@dataclass
class CycleResult:
    time_ns: int
    converged: bool
    estimate: Estimate | None
    measurements: int
    error: str = ""
    violations: list[Record] = field(default_factory=list)


class Twin:
    def __init__(self, settings: Settings, historian: Historian, grid: GridData | None = None):
        self.settings = settings
        self.historian = historian
        self.grid = grid or load_grid(settings.site.network)
        self.net = self.grid.net
        self.base_line_service = self.net.line.in_service.copy()
        self.base_trafo_service = self.net.trafo.in_service.copy()
        self.cycles = 0
        self.converged = 0
        self.last: CycleResult | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _latest_points(self, now_ns: int) -> dict[tuple[str, str], Point]:
        since = now_ns - int(self.settings.twin.stale_after_s * 1e9)
        records = self.historian.latest(TELEMETRY, tags={"site": self.settings.site.name},
                                        start_ns=since)  # fmt: skip
        points = (Point.from_record(r) for r in records)
        return {(p.device, p.name): p for p in points}

    def _profile_time(self, now_ns: int) -> pd.Timestamp:
        """The moment the pseudo-measurements describe: the simulator's clock when one runs."""
        clock = self.historian.latest("sim_clock", tags={"site": self.settings.site.name})
        if clock:
            return pd.Timestamp(int(clock[0].fields["sim_time_ns"]), tz="UTC")
        return pd.Timestamp(now_ns, tz="UTC")

    def cycle(self) -> CycleResult:
        now = time.time_ns()
        net = self.net
        points = self._latest_points(now)
        if self.grid.profiles:
            apply_profiles(net, profile_values(self.grid.profiles, self._profile_time(now)))
        mset = from_points(net, self.settings, points)
        net.line["in_service"] = self.base_line_service & ~net.line.index.isin(list(mset.open_lines))
        net.trafo["in_service"] = self.base_trafo_service & ~net.trafo.index.isin(
            list(mset.open_trafos)
        )
        measured_buses = {
            m.element for m in mset.measurements if m.element_type == "bus" and m.meas_type == "p"
        }
        measurements = mset.measurements + pseudo_measurements(net, measured_buses,
                                                               self.settings.twin)  # fmt: skip
        self.cycles += 1
        try:
            est = run_estimate(net, measurements)
        except EstimationError as exc:
            log.error("twin cycle %d: %s", self.cycles, exc)
            result = CycleResult(now, False, None, len(mset.measurements), str(exc))
        else:
            self.converged += 1
            result = CycleResult(now, True, est, len(mset.measurements))
        self._store(result)
        self.last = result
        return result

    def _store(self, result: CycleResult) -> None:
        site = self.settings.site.name
        t = result.time_ns
        records = [
            Record(TWIN_CYCLE, {"site": site},
                   {"converged": int(result.converged), "measurements": result.measurements,
                    "error": result.error[:300],
                    "duration_s": result.estimate.duration_s if result.estimate else 0.0}, t)
        ]  # fmt: skip
        est = result.estimate
        if est is not None:
            band = self.settings.anomaly.voltage_band_pu
            limit = self.settings.anomaly.loading_limit_percent
            for bus, row in est.res_bus.iterrows():
                records.append(Record(TWIN_BUS, {"site": site, "bus": str(bus)},
                                      {"vm_pu": float(row.vm_pu), "va_degree": float(row.va_degree),
                                       "p_mw": float(row.p_mw), "q_mvar": float(row.q_mvar)}, t))  # fmt: skip
                if not band[0] <= row.vm_pu <= band[1]:
                    bound = band[0] if row.vm_pu < band[0] else band[1]
                    result.violations.append(Record(TWIN_VIOLATION,
                        {"site": site, "element": f"bus {bus}", "kind": "voltage"},
                        {"value": float(row.vm_pu), "limit": bound}, t))  # fmt: skip
            for kind, table in (("line", est.res_line), ("trafo", est.res_trafo)):
                for idx, row in table.iterrows():
                    loading = float(row.loading_percent)
                    records.append(Record(TWIN_BRANCH, {"site": site, "kind": kind, "index": str(idx)},
                                          {"loading_percent": loading}, t))  # fmt: skip
                    if loading > limit:
                        result.violations.append(Record(TWIN_VIOLATION,
                            {"site": site, "element": f"{kind} {idx}", "kind": "loading"},
                            {"value": loading, "limit": limit}, t))  # fmt: skip
            for m, estimated, residual in est.residuals:
                if m.pseudo:
                    continue
                records.append(Record(TWIN_RESIDUAL, {"site": site, "device": m.device, "point": m.point},
                                      {"measured": m.value, "estimated": estimated,
                                       "residual_sigma": float(residual)}, t))  # fmt: skip
            records.extend(result.violations)
        try:
            self.historian.write(records)
        except HistorianError as exc:
            log.error("twin: could not store cycle %d: %s", self.cycles, exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="twin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.twin.interval_s):
            try:
                self.cycle()
            except Exception:
                log.exception("twin cycle failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
