"""Inspection routes: an alarmed transformer comes first and the route follows the risk order in
tiers along a short walk; each kind has its checklist (NETA thermography grades, SF6 levels);
the route prints as text and JSON and packs into one offline HTML file; a step just inspected
drops in risk."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from gridverse.audit import open_audit
from gridverse.config import AssetKind, Settings
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Record, Source
from gridverse.schema import ALARM
from gridverse.settings import load_settings
from inspection.checklists import Grade, checklist_for, checklists, grade_reading, neta_thermography_grade, sf6_at_20c
from inspection.risk import assess
from inspection.route_cli import add_route_command
from inspection.routepack import route_pack_html
from inspection.routes import build_route, path_length, plan_route, walk_order
from tests.helpers import config_dir

NOW = time.time_ns()
DEVICES = {"T1": ("MMXU1.A", 700.0), "T2": ("MMXU1.A", 700.0), **{f"F{i}": ("XCBR1.Pos", 1.0) for i in range(1, 9)}}


def _live_site(tmp: Path, *, alarm: bool = True, mutate=None) -> tuple[Settings, EmbeddedHistorian]:
    settings = load_settings(config_dir(tmp, mutate))
    historian = EmbeddedHistorian(settings.historian.path)
    site = settings.site.name
    records = []
    for device, (point, value) in DEVICES.items():
        for name in (point, "MMXU1.A", "MMXU1.TotW", "MMXU1.PPV"):
            v = value if name == point else 1e5
            records.append(Point(site, "primary", "", device, name, Source.MODBUS, NOW, v).to_record())
    for sensor, temp in (("T1-oil", 60.0), ("T2-oil", 121.0)):
        records.append(Point(site, "primary", "", sensor, "YPTR1.TmpOil", Source.MQTT, NOW, temp).to_record())
    if alarm:
        tags = {"site": site, "substation": "primary", "device": "T2-oil", "point": "YPTR1.TmpOil"}
        records.append(
            Record(ALARM, {**tags, "rule": "limit", "severity": "critical"}, {"active": 1, "message": "hot"}, NOW)
        )
    historian.write(records)
    return settings, historian


def test_an_alarmed_transformer_comes_first_and_the_route_follows_the_risk_order(tmp_path: Path) -> None:
    settings, historian = _live_site(tmp_path)
    try:
        route = build_route(settings, historian, "primary", now_ns=NOW)
        risks = {r.asset.name: r for r in assess(settings, historian, "primary", now_ns=NOW)}
    finally:
        historian.close()
    first = route.steps[0]
    assert (first.asset, first.kind, first.state, first.tier) == ("PRIM/T2/YPTR1", "transformer", "alarm", 1)
    assert any("T2-oil/YPTR1.TmpOil" in w for w in first.why)
    assert [s.asset for s in route.steps if s.tier == 1] == ["PRIM/T2/YPTR1"]  # only the transformer is alarmed
    # the tiers are walked in order, and no step comes before a riskier step of a later tier
    tiers = [s.tier for s in route.steps]
    assert tiers == sorted(tiers) and len(set(tiers)) >= 2
    for a in route.steps[1:]:
        for b in route.steps[1:]:
            if a.tier < b.tier:
                assert a.risk >= b.risk, (a.asset, b.asset)
    # every equipment but the sensors is on it, once, with its kind's checklist and live values
    expected = {a.name for a in settings.assets["primary"] if a.kind is not AssetKind.SENSOR}
    assert sorted(s.asset for s in route.steps) == sorted(expected)
    top_oil = next(c for c in first.checks if c.key == "top_oil")
    assert top_oil.compare["T2-oil/YPTR1.TmpOil"] == 121.0 and top_oil.reading == "top_oil_c"
    assert [c.key for c in first.checks] == [i.key for i in checklist_for(AssetKind.TRANSFORMER).items]
    # risk is likelihood × consequence, the consequence from the power flow without the element
    t2 = risks["PRIM/T2/YPTR1"]
    assert t2.consequence is not None and t2.consequence.element == "trafo 1"
    assert first.risk == pytest.approx(t2.likelihood * t2.consequence.mw, rel=1e-3)
    assert risks["PRIM/Q06/XCBR1"].consequence.element == "line 44"  # a feeder breaker trips its line
    assert risks["PRIM/Q06/XCBR1"].consequence.unsupplied_mw > 0  # a radial feeder: its load is lost


def test_without_the_alarm_the_transformer_is_not_first(tmp_path: Path) -> None:
    settings, historian = _live_site(tmp_path, alarm=False)
    try:
        route = build_route(settings, historian, "primary", now_ns=NOW)
    finally:
        historian.close()
    assert route.steps[0].tier > 1 and route.steps[0].state != "alarm"
    assert route.steps[0].risk == max(s.risk for s in route.steps)  # the riskiest starts the walk


def test_a_step_just_inspected_is_less_risky(tmp_path: Path) -> None:
    settings, historian = _live_site(tmp_path, alarm=False)
    try:
        before = {r.asset.name: r for r in assess(settings, historian, "primary", now_ns=NOW)}
        open_audit(settings).append("tech1", "technician", "inspect.step", "PRIM/Q04/XCBR1")
        after = {r.asset.name: r for r in assess(settings, historian, "primary", now_ns=NOW)}
    finally:
        historian.close()
    assert after["PRIM/Q04/XCBR1"].likelihood < before["PRIM/Q04/XCBR1"].likelihood  # inspected 2024-10-15
    assert after["PRIM/Q03/XCBR1"].likelihood == before["PRIM/Q03/XCBR1"].likelihood


def test_walk_order_keeps_the_first_and_shortens_the_walk() -> None:
    points = [(0.0, 0.0), (10.0, 0.0), (1.0, 0.0), (9.0, 0.0), (2.0, 0.0), (5.0, 0.0)]
    order = walk_order(points, first=0)
    assert order[0] == 0
    assert [points[i][0] for i in order] == [0.0, 1.0, 2.0, 5.0, 9.0, 10.0]
    zigzag = [(0.0, 0.0), (0.0, 10.0), (1.0, 0.0), (1.0, 10.0), (2.0, 0.0), (2.0, 10.0)]
    best = walk_order(zigzag, first=0)
    assert path_length([zigzag[i] for i in best]) <= path_length(zigzag)
    assert walk_order([(5.0, 5.0), (0.0, 0.0)], start=(0.0, 1.0)) == [1, 0]  # the later tier starts nearest


def test_every_kind_has_its_checklist() -> None:
    assert set(checklists()) == set(AssetKind)
    transformer = {i.key for i in checklist_for(AssetKind.TRANSFORMER).items}
    assert {"oil_level", "top_oil", "buchholz", "silica_gel", "bushings", "thermography"} <= transformer
    breaker = checklist_for(AssetKind.BREAKER)
    assert {"operation_counter", "sf6_pressure", "thermography"} <= {i.key for i in breaker.items}
    sf6 = breaker.item("sf6_pressure")
    assert sf6.alarm is not None and sf6.lockout is not None and sf6.lockout < sf6.alarm
    assert grade_reading(sf6, sf6.alarm + 0.1) is Grade.OK
    assert grade_reading(sf6, sf6.alarm) is Grade.PROBABLE
    assert grade_reading(sf6, sf6.lockout) is Grade.MAJOR
    for kind in (AssetKind.DISCONNECTOR, AssetKind.CT, AssetKind.VT, AssetKind.CABLE_TERMINATION):
        assert "thermography" in {i.key for i in checklist_for(kind).items}
    rmu = checklist_for(AssetKind.RMU).item("sf6_pressure")
    assert rmu.alarm is not None and rmu.alarm < 2  # an RMU's levels are MV levels, not a breaker's
    with pytest.raises(KeyError, match="no item"):
        breaker.item("buchholz")


def test_thermography_is_graded_by_neta_table_100_18() -> None:
    """ΔT over a similar component: 1–3 °C possible, 4–15 °C probable, over 15 °C major."""
    grades = {d: neta_thermography_grade(d) for d in (0.5, 1.0, 3.0, 3.5, 4.0, 15.0, 15.5, 40.0)}
    assert grades == {
        0.5: Grade.OK,
        1.0: Grade.POSSIBLE,
        3.0: Grade.POSSIBLE,
        3.5: Grade.PROBABLE,
        4.0: Grade.PROBABLE,
        15.0: Grade.PROBABLE,
        15.5: Grade.MAJOR,
        40.0: Grade.MAJOR,
    }
    # 5.0 bar read with the gas at 40 °C is 5.0·293.15/313.15 = 4.681 bar at 20 °C
    assert sf6_at_20c(5.0, 40.0) == pytest.approx(4.681, abs=1e-3)


def test_route_command_prints_json_and_writes_the_pack(tmp_path: Path, capsys) -> None:
    """The pack holds every step's own view, rendered by the real render worker."""
    settings, historian = _live_site(tmp_path)
    historian.close()
    render = Path(settings.inspection.output_dir) / "primary.png"
    render.parent.mkdir(parents=True, exist_ok=True)
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    render.write_bytes(png)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path)
    add_route_command(parser.add_subparsers(dest="action"))
    pack = tmp_path / "pack" / "route.html"
    args = parser.parse_args(
        ["--config", str(config_dir_main(tmp_path)), "route", "primary", "--json", "--pack", str(pack)]
    )
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["substation"] == "primary" and doc["steps"][0]["asset"] == "PRIM/T2/YPTR1"
    assert doc["steps"][0]["checks"][0]["key"] == "oil_level"
    page = pack.read_text()
    assert page.startswith("<!doctype html>") and "PRIM/T2/YPTR1" in page
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page  # self-contained
    assert page.count("<form") == len(doc["steps"])
    # the overview and one step view per step, each a real render (not the 1-pixel overview)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    steps = [s["asset"] for s in doc["steps"]]
    assert [alt for alt, _ in images] == ["substation primary", *steps]
    for alt, data in images[1:]:
        view = Image.open(io.BytesIO(base64.b64decode(data)))
        assert view.size == (settings.inspection.width, settings.inspection.height), alt
        assert view.text["gridverse:asset"] == alt
    assert "No step view" not in page
    bad = parser.parse_args(["--config", str(config_dir_main(tmp_path)), "route", "nowhere"])
    assert bad.func(bad) == 2
    assert "no equipment for substation 'nowhere'" in capsys.readouterr().err


def config_dir_main(tmp: Path) -> Path:
    return tmp / "configs" / "gridverse.yaml"


def test_pack_embeds_step_images(tmp_path: Path) -> None:
    settings, historian = _live_site(tmp_path)
    try:
        risks = assess(settings, historian, "primary", now_ns=NOW)
    finally:
        historian.close()
    route = plan_route("primary", risks, now_ns=NOW)
    image = tmp_path / "t2.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = route_pack_html(route, images={"PRIM/T2/YPTR1": image})
    assert page.count("data:image/png;base64,") == 1
    assert "Order: tiers" in page


def _routes_page() -> None:
    from ui.views.routes import page

    page()


def test_routes_page_walks_a_step_and_records_its_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A technician generates the route, opens step 1 (the alarmed T2), fills in the checklist
    and records it: the finding is in the audit record under their name; a viewer sees the route
    but gets no form."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.test_ui_pages import add_role_users, fast_auth
    from ui import signin

    settings, historian = _live_site(tmp_path, mutate=fast_auth)
    historian.close()
    add_role_users(config_dir_main(tmp_path))
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(config_dir_main(tmp_path)))
    st.cache_resource.clear()
    try:
        at = AppTest.from_function(_routes_page, default_timeout=240)
        at.session_state[signin.TOKEN_KEY] = signin.start_session("technician")
        at.run()
        assert not at.exception and at.title[0].value == "Inspection routes"
        at.button(key="routes.generate").click().run()
        assert not at.exception
        table = at.dataframe[0].value
        assert table.equipment.iloc[0] == "PRIM/T2/YPTR1" and table.state.iloc[0] == "alarm"
        at.radio(key="routes.1.oil_level").set_value("pass")
        at.radio(key="routes.1.bushings").set_value("fail")
        at.number_input(key="routes.1.top_oil.reading").set_value(72.0)
        at.text_area(key="routes.1.notes").input("HV bushing 2 weeps oil")
        at.button(key="FormSubmitter:routes.form.1-Record step").click().run()
        assert not at.exception
        assert [s.value for s in at.success][0].startswith("Step 1 recorded for PRIM/T2/YPTR1")
        entries = open_audit(settings).entries()
        assert [(e.action, e.target, e.actor, e.role) for e in entries] == [
            ("inspect.finding", "PRIM/T2/YPTR1", "technician", "technician"),
            ("inspect.step", "PRIM/T2/YPTR1", "technician", "technician"),
        ]
        assert entries[0].after["checks"]["bushings"] == "fail" and entries[0].after["readings"] == {"top_oil_c": 72.0}
        viewer = AppTest.from_function(_routes_page, default_timeout=240)
        viewer.session_state[signin.TOKEN_KEY] = signin.start_session("viewer")
        viewer.run()
        viewer.button(key="routes.generate").click().run()
        assert not viewer.exception and len(viewer.dataframe[0].value) == len(table)
        assert not [b for b in viewer.button if "Record step" in b.label]  # no form for a viewer
    finally:
        st.cache_resource.clear()


def test_technician_pages_render_in_chromium(tmp_path: Path) -> None:
    """A real browser (Debian's chromium through Playwright) signs in as a technician on a real
    Streamlit server, generates the route and opens its first step, then the substation page with
    its timestamped render; the screenshots are not blank."""
    import os
    import subprocess
    import sys
    import urllib.request

    from PIL import Image

    from tests.services import free_port, require_binary, unavailable, wait_for
    from tests.test_ui_pages import PASSWORD, add_role_users, fast_auth

    chromium = require_binary("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    settings, historian = _live_site(tmp_path, mutate=fast_auth)
    historian.close()
    config = config_dir_main(tmp_path)
    add_role_users(config)
    render = Path(settings.inspection.output_dir) / "primary.png"
    render.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (320, 200), (40, 160, 60)).save(render)
    port = free_port()
    log = tmp_path / "streamlit.log"
    app = Path(__file__).parent.parent / "ui" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.headless", "true"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, "GRIDVERSE_CONFIG": str(config)}, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).status == 200, "streamlit", 120)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                page.goto(f"{base}/routes")
                page.get_by_role("textbox", name="User name").fill("technician")
                page.get_by_role("textbox", name="Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Inspection routes").wait_for(timeout=90_000)
                page.get_by_role("button", name="Generate route from live risk").click()
                page.get_by_role("heading", name="Step 1: PRIM/T2/YPTR1").wait_for(timeout=240_000)
                page.get_by_role("button", name="Record step").wait_for(timeout=30_000)  # the findings form
                shot = tmp_path / "routes.png"
                page.screenshot(path=str(shot), full_page=True)
                pixels = Image.open(shot).convert("L")
                assert max(pixels.getextrema()) - min(pixels.getextrema()) > 100, "the screenshot is blank"
                page.get_by_role("link", name="Substation").click()  # in-app navigation keeps the session
                page.get_by_role("heading", name="Substation primary").wait_for(timeout=90_000)
                page.get_by_text("rendered", exact=False).first.wait_for(timeout=30_000)
                assert page.locator("img").count() >= 1
            finally:
                browser.close()
    except TimeoutError:
        pytest.fail(f"streamlit did not answer:\n{log.read_text()[-2000:]}")
    finally:
        proc.terminate()
        proc.wait(10)
