"""What the pages show, read from the historian and the network model (cached per Streamlit rules)."""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from gridmodel.network import load_grid
from gridverse.config import Settings
from gridverse.historian import Historian, open_historian
from gridverse.schema import (
    ALARM,
    SIM_CLOCK,
    TWIN_BRANCH,
    TWIN_BUS,
    TWIN_CYCLE,
    TWIN_OBSERVABILITY,
    TWIN_RESIDUAL,
)
from gridverse.settings import load_settings


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def historian() -> Historian:
    return open_historian(settings().historian)


@st.cache_resource
def network_geometry() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bus coordinates (x, y) and line end buses, from the network's GeoJSON."""
    net = load_grid(settings().site.network).net
    coords = []
    for idx, geo in net.bus.geo.items():
        x, y = json.loads(geo)["coordinates"] if isinstance(geo, str) else (float("nan"),) * 2
        coords.append((idx, x, y, net.bus.at[idx, "name"]))
    buses = pd.DataFrame(coords, columns=["bus", "x", "y", "name"]).set_index("bus")
    lines = net.line[["from_bus", "to_bus", "name"]].copy()
    return buses, lines


def latest_estimate(max_age_s: float = 60.0) -> tuple[pd.Series, pd.Series, int | None]:
    """Estimated voltage per bus and loading per line from the newest twin cycle."""
    site = settings().site.name
    h = historian()
    since = time.time_ns() - int(max_age_s * 1e9)
    cycles = h.latest(TWIN_CYCLE, tags={"site": site}, start_ns=since)
    if not cycles:
        return pd.Series(dtype=float), pd.Series(dtype=float), None
    t = cycles[0].time_ns
    vm = {
        int(r.tags["bus"]): float(r.fields["vm_pu"])
        for r in h.latest(TWIN_BUS, tags={"site": site}, start_ns=t, end_ns=t)
    }
    loading = {
        int(r.tags["index"]): float(r.fields["loading_percent"])
        for r in h.latest(TWIN_BRANCH, tags={"site": site, "kind": "line"}, start_ns=t, end_ns=t)
    }
    return pd.Series(vm, dtype=float), pd.Series(loading, dtype=float), t


def active_alarms() -> pd.DataFrame:
    site = settings().site.name
    rows = [
        {
            "time": pd.Timestamp(r.time_ns, tz="UTC"),
            "severity": r.tags["severity"],
            "rule": r.tags["rule"],
            "device": r.tags["device"],
            "point": r.tags["point"],
            "message": r.fields.get("message", ""),
        }
        for r in historian().latest(ALARM, tags={"site": site})
        if int(r.fields.get("active", 0)) == 1
    ]
    columns = ["time", "severity", "rule", "device", "point", "message"]
    return pd.DataFrame(rows, columns=columns).sort_values("time", ascending=False)


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
