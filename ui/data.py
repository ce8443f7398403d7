"""What the pages show, read from the historian and the network model (cached per Streamlit rules)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from gridmodel.network import NetworkLoadError, load_grid
from gridverse.config import NetworkConfig, Settings
from gridverse.historian import Historian, open_historian
from gridverse.schema import (
    SIM_CLOCK,
    TWIN_BRANCH,
    TWIN_BUS,
    TWIN_CYCLE,
    TWIN_OBSERVABILITY,
    TWIN_RESIDUAL,
)
from gridverse.settings import load_settings
from ui.panorama.layout import GridLayout, build_layout
from ui.panorama.live import Snapshot, read_snapshot
from ui.panorama.n1store import N1Run, critical_outages, load_n1, n1_path, save_n1


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def historian() -> Historian:
    return open_historian(settings().historian)


def _network(config: NetworkConfig):
    """The network alone (a SimBench grid without its year of profiles loads 3-4x faster)."""
    if config.file is not None:
        return load_grid(config).net
    import simbench as sb

    try:
        return sb.get_simbench_net(config.simbench_code)
    except Exception as exc:  # simbench raises plain exceptions for unknown codes
        raise NetworkLoadError(
            f"network.simbench_code {config.simbench_code!r}: not a SimBench grid ({exc}); "
            "see simbench's list of codes, e.g. 1-MV-rural--1-sw"
        ) from exc


@st.cache_resource(show_spinner="Loading the network model…")
def network():
    """The site's network as the file or SimBench code describes it (normal switching state)."""
    return _network(settings().site.network)


@st.cache_resource(show_spinner="Laying out the network…")
def layout() -> GridLayout:
    """Geographic and schematic positions of every bus, branch and switch (built once)."""
    return build_layout(network())


def network_geometry() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bus coordinates (x, y: geographic where the network has them) and line end buses."""
    net, lay = network(), layout()
    xy = lay.geo if lay.geo is not None else lay.schematic
    buses = pd.DataFrame({"bus": lay.bus, "x": xy[:, 0], "y": xy[:, 1], "name": lay.bus_name}).set_index("bus")
    return buses, net.line[["from_bus", "to_bus", "name"]].copy()


def last_n1() -> N1Run | None:
    """The twin page's last N-1 run (any session, any earlier UI process), or None."""
    return load_n1(n1_path(settings().historian.path))


def store_n1(run: N1Run) -> None:
    save_n1(n1_path(settings().historian.path), run)


def snapshot() -> Snapshot:
    """The live state of every element now (read each refresh; not cached)."""
    return read_snapshot(settings(), historian(), network(), layout(), n1=critical_outages(last_n1()))


def sim_now_ns() -> int | None:
    """The field simulator's clock as last written, or None when no simulator runs."""
    clock = historian().latest(SIM_CLOCK, tags={"site": settings().site.name}, start_ns=time.time_ns() - 3600 * 10**9)
    return int(clock[0].fields["sim_time_ns"]) if clock else None


def trend(kind: str, index: int, minutes: float = 30.0) -> pd.DataFrame:
    """An element's estimated history over the last minutes: a bus's voltage (pu) or a line's or
    transformer's loading (%); `kind` is "bus", "line" or "trafo"."""
    site = settings().site.name
    since = time.time_ns() - int(minutes * 60e9)
    if kind == "bus":
        rows = historian().query(TWIN_BUS, tags={"site": site, "bus": str(index)}, start_ns=since)
        field = "vm_pu"
    else:
        tags = {"site": site, "kind": kind, "index": str(index)}
        rows = historian().query(TWIN_BRANCH, tags=tags, start_ns=since)
        field = "loading_percent"
    frame = pd.DataFrame(
        [(pd.Timestamp(r.time_ns, tz="UTC"), float(r.fields[field])) for r in rows if field in r.fields],
        columns=["time", field],
    )
    return frame


def standing_alarms() -> pd.DataFrame | None:
    """Alarms that are not back to normal, from the alarm store the stack and the Alarms page
    share (state reconciled at each start, so a previous run's alarms are not shown as active);
    None when this installation has no alarm store."""
    try:
        from anomaly.alarmstate import open_alarm_store
    except ImportError:
        return None
    store = open_alarm_store(settings())
    try:
        rows = store.rows(include_normal=False)
    finally:
        store.close()
    columns = ["priority", "state", "device", "point", "message", "since"]
    frame = pd.DataFrame(
        [
            {
                "priority": str(r.priority),
                "state": str(r.state),
                "device": r.device,
                "point": r.point,
                "message": r.message,
                "since": pd.Timestamp(r.first_raised_ns, tz="UTC").strftime("%H:%M:%S"),
            }
            for r in rows
        ],
        columns=columns,
    )
    return frame


def latest_cycle(max_age_s: float = 60.0) -> dict | None:
    """The newest twin cycle's fields (engine, timings, chi-square, suspects), or None."""
    since = time.time_ns() - int(max_age_s * 1e9)
    cycles = historian().latest(TWIN_CYCLE, tags={"site": settings().site.name}, start_ns=since)
    return {**cycles[0].fields, "time_ns": cycles[0].time_ns} if cycles else None


def latest_residuals() -> pd.DataFrame:
    cycle = latest_cycle()
    columns = ["reading", "normalised", "abs", "suspect"]
    if cycle is None:
        return pd.DataFrame(columns=columns)
    t = cycle["time_ns"]
    rows = [
        {
            "reading": f"{r.tags['device']}/{r.tags['point']}",
            "normalised": float(r.fields["normalised"]),
            "abs": abs(float(r.fields["normalised"])),
            "suspect": bool(int(r.fields.get("suspect", 0))),
        }
        for r in historian().latest(TWIN_RESIDUAL, tags={"site": settings().site.name}, start_ns=t, end_ns=t)
        if "normalised" in r.fields
    ]
    return pd.DataFrame(rows, columns=columns)


def observability_notes(max_age_s: float = 300.0) -> list[str]:
    since = time.time_ns() - int(max_age_s * 1e9)
    rows = historian().query(TWIN_OBSERVABILITY, tags={"site": settings().site.name}, start_ns=since)
    return [str(r.fields["message"]) for r in rows[-5:]]


def run_n1(progress) -> tuple[pd.DataFrame, float]:
    """N-1 on the network with its loads at the simulator's current moment (or now)."""
    from gridmodel.contingency import n_minus_1
    from gridmodel.network import apply_profiles, profile_values

    cfg = settings()
    grid = load_grid(cfg.site.network)
    if grid.profiles:
        clock = historian().latest(SIM_CLOCK, tags={"site": cfg.site.name})
        when = pd.Timestamp(int(clock[0].fields["sim_time_ns"]) if clock else time.time_ns(), tz="UTC")
        apply_profiles(grid.net, profile_values(grid.profiles, when))
    frame, _results, seconds = n_minus_1(
        grid.net, band=cfg.anomaly.voltage_band_pu, limit=cfg.anomaly.loading_limit_percent, progress=progress
    )
    return frame, seconds
