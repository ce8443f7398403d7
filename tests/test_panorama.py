"""The panoramic view's logic on the demo grid and a real embedded historian: energisation from the
reported breaker positions, ISA-101 colouring only outside limits, no believable values when the
estimate is stale or missing, one trace per class whatever the grid's size, clicks traced back to
their element, and the twin page's N-1 table in words."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from gridverse.auth.roles import Role
from gridverse.auth.users import UserStore
from gridverse.config import Settings
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Quality, Source
from gridverse.settings import load_settings
from tests.helpers import config_dir
from ui.data import _network
from ui.panorama.classify import BranchClass, BusClass, LiveState, SwitchClass, classify
from ui.panorama.figure import HANDLES, build_figure, selection_from_event, to_json
from ui.panorama.layout import GridLayout, Layout, build_layout
from ui.panorama.live import read_snapshot
from ui.panorama.n1store import N1Run, critical_outages, load_n1, n1_path, save_n1
from ui.panorama.synthetic import synthetic_cycle

PASSWORD = "panorama test password"


@dataclass
class Demo:
    config: Path
    settings: Settings
    net: pp.pandapowerNet
    layout: GridLayout


def _fast_auth(doc: dict) -> None:
    users = Path(doc["historian"]["path"]).parent / "users.yaml"
    doc["auth"] = {"users_file": str(users), "argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    config = config_dir(tmp_path_factory.mktemp("panorama"), _fast_auth)
    settings = load_settings(config)
    net = _network(settings.site.network)
    return Demo(config, settings, net, build_layout(net))


@pytest.fixture
def historian(demo: Demo, tmp_path: Path) -> Iterator[tuple[Settings, EmbeddedHistorian]]:
    """A fresh historian file per test (the settings point at it)."""
    path = tmp_path / "h.db"
    settings = demo.settings.model_copy(update={"historian": demo.settings.historian.model_copy(update={"path": path})})
    h = EmbeddedHistorian(path)
    yield settings, h
    h.close()


def _state(layout: GridLayout, vm: float = 1.0, loading: float = 30.0) -> LiveState:
    return LiveState(
        np.full(len(layout.bus), vm),
        np.full(len(layout.branch_kind), loading),
        layout.branch_in_service.copy(),
        layout.switch_normally_closed.copy(),
        np.full(len(layout.bus), "estimated", dtype=object),
        {},
    )


def _breaker(settings: Settings, device: str, closed: bool, t: int) -> Point:
    sub, _ = settings.device(device)
    return Point(settings.site.name, sub.name, "Q01", device, "XCBR1.Pos", Source.MODBUS, t, float(closed))


def test_the_demo_grid_has_both_layouts_and_a_tree_schematic(demo: Demo) -> None:
    lay = demo.layout
    assert lay.layouts == [Layout.GEOGRAPHIC, Layout.SCHEMATIC]
    assert np.isfinite(lay.schematic).all() and np.isfinite(lay.geo).all()
    supply = lay.supply_bus[0]
    assert lay.schematic[supply, 0] == 0 and (lay.schematic[:, 0] >= 0).all()
    # every in-service line of the normal state goes one step deeper (a radial feeder is a tree)
    conducting = lay.branch_kind == "line"
    depth = np.abs(lay.schematic[lay.branch_to, 0] - lay.schematic[lay.branch_from, 0])
    assert (depth[conducting] <= 1).mean() > 0.9


def test_normal_voltages_are_grey_and_only_values_outside_the_limits_are_coloured(demo: Demo) -> None:
    """The old view painted 1.02-1.03 pu orange; ISA-101 keeps everything inside the band grey."""
    lay = demo.layout
    band, limit = demo.settings.anomaly.voltage_band_pu, demo.settings.anomaly.loading_limit_percent
    state = _state(lay, vm=1.025, loading=60.0)
    state.vm_pu[[5, 6]] = [band[0] - 0.01, band[1] + 0.01]
    state.loading_percent[[3, 4]] = [0.95 * limit, limit + 5]
    classes = classify(lay, state, band=band, loading_limit=limit)
    assert list(classes.bus[[5, 6]]) == [BusClass.LOW, BusClass.HIGH]
    assert set(np.delete(classes.bus, [5, 6])) == {BusClass.NORMAL}
    assert list(classes.branch[[3, 4]]) == [BranchClass.NEAR, BranchClass.OVER]
    fig = build_figure(lay, state, classes, which=Layout.GEOGRAPHIC, title="t")
    coloured = {t["name"].split(" (")[0]: t["marker"]["color"] for t in fig["data"] if t["name"].startswith("bus ")}
    assert coloured["bus in band"] == "#5f6368"  # grey


def test_a_feeder_breaker_reported_open_de_energises_its_feeder_and_shows_the_switch_off_normal(
    demo: Demo, historian: tuple[Settings, EmbeddedHistorian]
) -> None:
    settings, h = historian
    now = time.time_ns()
    h.write(synthetic_cycle(demo.net, settings.site.name, time_ns=now))
    h.write([_breaker(settings, "F1", False, now).to_record()])
    snap = read_snapshot(settings, h, demo.net, demo.layout, now_ns=now)
    assert snap.fresh and not snap.problem
    classes = classify(
        demo.layout,
        snap.state,
        band=settings.anomaly.voltage_band_pu,
        loading_limit=settings.anomaly.loading_limit_percent,
    )
    line0 = int(np.flatnonzero((demo.layout.branch_kind == "line") & (demo.layout.branch_index == 0))[0])
    far_bus = demo.layout.branch_to[line0]
    assert classes.bus[far_bus] == BusClass.DEENERGISED, "the bus behind the open breaker has no supply"
    dead = int((classes.bus == BusClass.DEENERGISED).sum())
    assert 3 < dead < len(demo.layout.bus) // 2, dead  # the feeder, not the whole grid
    assert classes.branch[line0] == BranchClass.DEENERGISED
    off = demo.layout.switch_index[classes.switch_shown[classes.switch == SwitchClass.OFF_NORMAL]]
    assert len(off) == 1 and demo.net.switch.at[int(off[0]), "element"] == 0  # the CB on line 0
    # the same breaker reported closed again: everything supplied, nothing off-normal
    h.write([_breaker(settings, "F1", True, now + 1).to_record()])
    snap = read_snapshot(settings, h, demo.net, demo.layout, now_ns=now + 1)
    again = classify(demo.layout, snap.state, band=(0.95, 1.05), loading_limit=100.0)
    assert again.energised.all() and SwitchClass.OFF_NORMAL not in set(again.switch)


def test_a_measured_bus_is_marked_measured_and_a_silent_device_stale(
    demo: Demo, historian: tuple[Settings, EmbeddedHistorian]
) -> None:
    settings, h = historian
    now = time.time_ns()
    h.write(synthetic_cycle(demo.net, settings.site.name, time_ns=now))
    sub, dev = settings.device("F1")
    fresh = Point(settings.site.name, sub.name, "Q01", "F1", "MMXU1.TotW", Source.MODBUS, now, 1e5)
    old_t = now - int(10 * settings.twin.stale_after_s * 1e9)
    (sub2, dev2) = next((s, d) for s in settings.site.substations for d in s.devices if s.name != sub.name)
    old = Point(settings.site.name, sub2.name, "b", dev2.name, "MMXU1.PhV", Source.MODBUS, old_t, 20e3, Quality.GOOD)
    h.write([fresh.to_record(), old.to_record()])
    snap = read_snapshot(settings, h, demo.net, demo.layout, now_ns=now)
    q = dict(zip(demo.layout.bus.tolist(), snap.state.quality, strict=True))
    assert q[int(demo.net.line.at[0, "from_bus"])] == "measured"
    assert dev2.element is not None
    assert "stale" in set(snap.state.quality)
    assert "estimated" in set(snap.state.quality)


@pytest.mark.parametrize("age_s", [None, 3600.0])
def test_with_the_stack_down_or_the_estimate_old_nothing_shows_a_believable_value(
    demo: Demo, historian: tuple[Settings, EmbeddedHistorian], age_s: float | None
) -> None:
    """The old view painted every bus 1.00 pu when there was no estimate."""
    settings, h = historian
    now = time.time_ns()
    if age_s is not None:
        h.write(synthetic_cycle(demo.net, settings.site.name, time_ns=now - int(age_s * 1e9)))
    snap = read_snapshot(settings, h, demo.net, demo.layout, now_ns=now)
    assert not snap.fresh and snap.problem
    assert ("no state estimate" in snap.problem) if age_s is None else ("older than" in snap.problem)
    assert np.isnan(snap.state.vm_pu).all() and np.isnan(snap.state.loading_percent).all()
    classes = classify(demo.layout, snap.state, band=(0.95, 1.05), loading_limit=100.0)
    assert set(classes.bus) == {BusClass.NO_DATA}
    fig = build_figure(demo.layout, snap.state, classes, which=Layout.SCHEMATIC, title="t")
    hover = " ".join(str(x) for t in fig["data"] for x in t.get("text", []))
    assert " pu" not in hover.replace("no estimate", "") and "1.00" not in hover


def _radial(n: int) -> pp.pandapowerNet:
    net = pp.create_empty_network()
    buses = pp.create_buses(net, n, vn_kv=20.0)
    pp.create_ext_grid(net, buses[0])
    parents = np.maximum(0, (np.arange(1, n) - 1) // 3)
    pp.create_lines(net, buses[parents], buses[1:], length_km=0.1, std_type="NA2XS2Y 1x95 RM/25 12/20 kV")
    return net


def test_one_trace_per_class_whatever_the_size_of_the_grid(demo: Demo) -> None:
    """The old view drew one plotly trace per line (101 traces here, 10,327 on the large grid)."""
    counts = []
    for net in (demo.net, _radial(5000)):
        lay = build_layout(net)
        state = _state(lay)
        state.vm_pu[:10] = 0.9
        state.loading_percent[:10] = 150.0
        classes = classify(lay, state, band=(0.95, 1.05), loading_limit=100.0)
        fig = build_figure(lay, state, classes, which=Layout.SCHEMATIC, title="t")
        assert all(t["type"] == "scattergl" for t in fig["data"])
        counts.append(len(fig["data"]))
        drawn = sum(int(np.isnan(t["x"]).sum()) for t in fig["data"] if t["mode"] == "lines")
        assert drawn == len(lay.branch_kind), "every branch drawn once, as a segment of its class's trace"
    # at most one trace per bus, branch and switch class, plus line handles, N-1 badges, selection
    assert max(counts) <= len(BusClass) + len(BranchClass) + len(SwitchClass) + 3, counts


def test_live_refresh_keeps_zoom_and_the_legend_sits_clear_of_the_title(demo: Demo) -> None:
    lay = demo.layout
    figs = []
    for vm in (1.0, 1.06):
        state = _state(lay, vm=vm)
        classes = classify(lay, state, band=(0.95, 1.05), loading_limit=100.0)
        figs.append(build_figure(lay, state, classes, which=Layout.GEOGRAPHIC, title="estimate at 12:00:00 UTC"))
    assert figs[0]["layout"]["uirevision"] == figs[1]["layout"]["uirevision"]
    legend = figs[0]["layout"]["legend"]
    assert legend["y"] <= 0 and legend["yanchor"] == "top"
    assert "12:00:00 UTC" in figs[0]["layout"]["title"]["text"]
    spec = json.loads(to_json(figs[1]))  # what the browser gets: typed arrays, NaN gaps kept
    lines = next(t for t in spec["data"] if t["mode"] == "lines")
    x = np.frombuffer(base64.b64decode(lines["x"]["bdata"]), dtype="<f4")
    assert np.isnan(x[2::3]).all() and np.isfinite(x[0::3]).all()


def test_a_click_is_traced_back_to_its_bus_or_line(demo: Demo) -> None:
    lay = demo.layout
    state = _state(lay)
    classes = classify(lay, state, band=(0.95, 1.05), loading_limit=100.0)
    fig = build_figure(lay, state, classes, which=Layout.GEOGRAPHIC, title="t")
    handles = next(t for t in fig["data"] if t["name"] == HANDLES)
    line12 = int(np.flatnonzero((lay.branch_kind == "line") & (lay.branch_index == 12))[0])
    picked = selection_from_event([{"customdata": int(handles["customdata"][line12])}])
    assert picked is not None and picked.kind == "branch" and lay.branch_index[picked.position] == 12
    buses = next(t for t in fig["data"] if t["name"].startswith("bus in band"))
    picked = selection_from_event([{"customdata": [int(buses["customdata"][7])]}])
    assert picked is not None and picked.kind == "bus" and picked.position == int(buses["customdata"][7])
    assert selection_from_event([{"x": 1.0}]) is None


def test_n1_run_is_kept_for_the_badges(tmp_path: Path, demo: Demo) -> None:
    frame = pd.DataFrame(
        [
            {"outage": "line 12", "severity": 84.0, "converged": True, "unsupplied_mw": 0.84, "unsupplied_buses": 9,
             "max_loading_percent": 40.0, "overloaded": "", "vm_min_pu": 0.99, "vm_max_pu": 1.01,
             "voltage_violations": 0, "restored_by": ""},
            {"outage": "line 13", "severity": 60.0, "converged": True, "unsupplied_mw": 0.6, "unsupplied_buses": 5,
             "max_loading_percent": 40.0, "overloaded": "", "vm_min_pu": 0.99, "vm_max_pu": 1.01,
             "voltage_violations": 0, "restored_by": "close switch 31"},
            {"outage": "trafo 1", "severity": 0.0, "converged": True, "unsupplied_mw": 0.0, "unsupplied_buses": 0,
             "max_loading_percent": 70.0, "overloaded": "", "vm_min_pu": 0.99, "vm_max_pu": 1.01,
             "voltage_violations": 0, "restored_by": ""},
        ]
    )  # fmt: skip
    path = n1_path(tmp_path / "gridverse.db")
    save_n1(path, N1Run(1, None, 2.5, "operator", frame))
    run = load_n1(path)
    assert run is not None and run.actor == "operator" and len(run.frame) == 3
    badges = critical_outages(run)
    assert list(badges) == [("line", 12)], "a cut a tie switch re-feeds, and a harmless outage, get no badge"
    assert "cuts 0.84 MW at 9 buses" in badges[("line", 12)]
    path.write_text("{not json")
    assert load_n1(path) is None


def test_the_n1_table_has_human_column_names_with_the_severity_explained() -> None:
    from gridmodel.contingency import ContingencyResult, FlowSummary
    from ui.views.twin import N1_COLUMNS, SEVERITY_CAPTION, n1_table

    raw = pd.DataFrame([ContingencyResult("line 1", FlowSummary(True, 50.0, [], 0.98, 1.01, [], [], 0.0), 0.0).row()])
    shown, config = n1_table(raw)
    assert set(raw.columns) <= set(N1_COLUMNS), "every column the ranking has gets a label"
    assert not set(shown.columns) & set(raw.columns), list(shown.columns)
    assert "Severity" in shown.columns and "1 MW of load cut" in SEVERITY_CAPTION
    assert json.dumps(config["Severity"]).count("voltage band") == 1


def _overview() -> None:
    from ui.views.overview import page

    page()


def test_the_overview_page_says_when_the_stack_is_down(demo: Demo, tmp_path: Path, monkeypatch) -> None:
    from ui import signin

    monkeypatch.setenv("GRIDVERSE_CONFIG", str(demo.config))
    st.cache_resource.clear()
    try:
        UserStore(load_settings(demo.config).auth).add("op", Role.OPERATOR, PASSWORD)
        at = AppTest.from_function(_overview, default_timeout=120)
        at.session_state[signin.TOKEN_KEY] = signin.start_session("op")
        at.run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert any("no state estimate" in e and "gridverse demo" in e for e in errors), errors
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["lowest voltage"] == "–" and metrics["highest loading"] == "–"
    finally:
        st.cache_resource.clear()


def test_the_overview_page_refuses_a_signed_out_browser(demo: Demo, monkeypatch) -> None:
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(demo.config))
    st.cache_resource.clear()
    try:
        at = AppTest.from_function(_overview, default_timeout=120).run()
        assert not at.exception
        assert not at.metric and any("Sign in" in w.value for w in at.warning)
    finally:
        st.cache_resource.clear()


def test_synthetic_cycle_leaves_unsupplied_buses_without_a_value(demo: Demo) -> None:
    net = copy.deepcopy(demo.net)
    net.line.loc[0, "in_service"] = False
    records = synthetic_cycle(net, "s", time_ns=1)
    buses = {int(r.tags["bus"]) for r in records if r.measurement == "twin_bus"}
    assert int(net.line.at[0, "to_bus"]) not in buses and len(buses) < len(net.bus)


def test_the_component_serves_the_gl2d_bundle_the_bootstrap_installs() -> None:
    """The bootstrap installs plotly.js's gl2d bundle for the component (a third of the full
    bundle's size: the 10,458-bus view draws in under half the time); the browser tests draw with
    it. Without it the component falls back to the full bundle, which works but is slower."""
    from ui.panorama.component import GL2D_BUNDLE, plotly_bundle

    assert plotly_bundle() == GL2D_BUNDLE, "run `npm ci --prefix ui/panorama/component` (scripts/bootstrap)"
    head = GL2D_BUNDLE.read_text(encoding="utf-8", errors="replace")[:200]
    assert "plotly.js (gl2d - minified)" in head
