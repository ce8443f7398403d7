"""Operators' twin page: how good the newest estimate is (refreshed live), which readings it
distrusts, and the N-1 ranking of what would happen if a line or transformer tripped."""

from __future__ import annotations

import time

import pandas as pd
import plotly.express as px
import streamlit as st

from gridverse.auth import Permission
from ui import data
from ui.panorama.live import stale_after_s
from ui.panorama.n1store import N1Run
from ui.signin import allowed, require, roles_with, source

#: N-1 table columns as an operator reads them (gridmodel.contingency's names → label, help).
N1_COLUMNS: dict[str, tuple[str, str]] = {
    "outage": ("Outage", "The line or transformer taken out of service"),
    "severity": (
        "Severity",
        "100 × MW of load cut + percentage points of loading above the limit + 1000 × pu outside the "
        "voltage band. 0: harmless; 1,000,000: the power flow does not converge.",
    ),
    "unsupplied_mw": ("Load cut (MW)", "Load left without supply by the outage"),
    "unsupplied_buses": ("Buses cut", "Buses left without supply"),
    "max_loading_percent": ("Highest loading (%)", "Highest line or transformer loading after the outage"),
    "overloaded": ("Overloaded", "Branches above their loading limit after the outage"),
    "vm_min_pu": ("Lowest voltage (pu)", "Lowest bus voltage after the outage"),
    "vm_max_pu": ("Highest voltage (pu)", "Highest bus voltage after the outage"),
    "voltage_violations": ("Buses outside band", "Buses outside the voltage band after the outage"),
    "restored_by": ("Re-fed by", "The normally-open switch whose closing best re-feeds the cut load"),
    "converged": ("Converged", "Whether the power flow after the outage converged"),
}
SEVERITY_CAPTION = (
    "**Severity** ranks what to act on first: 1 MW of load cut weighs as much as 100 percentage points of "
    "overload or 0.1 pu outside the voltage band. 0 means the outage harms nothing; 1,000,000 that the "
    "power flow after it does not converge. Hover a column title for its meaning."
)


def n1_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The N-1 ranking with human column names, and the column help for `st.dataframe`."""
    known = [c for c in N1_COLUMNS if c in frame.columns]
    shown = frame[known].rename(columns={c: N1_COLUMNS[c][0] for c in known})
    config = {N1_COLUMNS[c][0]: st.column_config.Column(help=N1_COLUMNS[c][1]) for c in known}
    return shown, config


def _age(ns: int) -> str:
    return f"{pd.Timestamp(ns, tz='UTC'):%H:%M:%S} UTC, {max(0.0, (time.time_ns() - ns) / 1e9):.0f} s old"


def _cycle_section() -> None:
    settings = data.settings()
    cycle = data.latest_cycle(max_age_s=24 * 3600)
    if cycle is None:
        st.info("No estimate yet: the twin writes one every few seconds once telemetry arrives.")
        return
    age_s = (time.time_ns() - int(cycle["time_ns"])) / 1e9
    if age_s > stale_after_s(settings):
        st.error(
            f"No live estimate: the newest is from {_age(int(cycle['time_ns']))}. "
            "The twin is not running or cannot keep up; the figures below are that old.",
            icon=":material/sync_problem:",
        )
    else:
        st.caption(f"Estimate at {_age(int(cycle['time_ns']))}")
    if not int(cycle.get("converged", 1)):
        st.error(f"The twin's last cycle failed: {cycle.get('error', '')}")
        return
    cols = st.columns(5)
    cols[0].metric("Engine", str(cycle.get("engine", "?")))
    cols[1].metric("Estimate", f"{float(cycle.get('estimate_s', 0)) * 1000:.0f} ms")
    alarm = bool(int(cycle.get("chi2_alarm", 0)))
    chi2 = f"{float(cycle.get('objective', 0)):.0f} / {float(cycle.get('chi2_threshold', 0)):.0f}"
    cols[2].metric(
        "Chi-square (J / limit)",
        chi2,
        "bad data likely" if alarm else "consistent",
        delta_color="inverse" if alarm else "normal",
    )
    cols[3].metric("Suspect readings", int(cycle.get("suspects", 0)))
    cols[4].metric("Buses unobservable from telemetry", int(cycle.get("unobservable_buses", 0)))
    residuals = data.latest_residuals()
    if len(residuals):
        st.subheader("Normalised residuals of the telemetered readings")
        fig = px.bar(
            residuals.sort_values("abs"),
            x="normalised",
            y="reading",
            orientation="h",
            color="suspect",
            color_discrete_map={True: "#c62828", False: "#607d8b"},
            height=max(300, 16 * len(residuals)),
        )
        fig.update_layout(uirevision="residuals")
        st.plotly_chart(fig, width="stretch", key="twin.residuals")
    for note in data.observability_notes():
        st.warning(note)


def run_n1_action() -> N1Run:
    """The N-1 run as an action: permission checked here on the server, audited before it runs."""
    user = require(Permission.TWIN_N1)
    from gridverse.audit import open_audit

    settings = data.settings()
    network = str(settings.site.network.file or settings.site.network.simbench_code)
    sim_ns = data.sim_now_ns()
    open_audit(settings).append(
        user.name,
        user.role.value,
        "twin.n1",
        network,
        source=source(),
        after={"sim_time": None if sim_ns is None else str(pd.Timestamp(sim_ns, tz="UTC"))},
    )
    bar = st.progress(0.0, text="N-1: preparing the network at the simulator's current moment…")
    frame, seconds = data.run_n1(lambda done, total: bar.progress(done / total, text=f"N-1: {done}/{total} outages"))
    bar.empty()
    run = N1Run(time.time_ns(), sim_ns, seconds, user.name, frame)
    data.store_n1(run)
    return run


def page() -> None:
    require(Permission.GRID_VIEW)
    settings = data.settings()
    st.title("Grid twin")
    st.fragment(run_every=settings.ui.refresh_s)(_cycle_section)()

    st.subheader("N-1 contingency ranking")
    st.caption(
        "Every line and transformer out in turn, on the network at the simulator's current moment; "
        "ranked by load cut, then overloads, then voltages. Cuts are re-fed by the best normally-open switch."
    )
    if allowed(Permission.TWIN_N1):
        if st.button("Run N-1", type="primary"):
            run_n1_action()
    else:
        st.caption(f"Running N-1 needs the role {' or '.join(roles_with(Permission.TWIN_N1))}.")
    run = data.last_n1()
    if run is not None:
        when = f"{pd.Timestamp(run.time_ns, tz='UTC'):%Y-%m-%d %H:%M:%S} UTC"
        sim = (
            f", loads of simulated {pd.Timestamp(run.sim_time_ns, tz='UTC'):%Y-%m-%d %H:%M}" if run.sim_time_ns else ""
        )
        st.write(f"Last run {when} by {run.actor}{sim}: {len(run.frame)} outages in {run.seconds:.1f} s")
        st.caption(SEVERITY_CAPTION)
        shown, config = n1_table(run.frame)
        st.dataframe(shown, width="stretch", hide_index=True, column_config=config)
