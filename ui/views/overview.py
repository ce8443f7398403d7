"""Operators' panoramic view: the whole network at a glance, grey where all is well, coloured only
where a voltage, a loading or a switch is not where it should be (ISA-101), with the age of
what it shows; click a bus or a line for its details and trend."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from gridverse.auth import Permission
from ui import data
from ui.panorama.classify import NEAR_LIMIT_FRACTION, BranchClass, BusClass, classify
from ui.panorama.component import panorama_chart
from ui.panorama.figure import Selection, build_figure, selection_from_event
from ui.panorama.layout import Layout
from ui.panorama.live import Snapshot
from ui.signin import require

CHART_KEY = "panorama.chart"
LAYOUT_KEY = "panorama.layout"
SELECTED_KEY = "panorama.selected"
CLICK_KEY = "panorama.click"


def _clock(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").strftime("%H:%M:%S UTC")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s old"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min old"
    return f"{seconds / 3600:.1f} h old"


def freshness(snap: Snapshot) -> str:
    """ "estimate at 12:03:15 UTC, 2 s old · simulated clock 2016-03-04 10:15" (or why there is none)."""
    if snap.estimate_ns is None:
        return "no state estimate"
    text = f"estimate at {_clock(snap.estimate_ns)}, {_age((snap.now_ns - snap.estimate_ns) / 1e9)}"
    if not snap.fresh:
        text += " — NOT LIVE, values hidden"
    if snap.sim_ns is not None:
        text += f" · simulated clock {pd.Timestamp(snap.sim_ns, tz='UTC'):%Y-%m-%d %H:%M}"
    return text


def _selection(click: dict | None) -> Selection | None:
    """The element the user clicked last (kept across refreshes until another click or a clear)."""
    if click and click.get("click") != st.session_state.get(CLICK_KEY):
        st.session_state[CLICK_KEY] = click.get("click")
        picked = selection_from_event([{"customdata": click.get("code")}])
        if picked is not None:
            st.session_state[SELECTED_KEY] = picked
    return st.session_state.get(SELECTED_KEY)


def _metrics(snap: Snapshot, classes, band: tuple[float, float], limit: float) -> None:
    state = snap.state
    vm = state.vm_pu[np.isfinite(state.vm_pu)]
    load = state.loading_percent[np.isfinite(state.loading_percent)]
    cols = st.columns(6)
    dead = int((~classes.energised).sum())
    cols[0].metric("buses de-energised", dead, help=f"of {len(classes.energised)} buses, from the reported switching")
    cols[1].metric("lowest voltage", f"{vm.min():.3f} pu" if len(vm) else "–")
    cols[2].metric("highest voltage", f"{vm.max():.3f} pu" if len(vm) else "–")
    cols[3].metric("highest loading", f"{load.max():.0f} %" if len(load) else "–")
    outside = int(np.isin(classes.bus, [BusClass.LOW.value, BusClass.HIGH.value]).sum())
    over = int(np.isin(classes.branch, [BranchClass.OVER.value, BranchClass.NEAR.value]).sum())
    cols[4].metric("buses outside band", outside if len(vm) else "–")
    cols[5].metric("branches near/over limit", over if len(load) else "–")


def _details(selected: Selection, snap: Snapshot, classes) -> None:
    lay = data.layout()
    state = snap.state
    if selected.kind == "bus":
        i = selected.position
        st.subheader(f"Bus {lay.bus[i]}")
        st.caption(str(lay.bus_name[i]))
        vm = state.vm_pu[i]
        rows = {
            "voltage": f"{vm:.4f} pu" if np.isfinite(vm) else "no estimate",
            "state": str(classes.bus[i]),
            "data quality": str(state.quality[i]),
        }
        kind, index, column, unit = "bus", int(lay.bus[i]), "vm_pu", "pu"
    else:
        p = selected.position
        kind, index = str(lay.branch_kind[p]), int(lay.branch_index[p])
        st.subheader(f"{'Line' if kind == 'line' else 'Transformer'} {index}")
        st.caption(str(lay.branch_name[p]))
        load = state.loading_percent[p]
        rows = {
            "loading": f"{load:.1f} % of rating" if np.isfinite(load) else "no estimate",
            "state": str(classes.branch[p]),
            "from bus → to bus": f"{lay.bus[lay.branch_from[p]]} → {lay.bus[lay.branch_to[p]]}",
        }
        if p in state.n1:
            rows["N-1 (if it trips)"] = state.n1[p]
        column, unit = "loading_percent", "%"
    st.table(pd.Series(rows, name="").to_frame())
    history = data.trend(kind, index)
    if history.empty:
        st.caption("No estimated history for it in the last 30 minutes.")
    else:
        # the twin writes a value when it moves beyond its deadband (gridmodel/writer.py): each holds
        # until the next, so the trend is drawn as steps, never as a slope between two writes
        line = {"color": "#5f6368", "shape": "hv"}
        fig = go.Figure(go.Scatter(x=history.time, y=history[column], mode="lines", line=line))
        last = _clock(history.time.iloc[-1].value)
        fig.update_layout(
            height=220,
            margin={"l": 0, "r": 0, "t": 24, "b": 0},
            title={"text": f"last 30 min ({unit}), steps as written; last written {last}", "font": {"size": 12}},
            uirevision=f"trend-{kind}-{index}",
        )
        st.plotly_chart(fig, key="panorama.trend", config={"displaylogo": False})


def page() -> None:
    require(Permission.GRID_VIEW)
    settings = data.settings()
    band = settings.anomaly.voltage_band_pu
    limit = settings.anomaly.loading_limit_percent
    st.title(f"Panoramic view — {settings.site.name}")
    lay = data.layout()
    names = [layout.value for layout in lay.layouts]
    if len(names) > 1:
        st.segmented_control("Layout", names, default=names[0], key=LAYOUT_KEY, label_visibility="collapsed")
    st.caption(
        f"Grey is normal. Coloured: voltage outside {band[0]:.2f}–{band[1]:.2f} pu (blue low, magenta high); "
        f"loading from {NEAR_LIMIT_FRACTION * limit:.0f} % (amber) and over {limit:.0f} % (red); switches out of "
        "their normal position (amber squares). Diamond: measured bus, circle: estimated, ×: its reading is stale. "
        "Click a bus or a line's midpoint for its details."
    )

    @st.fragment(run_every=settings.ui.refresh_s)
    def live() -> None:
        started_ms = time.time_ns() // 1_000_000
        snap = data.snapshot()
        classes = classify(lay, snap.state, band=band, loading_limit=limit)
        which = Layout(st.session_state.get(LAYOUT_KEY) or names[0])
        selected = _selection(st.session_state.get(CHART_KEY))
        _metrics(snap, classes, band, limit)
        if snap.problem:
            st.error(f"{snap.problem}. {freshness(snap).capitalize()}.", icon=":material/sync_problem:")
        left, right = st.columns([3, 1])
        with left:
            title = f"{which.value.capitalize()} · {freshness(snap)}"
            fig = build_figure(
                lay, snap.state, classes, which=which, title=title, selection=selected, loading_limit=limit
            )
            click = panorama_chart(fig, key=CHART_KEY, stamp=f"{snap.estimate_ns or 0}@{started_ms}")
            if click and click.get("click") != st.session_state.get(CLICK_KEY):
                st.rerun(scope="fragment")  # show the clicked element's details now
        with right:
            if selected is None:
                st.info("Click a bus or the midpoint of a line to see its details and trend here.")
            else:
                _details(selected, snap, classes)
                if st.button("Clear selection", key="panorama.clear"):
                    st.session_state.pop(SELECTED_KEY, None)
                    st.rerun(scope="fragment")
            _alarm_summary(snap)

    live()


def _alarm_summary(snap: Snapshot) -> None:
    """Standing alarms, from the alarm store when there is one (never resurrected from history)."""
    st.subheader("Alarms")
    try:
        table = data.standing_alarms()
    except Exception as exc:  # the alarm store is optional here: the Alarms page is the place to act
        st.caption(f"Alarm list unavailable: {exc}")
        return
    if table is None:
        st.caption("See the Alarms page.")
    elif table.empty:
        st.success("No standing alarms")
    else:
        st.dataframe(table, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(table)))
