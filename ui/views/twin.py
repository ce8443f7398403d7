"""Operators' twin page: how good the newest estimate is, which readings it distrusts, and the
N-1 ranking of what would happen if a line or transformer tripped."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from ui import data


def page() -> None:
    st.title("Grid twin")
    cycle = data.latest_cycle()
    if cycle is None:
        st.info("No estimate yet: the twin writes one every few seconds once telemetry arrives.")
    else:
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
            st.plotly_chart(fig, use_container_width=True)
        notes = data.observability_notes()
        for note in notes:
            st.warning(note)
    st.subheader("N-1 contingency ranking")
    st.caption(
        "Every line and transformer out in turn, on the network at the simulator's current moment; "
        "ranked by load cut, then overloads, then voltages. Cuts are re-fed by the best normally-open switch."
    )
    if st.button("Run N-1", type="primary"):
        bar = st.progress(0.0, text="N-1")
        frame, seconds = data.run_n1(lambda done, total: bar.progress(done / total, text=f"{done}/{total} outages"))
        st.session_state["n1"] = (frame, seconds)
    if "n1" in st.session_state:
        frame, seconds = st.session_state["n1"]
        st.write(f"{len(frame)} outages in {seconds:.1f} s")
        st.dataframe(frame, use_container_width=True, hide_index=True)
