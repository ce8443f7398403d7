"""The UI's pages: every page in `ui.views.PAGES` opens at its own URL on a real Streamlit server,
and each renders the data of a small historian (AppTest)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Record
from gridverse.schema import (
    ALARM,
    LOADING_ALARM_PERCENT,
    LOADING_WARNING_PERCENT,
    TWIN_BRANCH,
    TWIN_BUS,
    TWIN_CYCLE,
    TWIN_OBSERVABILITY,
    TWIN_RESIDUAL,
)
from gridverse.settings import REPO_ROOT, load_settings
from tests.helpers import config_dir
from tests.services import free_port, wait_for
from ui import data
from ui.views import PAGES, PageSpec

APP = REPO_ROOT / "ui" / "app.py"
LOADINGS = {0: 60.0, 12: 85.0, 21: 20.0}  # line index → percent; the other lines 10 %


@dataclass
class Site:
    config: Path
    site: str
    buses: int
    lines: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo configuration with a historian holding one twin cycle (estimates, loadings,
    residuals, an observability note), an active alarm, and a substation render on disk."""
    tmp = tmp_path_factory.mktemp("ui")
    config = config_dir(tmp)
    settings = load_settings(config)
    st.cache_resource.clear()  # the UI caches settings, historian and network per process
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRIDVERSE_CONFIG", str(config))
        buses, lines = data.network_geometry()  # loaded once here, reused by the pages
    name, now = settings.site.name, time.time_ns()
    tag = {"site": name}
    cycle: dict[str, float | int | str | bool] = {
        "engine": "sparse",
        "estimate_s": 0.042,
        "objective": 12.0,
        "chi2_threshold": 30.0,
        "chi2_alarm": 0,
        "suspects": 1,
        "unobservable_buses": 2,
    }
    records = [Record(TWIN_CYCLE, tag, cycle, now)]
    records += [
        Record(TWIN_BUS, {**tag, "bus": str(b)}, {"vm_pu": 0.97 + 0.06 * i / (len(buses) - 1), "va_degree": 0.0}, now)
        for i, b in enumerate(buses.index)
    ]
    records += [
        Record(TWIN_BRANCH, {**tag, "kind": "line", "index": str(i)}, {"loading_percent": LOADINGS.get(i, 10.0)}, now)
        for i in lines.index
    ]
    records += [
        Record(
            TWIN_RESIDUAL,
            {**tag, "device": device, "point": "MMXU1.PPV"},
            {"normalised": r, "residual_sigma": r, "measured": 0.4, "suspect": int(abs(r) > 4)},
            now,
        )
        for device, r in (("RTU45", 7.5), ("RTU60", -1.2), ("RTU80", 0.3))
    ]
    records.append(Record(TWIN_OBSERVABILITY, tag, {"message": "buses 97, 98 are unobservable from telemetry"}, now))
    alarm_tags = {"substation": "primary", "device": "T2-oil", "point": "YPTR1.TmpOil"}
    records.append(
        Record(
            ALARM,
            {**tag, **alarm_tags, "rule": "limit", "severity": "critical"},
            {"message": "YPTR1.TmpOil = 151.0 degC above 95.0", "active": 1, "value": 151.0},
            now,
        )
    )
    historian = EmbeddedHistorian(settings.historian.path)
    try:
        historian.write(records)
    finally:
        historian.close()
    assert settings.inspection is not None
    render = Path(settings.inspection.output_dir) / f"{settings.inspection.substation}.png"
    render.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (40, 160, 60)).save(render)
    yield Site(config, name, len(buses), len(lines))
    st.cache_resource.clear()


def _app(spec: PageSpec) -> AppTest:
    return AppTest.from_function(_render_page, args=(spec.module, spec.function), default_timeout=120)


def _render_page(module: str, function: str) -> None:
    from ui.views import PageSpec

    PageSpec("", "", module, "", "", function).render()


@pytest.fixture
def env(site: Site, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(site.config))
    return site


def test_pages_are_listed_once_with_explicit_url_paths() -> None:
    paths = [p.url_path for p in PAGES]
    assert paths == ["overview", "twin", "substation"]
    assert len({p.title for p in PAGES}) == len(PAGES) and all(p.icon and p.section for p in PAGES)


def test_the_app_opens_the_first_page_at_its_root(env: Site) -> None:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == f"Panoramic view — {env.site}"


def test_overview_shows_the_estimate_loadings_and_alarms(env: Site) -> None:
    at = _app(PAGES[0]).run()
    assert not at.exception
    assert [m.value for m in at.metric] == [str(env.buses), "0.970 pu", "1.030 pu", "85 %"]
    alarms = at.dataframe[0].value
    assert list(alarms.device) == ["T2-oil"] and list(alarms.severity) == ["critical"]
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = [t for t in figure["data"] if t.get("mode") == "lines"]
    assert len(lines) == env.lines
    colours = {t["text"].rsplit(": ", 1)[1]: t["line"]["color"] for t in lines}  # "<line name>: 60 %"
    # the same bands as the substation render: green below 50 %, amber from 50 %, red from 80 %
    assert colours == {"10 %": "#2e7d32", "20 %": "#2e7d32", "60 %": "#f9a825", "85 %": "#c62828"}


def test_twin_page_shows_the_cycle_residuals_and_notes(env: Site) -> None:
    at = _app(PAGES[1]).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Engine"] == "sparse" and metrics["Estimate"] == "42 ms"
    assert metrics["Chi-square (J / limit)"] == "12 / 30" and metrics["Suspect readings"] == "1"
    assert metrics["Buses unobservable from telemetry"] == "2"
    residuals = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert sorted(y for t in residuals["data"] for y in t["y"]) == [
        f"{d}/MMXU1.PPV" for d in ("RTU45", "RTU60", "RTU80")
    ]
    assert [w.value for w in at.warning] == ["buses 97, 98 are unobservable from telemetry"]
    assert at.button[0].label == "Run N-1"


def test_substation_page_shows_the_render_and_its_assets(env: Site) -> None:
    at = _app(PAGES[2]).run()
    assert not at.exception
    assert at.title[0].value == "Substation primary"
    assert at.get("image"), "the render on disk is shown"
    caption = at.get("image")[0].proto.imgs[0].caption
    assert f"amber loaded ≥ {LOADING_WARNING_PERCENT:.0f} %" in caption
    assert f"loaded ≥ {LOADING_ALARM_PERCENT:.0f} %" in caption
    assets = at.dataframe[0].value
    assert len(assets) == 44 and "PRIM/T2/YPTR1" in set(assets.asset)


def _visit(port: int, page_name: str) -> tuple[bool, str]:
    """What a browser opening /<page_name> gets first: (page not found?, the page's heading)."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async def visit() -> tuple[bool, str]:
        url = f"ws://127.0.0.1:{port}/_stcore/stream"
        async with websockets.connect(url, subprotocols=["streamlit"], max_size=None) as ws:  # type: ignore[list-item]
            request = BackMsg()
            request.rerun_script.page_name = page_name
            await ws.send(request.SerializeToString())
            not_found, heading = False, ""
            while True:  # to the end of the run: "page not found" may come before or after a heading
                msg = ForwardMsg()
                msg.ParseFromString(await asyncio.wait_for(ws.recv(), 120))
                kind = msg.WhichOneof("type")
                if kind == "page_not_found":
                    not_found = True
                elif kind == "delta" and msg.delta.new_element.WhichOneof("type") == "heading" and not heading:
                    heading = msg.delta.new_element.heading.body
                elif (  # a whole run of the page (not a rerun cut short, not a fragment's run)
                    kind == "script_finished"
                    and msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY
                    and (not_found or heading)
                ):
                    return not_found, "" if not_found else heading

    return asyncio.run(visit())


def test_every_url_path_opens_its_page_on_a_real_server(site: Site, tmp_path: Path) -> None:
    """`/overview` used to answer "Page not found": Streamlit serves its default page only at `/`."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, "GRIDVERSE_CONFIG": str(site.config)}, stdout=out, stderr=out)
    try:
        health = f"http://127.0.0.1:{port}/_stcore/health"
        try:
            wait_for(lambda: urllib.request.urlopen(health, timeout=1).status == 200, "streamlit", timeout=120)
        except TimeoutError:
            pytest.fail(f"streamlit did not answer on port {port} within 120 s:\n{log.read_text()[-2000:]}")
        for spec in PAGES:
            not_found, heading = _visit(port, spec.url_path)
            assert not not_found and heading.startswith(spec.title), (spec.url_path, heading)
        not_found, heading = _visit(port, "")  # the root opens the first page
        assert not not_found and heading.startswith(PAGES[0].title)
        assert _visit(port, "no-such-page")[0], "an unknown path is reported, so the check above can fail"
    finally:
        proc.terminate()
        proc.wait(10)
