"""What the pages show, read from the historian and the network model (cached per Streamlit rules)."""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from gridmodel.network import load_grid
from gridverse.config import Settings
from gridverse.historian import Historian, open_historian
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
    cycles = h.latest("twin_cycle", tags={"site": site}, start_ns=since)
    if not cycles:
        return pd.Series(dtype=float), pd.Series(dtype=float), None
    t = cycles[0].time_ns
    vm = {int(r.tags["bus"]): float(r.fields["vm_pu"])
          for r in h.latest("twin_bus", tags={"site": site}, start_ns=t, end_ns=t)}  # fmt: skip
    loading = {int(r.tags["index"]): float(r.fields["loading_percent"])
               for r in h.latest("twin_branch", tags={"site": site, "kind": "line"},
                                 start_ns=t, end_ns=t)}  # fmt: skip
    return pd.Series(vm, dtype=float), pd.Series(loading, dtype=float), t


def active_alarms() -> pd.DataFrame:
    site = settings().site.name
    rows = [
        {"time": pd.Timestamp(r.time_ns, tz="UTC"), "severity": r.tags["severity"],
         "rule": r.tags["rule"], "device": r.tags["device"], "point": r.tags["point"],
         "message": r.fields.get("message", "")}  # fmt: skip
        for r in historian().latest("alarm", tags={"site": site})
        if int(r.fields.get("active", 0)) == 1
    ]
    columns = ["time", "severity", "rule", "device", "point", "message"]
    return pd.DataFrame(rows, columns=columns).sort_values("time", ascending=False)
