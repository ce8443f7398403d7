"""The whole stack on loopback against a real Mosquitto: simulator → gateway → historian → twin →
detectors → render → UI."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from gridverse.auth.roles import Role
from gridverse.auth.users import UserStore
from gridverse.demo import DemoStack
from gridverse.points import TELEMETRY
from gridverse.settings import load_settings
from inspection.render import is_blank
from inspection.routes import build_route
from inspection.state import read_render_stamp
from tests.helpers import config_dir
from tests.services import mosquitto

pytestmark = pytest.mark.e2e
RUN_SECONDS = 40.0


def _with_fault(doc: dict) -> None:
    doc["simulator"]["faults"] = [
        {"kind": "spike", "device": "T2-oil", "point": "YPTR1.TmpOil", "start_s": 8, "magnitude": 80}
    ]
    doc["inspection"]["every_s"] = 5
    # a small frame: Open3D on Mesa's CPU renderer takes tens of seconds for the full 800x500 here
    doc["inspection"].update(width=200, height=125)


def _overview_app() -> None:
    from ui.views import overview

    overview.page()


def _twin_app() -> None:
    from ui.views import twin

    twin.page()


def _substation_app() -> None:
    from ui.views import substation

    substation.page()


def _signed_in(script, timeout: float) -> AppTest:
    """A page run with the e2e engineer signed in (pages draw nothing for nobody)."""
    from ui import signin

    at = AppTest.from_function(script, default_timeout=timeout)
    at.session_state[signin.TOKEN_KEY] = signin.start_session("engineer")
    return at.run()


def test_stack_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    main = config_dir(tmp_path, _with_fault)
    with mosquitto(tmp_path) as port:
        monkeypatch.setenv("GRIDVERSE_MQTT__HOST", "127.0.0.1")
        monkeypatch.setenv("GRIDVERSE_MQTT__PORT", str(port))
        settings = load_settings(main)

        async def run() -> DemoStack:
            stack = DemoStack(settings)  # the demo's stack: estimates checked against the simulator
            assert stack.broker is None, "the configured Mosquitto is used, not an embedded one"
            await stack.start()
            try:
                await asyncio.sleep(RUN_SECONDS)
                # Open3D on Mesa's CPU renderer takes tens of seconds a frame on a busy 2-core machine:
                # the stack keeps running until its first render is written (or 240 s more)
                deadline = time.monotonic() + 240.0
                while stack.renderer is not None and not stack.renderer.rendered and time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
            finally:
                await stack.stop()
            return stack

        stack = asyncio.run(run())
        summary = stack.summary()

    history = stack.historian
    site = {"site": settings.site.name}
    # Points from both sources reached the historian (read back from the store, not counters).
    modbus = history.query(TELEMETRY, tags={**site, "source": "modbus"})
    mqtt = history.query(TELEMETRY, tags={**site, "source": "mqtt"})
    assert len(modbus) >= 16 * 20 and len({r.tags["device"] for r in modbus}) == 16
    assert len(mqtt) >= 2 * 20 and {r.tags["device"] for r in mqtt} == {"T1-oil", "T2-oil"}
    assert summary["points_stored"]["modbus"] == len(modbus)
    assert summary["points_pending"] == 0

    # State estimation converged and matches the simulator's truth within 0.01 pu.
    se = summary["state_estimation"]
    assert se["cycles"] >= 10 and se["converged"] == se["cycles"]
    assert se["checked_against_truth"] >= 10
    assert se["max_voltage_error_pu"] < 0.01
    assert len(history.latest("twin_bus", tags=site)) == 99

    # The switched-on fault raised an alarm naming the device and point, stored and active.
    alarms = history.query("alarm", tags={**site, "rule": "limit", "device": "T2-oil"})
    assert alarms and alarms[0].tags["point"] == "YPTR1.TmpOil"
    assert alarms[0].tags["severity"] == "critical"
    assert not history.query("alarm", tags={**site, "rule": "limit", "device": "T1-oil"})
    # Live scoring with the deployed lab model (the shipped default) raised a `model` alarm for the same fault.
    model_alarms = history.query("alarm", tags={**site, "rule": "model", "device": "T2-oil"})
    assert model_alarms and model_alarms[0].tags["point"] == "YPTR1.TmpOil", summary.get("alarms_active")
    assert "T2-oil/YPTR1.TmpOil" in str(model_alarms[0].fields["message"])
    assert not history.query("alarm", tags={**site, "rule": "model", "device": "T1-oil"})

    # The fault moves the affected equipment to the top of the inspection route: the T2 transformer
    # (its oil sensor alarmed), in alarm, with the alarm among the reasons.
    route = build_route(settings, history, "primary", window_s=600)
    first = route.steps[0]
    assert (first.asset, first.state) == ("PRIM/T2/YPTR1", "alarm"), [(s.asset, s.state) for s in route.steps[:3]]
    assert any("T2-oil/YPTR1.TmpOil" in why for why in first.why)
    _assert_first_step_view_in_alarm_colour(settings, first, tmp_path)

    # An Open3D render was written and is not blank, and carries the time it shows.
    assert summary["rendered"]
    png = Path(summary["rendered"][0])
    assert png.stat().st_size > 2_000 and not is_blank(png)  # a 200x125 frame of flat merged meshes: ~10 kB
    scene = np.asarray(Image.open(png).convert("RGB"), dtype=float)[:, int(0.6 * 200) :]  # right of the legend
    assert scene.std() > 5.0, "the 3D scene itself was drawn, not only the legend"
    stamp = read_render_stamp(png)
    assert stamp is not None and stamp["rendered_ns"] <= time.time_ns()

    # The UI pages render from this stack's historian.
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(main))
    UserStore(settings.auth).add("engineer", Role.ENGINEER, "the end-to-end engineer's password")
    at = _signed_in(_overview_app, 120)
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["buses de-energised"] == "0"  # every feeder breaker closed
    assert at.get("component_instance")  # the panoramic figure
    table = at.dataframe[0].value  # standing alarms, from the alarm store
    assert ((table.device == "T2-oil") & (table.point == "YPTR1.TmpOil")).any()
    at = _signed_in(_substation_app, 60)
    assert not at.exception and at.get("image")
    at = _signed_in(_twin_app, 120)
    assert not at.exception
    assert at.metric[0].value == "sparse" and at.get("plotly_chart")  # residuals of this run's cycle
    at.button[0].click().run()
    assert not at.exception
    ranking = at.dataframe[0].value
    assert len(ranking) == 103 and ranking["Severity"].is_monotonic_decreasing


def _assert_first_step_view_in_alarm_colour(settings, step, tmp_path: Path) -> None:
    """The route's first step view (rendered by the render worker, as the technician page does)
    shows the faulted transformer in the alarm colour, at 640x480 (a frame where the label panel
    does not cover the equipment)."""
    from inspection.config import AssetKind
    from inspection.state import AssetState
    from inspection.stepview import render_step, stop_worker
    from tests.stepview_checks import assert_step_view_shows

    big = settings.model_copy(
        update={"inspection": settings.inspection.model_copy(update={"width": 640, "height": 480})}
    )
    try:
        path = render_step("primary", step, settings=big, out=tmp_path / "step1.png", timeout=120, wait_s=120)
    finally:
        stop_worker()
    assert_step_view_shows(path, step.asset, AssetKind(step.kind), AssetState(step.state))
