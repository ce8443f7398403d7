"""Operators' panoramic view: the network coloured by estimated voltage and loading, and alarms."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from gridverse.schema import loading_band
from ui import data

#: Line colour by loading band (thresholds shared with the substation render, gridverse.schema).
LOADING_COLOURS = {"unknown": "#9aa0a6", "normal": "#2e7d32", "warning": "#f9a825", "alarm": "#c62828"}


def _loading_colour(pct: float | None) -> str:
    return LOADING_COLOURS[loading_band(pct)]


def network_figure() -> go.Figure:
    buses, lines = data.network_geometry()
    vm, loading, _ = data.latest_estimate()
    fig = go.Figure()
    for idx, line in lines.iterrows():
        a, b = buses.loc[line.from_bus], buses.loc[line.to_bus]
        pct = loading.get(idx)
        known = pct is not None and pct == pct
        fig.add_trace(
            go.Scatter(
                x=[a.x, b.x],
                y=[a.y, b.y],
                mode="lines",
                hoverinfo="text",
                text=f"{line['name']}: {pct:.0f} %" if known else line["name"],
                line={"color": _loading_colour(pct), "width": 3},
                showlegend=False,
            )
        )
    colours = [vm.get(b) for b in buses.index]
    fig.add_trace(
        go.Scatter(
            x=buses.x,
            y=buses.y,
            mode="markers",
            name="buses",
            text=[
                f"bus {b} {n}: {v:.4f} pu" if v is not None else f"bus {b}"
                for b, n, v in zip(buses.index, buses.name, colours, strict=True)
            ],
            hoverinfo="text",
            marker={
                "size": 9,
                "color": [c if c is not None else 1.0 for c in colours],
                "colorscale": "RdYlBu_r",
                "cmin": 0.95,
                "cmax": 1.05,
                "colorbar": {"title": "V (pu)"},
            },
        )
    )
    fig.update_layout(
        height=560,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
    )
    return fig


def page() -> None:
    settings = data.settings()
    st.title(f"Panoramic view — {settings.site.name}")

    @st.fragment(run_every=settings.ui.refresh_s)
    def live() -> None:
        vm, loading, t = data.latest_estimate()
        cols = st.columns(4)
        cols[0].metric("buses estimated", len(vm))
        cols[1].metric("lowest voltage", f"{vm.min():.3f} pu" if len(vm) else "–")
        cols[2].metric("highest voltage", f"{vm.max():.3f} pu" if len(vm) else "–")
        cols[3].metric("highest line loading", f"{loading.max():.0f} %" if len(loading) else "–")
        if t is None:
            st.info("No state estimate yet: start the stack with `gridverse demo`.")
        left, right = st.columns([3, 2])
        left.plotly_chart(network_figure(), width="stretch")
        right.subheader("Active alarms")
        alarms = data.active_alarms()
        if alarms.empty:
            right.success("No active alarms")
        else:
            right.dataframe(alarms, hide_index=True, width="stretch")

    live()
