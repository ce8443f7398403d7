"""The live twin: each cycle reads the latest points, estimates the state, tests it for bad data
and writes the state, residuals, suspects, violations and observability back to the historian.
A cycle can also be re-run at any past moment (`replay`) from what the historian held then."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from gridmodel.baddata import BadDataReport, detect_and_identify
from gridmodel.estimator import Estimate, EstimationError, make_estimator
from gridmodel.measurements import Measurement, from_points, manual_measurements, pseudo_measurements
from gridmodel.network import GridData, apply_profiles, load_grid, profile_values
from gridmodel.observability import analyse, device_loss_impact
from gridmodel.ppcmodel import ModelBuildError
from gridmodel.writer import STATE_SINCE_FIELD, Deadband, StateWriter, residual_records, violation_records
from gridverse.config import Settings
from gridverse.historian import Historian, HistorianError
from gridverse.points import TELEMETRY, Point, Quality, Record, Source
from gridverse.schema import (  # the measurement names, defined once for every part
    SIM_CLOCK,
    TWIN_BRANCH,
    TWIN_BUS,
    TWIN_CYCLE,
    TWIN_OBSERVABILITY,
    TWIN_RESIDUAL,
)
from gridverse.watchdog import DEFAULT_MISSES, Watchdog, Worker

log = logging.getLogger(__name__)

# the names callers (and tests) import from here, besides the twin itself
__all__ = ["TWIN_BRANCH", "TWIN_BUS", "TWIN_CYCLE", "TWIN_RESIDUAL", "CycleResult", "Twin"]


@dataclass
class CycleResult:
    time_ns: int
    converged: bool
    estimate: Estimate | None
    measurements: int  # telemetered measurements used
    error: str = ""
    report: BadDataReport | None = None
    violations: list[Record] = field(default_factory=list)
    unobservable_buses: list[int] = field(default_factory=list)
    observability_notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0


class Twin:
    def __init__(self, settings: Settings, historian: Historian, grid: GridData | None = None):
        self.settings = settings
        self.historian = historian
        self.grid = grid or load_grid(settings.site.network)
        self.net = self.grid.net
        # The grid's objects (hundreds of thousands on a large grid) live as long as the twin: keep
        # them out of the collector's full passes, which took 0.25-1 s mid-cycle at 10,000 buses.
        gc.freeze()
        self.base_line_service = self.net.line.in_service.copy()
        self.base_trafo_service = self.net.trafo.in_service.copy()
        self.base_switch_closed = self.net.switch.closed.copy()
        self.estimator = make_estimator(settings.twin.estimator)
        self.cycles = 0
        self.converged = 0
        self.last: CycleResult | None = None
        self._last_telemetered: dict[str, list[Measurement]] = {}  # device → its last cycle's measurements
        self._cycle_points: dict[tuple[str, str], Point] = {}
        self._manual_records: list[Record] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker = Worker("twin cycle", logger=log)  # replaced by the watchdog's in start()
        self.on_cycle: Callable[[CycleResult], None] | None = None  # e.g. the demo's truth check
        self.writer = self._state_writer()  # the live cycles' state rows, with the deadband

    def _state_writer(self) -> StateWriter:
        cfg = self.settings.twin
        return StateWriter(self.settings.site.name, Deadband.from_config(cfg), cfg.state_refresh_cycles)

    # -- inputs -----------------------------------------------------------------------------
    def _latest_points(self, at_ns: int) -> dict[tuple[str, str], Point]:
        since = at_ns - int(self.settings.twin.stale_after_s * 1e9)
        records = self.historian.latest(TELEMETRY, tags={"site": self.settings.site.name}, start_ns=since, end_ns=at_ns)
        manual = Source.MANUAL.value  # a technician's readings: measurements of their own (with their σ)
        self._manual_records = [
            r for r in records if r.tags.get("source") == manual and r.fields.get("quality") == "good"
        ]
        points = (Point.from_record(r) for r in records if r.tags.get("source") != manual)
        return {(p.device, p.name): p for p in points}

    def _profile_time(self, at_ns: int) -> pd.Timestamp:
        """The moment the pseudo-measurements describe: the simulator's clock when one runs."""
        clock = self.historian.latest(SIM_CLOCK, tags={"site": self.settings.site.name}, end_ns=at_ns)
        if clock:
            return pd.Timestamp(int(clock[0].fields["sim_time_ns"]), tz="UTC")
        return pd.Timestamp(at_ns, tz="UTC")

    def measurements_at(self, at_ns: int) -> tuple[list[Measurement], int]:
        """Set the network's topology and loads for `at_ns`; its measurements (telemetered first)."""
        net = self.net
        points = self._latest_points(at_ns)
        self._cycle_points = points
        if self.grid.profiles:
            apply_profiles(net, profile_values(self.grid.profiles, self._profile_time(at_ns)))
        mset = from_points(net, self.settings.site, self.settings.profiles, self.settings.twin, points)
        mset.measurements.extend(manual_measurements(net, self._manual_records))
        net.line["in_service"] = self.base_line_service & ~net.line.index.isin(list(mset.open_lines))
        net.trafo["in_service"] = self.base_trafo_service & ~net.trafo.index.isin(list(mset.open_trafos))
        closed = self.base_switch_closed.copy()
        for idx, state in mset.switch_states.items():
            if idx in closed.index:
                closed.at[idx] = state
        net.switch["closed"] = closed
        measured_buses = {m.element for m in mset.measurements if m.element_type == "bus" and m.meas_type == "p"}
        pseudo = pseudo_measurements(net, measured_buses, self.settings.twin)
        return mset.measurements + pseudo, len(mset.measurements)

    # -- one cycle --------------------------------------------------------------------------
    def cycle(self, at_ns: int | None = None, *, store: bool = True) -> CycleResult:
        """Estimate now (or at a past moment `at_ns`, from what the historian held then)."""
        t0 = time.perf_counter()
        live = at_ns is None
        now = time.time_ns() if at_ns is None else at_ns
        cfg = self.settings.twin
        self.cycles += 1
        try:
            measurements, n_telemetered = self.measurements_at(now)
            report = detect_and_identify(
                self.estimator,
                self.net,
                measurements,
                threshold=cfg.bad_data_threshold,
                confidence=cfg.chi2_confidence,
                max_removals=cfg.max_bad_data_removals,
                # every measurement's normalised residual, pseudo and virtual ones included, at any
                # grid size (selected inversion: well under 1 s at 10,458 buses)
                only_telemetered=False,
            )
        except (EstimationError, ModelBuildError) as exc:
            log.error("twin cycle %d: %s", self.cycles, exc)
            result = CycleResult(now, False, None, 0, f"{type(exc).__name__}: {exc}")
        else:
            self.converged += 1
            result = CycleResult(now, True, report.estimate, n_telemetered, report=report)
            # computed with the estimate, not with storing it: a replay without --store reports them too
            result.violations = self._violations(report.estimate, now)
            for bad in report.suspects:
                log.warning(
                    "twin: %s is suspect: normalised residual %.1f (measured %.4g, estimated %.4g)",
                    bad.measurement.label,
                    bad.normalised or 0.0,
                    bad.measurement.value,
                    bad.estimated,
                )
            self._observability(result, measurements, track=live)
        result.duration_s = time.perf_counter() - t0
        if store:
            self._store(result, live=live)
        self.last = result
        return result

    def _observability(self, result: CycleResult, measurements: list[Measurement], *, track: bool) -> None:
        """Which buses telemetry alone determines; when a device drops out, what it leaves
        unobservable and which meter would restore it (cheap on MV grids, skipped on large ones)."""
        est = result.estimate
        assert est is not None
        try:
            obs = analyse(self.net, est.model, measurements)
        except ValueError as exc:  # too large for the dense test
            result.observability_notes.append(str(exc))
            return
        result.unobservable_buses = obs.unobservable
        devices = {m.device for m in measurements if m.device}
        if track:
            for gone in sorted(set(self._last_telemetered) - devices):
                previous = measurements + self._last_telemetered.get(gone, [])
                impact = device_loss_impact(self.net, est.model, previous, gone)
                if impact.newly_unobservable:
                    note = (
                        f"{gone} lost: buses {impact.newly_unobservable} are no longer observable from "
                        f"telemetry (pseudo-measurements carry them); restore with "
                        f"{[m.point for m in impact.restore_with] or 'the device itself'}"
                    )
                    log.warning("twin: %s", note)
                    result.observability_notes.append(note)
            self._last_telemetered = {}
            for m in measurements:
                if m.device:
                    self._last_telemetered.setdefault(m.device, []).append(m)

    # -- output -----------------------------------------------------------------------------
    def _store(self, result: CycleResult, *, live: bool = True) -> None:
        """One write of the cycle's rows. A live cycle writes the state with the deadband; a replay
        of a past moment writes all of it (and leaves the live cycles' record of what was written)."""
        site = self.settings.site.name
        t = result.time_ns
        report = result.report
        cycle_fields: dict[str, float | int | str | bool] = {
            "converged": int(result.converged),
            "measurements": result.measurements,
            "error": result.error[:300],
            "duration_s": result.duration_s,
            "unobservable_buses": len(result.unobservable_buses),
        }
        records: list[Record] = []
        est = result.estimate
        writer = self.writer if live else self._state_writer()
        if est is not None and report is not None:
            state, since = writer.rows(est, t)
            cycle_fields.update(
                {
                    "engine": est.engine.value,
                    "estimate_s": est.duration_s,
                    "iterations": est.iterations,
                    "objective": report.objective,
                    "dof": report.degrees_of_freedom,
                    "chi2_threshold": report.chi2_threshold,
                    "chi2_alarm": int(report.chi2_alarm),
                    "suspects": len(report.suspects),
                    STATE_SINCE_FIELD: since,
                    "state_rows": len(state),
                }
            )
            records += state
            records += residual_records(report, site, t)
            records += self._suspect_flags(report)
            records.extend(result.violations)
        for note in result.observability_notes:
            records.append(Record(TWIN_OBSERVABILITY, {"site": site}, {"message": note[:500]}, t))
        records.insert(0, Record(TWIN_CYCLE, {"site": site}, cycle_fields, t))
        try:
            self.historian.write(records)
        except HistorianError as exc:
            writer.forget()  # the historian may lack rows the deadband counts on: all of them next time
            log.error("twin: could not store cycle %d: %s", self.cycles, exc)

    def _violations(self, est: Estimate, t: int) -> list[Record]:
        """Buses outside the voltage band and branches above the loading limit, in the estimate."""
        anomaly = self.settings.anomaly
        band = (float(anomaly.voltage_band_pu[0]), float(anomaly.voltage_band_pu[1]))
        return violation_records(est, self.settings.site.name, t, band, anomaly.loading_limit_percent)

    def _suspect_flags(self, report: BadDataReport) -> list[Record]:
        """Mark each suspect reading in the telemetry itself: same series and time, quality
        `suspect`, value kept (an idempotent overwrite of that one row)."""
        out: list[Record] = []
        if not report.suspects:
            return out
        for bad in report.suspects:
            point = self._cycle_points.get((bad.measurement.device, bad.measurement.point))
            if point is None or point.quality is not Quality.GOOD:
                continue
            flagged = Point(
                point.site,
                point.substation,
                point.bay,
                point.device,
                point.name,
                point.source,
                point.time_ns,
                point.value,
                Quality.SUSPECT,
                point.unit,
            )
            out.append(flagged.to_record())
        return out

    # -- loop -------------------------------------------------------------------------------
    def start(self, watchdog: Watchdog | None = None) -> None:
        """Run `cycle()` every `twin.interval_s` in a thread of its own; `watchdog` (when given)
        restarts the thread if it ends and reports it when no cycle completes for long."""
        interval = self.settings.twin.interval_s
        stuck_after = max(DEFAULT_MISSES * interval, 60.0)  # a cycle on a large grid takes seconds
        if watchdog is not None:
            self.worker = watchdog.add(
                "twin-loop", alive=self._alive, restart=self._spawn, stuck_after_s=stuck_after, logger=log
            )
        self._spawn()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _spawn(self) -> None:
        if self._alive():
            return
        self._thread = threading.Thread(target=self._run, name="twin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.settings.twin.interval_s
        delay = interval
        while not self._stop.wait(delay):
            try:
                result = self.cycle()
                if self.on_cycle is not None:
                    self.on_cycle(result)
            except Exception as exc:  # logged once, counted, backed off; logged again on recovery
                delay = self.worker.failed(exc, interval)
                continue
            delay = interval
            self.worker.ok()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the cycle under way (waiting up to `timeout` for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
