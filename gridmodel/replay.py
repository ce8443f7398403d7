"""Re-run the twin at a past moment from what the historian held then, for post-event review."""

from __future__ import annotations

import logging

import pandas as pd

from gridmodel.twin import Twin
from gridverse.config import Settings
from gridverse.historian import open_historian
from gridverse.points import TELEMETRY

log = logging.getLogger(__name__)


class ReplayError(Exception):
    """Nothing to replay at that moment; the message says what the historian holds."""


def replay(settings: Settings, at_ns: int, *, store: bool = False, estimator: str | None = None) -> dict:
    """The estimate, bad-data test and observability at `at_ns`, as a JSON-ready report."""
    if estimator is not None:
        settings = settings.model_copy(update={"twin": settings.twin.model_copy(update={"estimator": estimator})})
    historian = open_historian(settings.historian)
    try:
        window = int(settings.twin.stale_after_s * 1e9)
        held = historian.latest(TELEMETRY, tags={"site": settings.site.name}, start_ns=at_ns - window, end_ns=at_ns)
        if not held:
            first = historian.query(TELEMETRY, tags={"site": settings.site.name}, limit=1)
            span = f"its first point is at {pd.Timestamp(first[0].time_ns, tz='UTC')}" if first else "it is empty"
            raise ReplayError(
                f"the historian holds no telemetry in the {settings.twin.stale_after_s:g} s before "
                f"{pd.Timestamp(at_ns, tz='UTC')}; {span}"
            )
        twin = Twin(settings, historian)
        result = twin.cycle(at_ns, store=store)
    finally:
        historian.close()
    report: dict = {
        "at": str(pd.Timestamp(at_ns, tz="UTC")),
        "converged": result.converged,
        "error": result.error,
        "telemetered_measurements": result.measurements,
        "duration_s": round(result.duration_s, 3),
        "unobservable_buses_from_telemetry": result.unobservable_buses,
    }
    if result.report is not None and result.estimate is not None:
        rep, est = result.report, result.estimate
        vm = est.res_bus.vm_pu.dropna()
        report.update(
            {
                "engine": est.engine.value,
                "objective": round(rep.objective, 3),
                "dof": rep.degrees_of_freedom,
                "chi2_threshold": round(rep.chi2_threshold, 3),
                "chi2_alarm": rep.chi2_alarm,
                "suspects": [
                    {
                        "measurement": s.measurement.label,
                        "normalised_residual": s.normalised,
                        "measured": s.measurement.value,
                        "estimated": s.estimated,
                    }
                    for s in rep.suspects
                ],
                "vm_pu": {
                    "min": float(vm.min()),
                    "max": float(vm.max()),
                    "min_bus": int(vm.idxmin()),
                    "max_bus": int(vm.idxmax()),
                },
                "max_line_loading_percent": float(est.res_line.loading_percent.max()),
                "violations": [
                    f"{r.tags['element']} {r.tags['kind']} {float(r.fields['value']):.3f}" for r in result.violations
                ],
                "residuals": sorted(
                    (
                        {
                            "measurement": r.measurement.label,
                            "normalised": r.normalised,
                            "weighted": round(r.weighted, 3),
                        }
                        for r in rep.results
                        if r.measurement.device
                    ),
                    key=lambda d: -abs(float(d["normalised"] or 0)),
                )[:10],
            }
        )
    return report
