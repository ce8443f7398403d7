"""The analyst's page (AppTest, real sign-in service, real registry and audit record): an analyst
sees the scenario sets, trains on a tiny set with its report card shown, sees a point's series
with labels and alarms, and deploys (audited, as the signed-in analyst); a viewer sees the page but
has no train or deploy button, and a forged call of either handler is refused before anything happens."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from anomaly.dataset import write_scenario
from anomaly.live import LIVE_STATUS
from anomaly.registry import ModelRegistry
from gridverse.audit import AuditRecord
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Record
from gridverse.settings import load_settings
from tests.helpers import config_dir

START = pd.Timestamp("2016-06-01", tz="UTC")


def tiny_scenario(directory: Path, *, start: pd.Timestamp, spike_at: int) -> Path:
    """Two days at 15 minutes on a 3-bus grid, one labelled spike on B2.V."""
    net = pp.create_empty_network()
    b = [pp.create_bus(net, 20.0 if i == 0 else 0.4) for i in range(3)]
    pp.create_ext_grid(net, b[0])
    pp.create_transformer(net, b[0], b[1], "0.4 MVA 20/0.4 kV")
    pp.create_line(net, b[1], b[2], 0.2, "NAYY 4x150 SE")
    pp.create_load(net, b[2], p_mw=0.02)
    rows = [("T0.P", "trafo", 0, "lv", "p_mw", "MW", 0.001), ("B2.V", "bus", 2, "", "v_pu", "pu", 0.002)]
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    points = points.set_index("point")
    index = pd.date_range(start, periods=192, freq="15min")
    rng = np.random.default_rng(spike_at)
    daily = np.sin(2 * np.pi * np.arange(len(index)) / 96)
    telemetry = pd.DataFrame(
        {"T0.P": 0.2 + 0.05 * daily + rng.normal(0, 0.001, len(index)), "B2.V": 1.0 + rng.normal(0, 0.002, len(index))},
        index=index,
    )
    telemetry.iloc[spike_at, 1] += 0.1
    labels = pd.DataFrame(
        [(index[spike_at], index[spike_at], "spike", "bus", 2, "B2.V")],
        columns=["start", "end", "type", "element_type", "element", "point"],
    )
    return write_scenario(directory, net=net, points=points, telemetry=telemetry, labels=labels)


def _lab_page() -> None:
    """Sign in through the real sign-in service, then draw the page (or, with LAB_TEST_FORGE, call
    a handler directly, as a forged request would)."""
    import os
    from pathlib import Path

    import streamlit as st

    from ui import signin
    from ui.views import analyst

    if signin.TOKEN_KEY not in st.session_state:
        token, _user = signin.service().sign_in(os.environ["LAB_TEST_USER"], os.environ["LAB_TEST_PASSWORD"])
        st.session_state[signin.TOKEN_KEY] = token
    forge = os.environ.get("LAB_TEST_FORGE")
    if forge == "train":
        analyst.train(Path(os.environ["LAB_TEST_SET"]), "forged")
        st.write("acted")
        return
    if forge == "deploy":
        analyst.deploy("default")
        st.write("acted")
        return
    analyst.page()


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An analyst and a viewer, a tiny scenario set (train + validation) and an empty registry."""
    import streamlit as st

    from gridverse.auth.users import UserStore

    def mutate(doc: dict) -> None:
        doc["auth"] = {"users_file": str(tmp_path / "users.yaml"), "argon2_time_cost": 1, "argon2_memory_kib": 64}
        doc["anomaly"].update(models_dir=str(tmp_path / "models"), scenarios_dir=str(tmp_path / "scenarios"))

    main_file = config_dir(tmp_path, mutate)
    settings = load_settings(main_file, environ={})
    users = UserStore(settings.auth)
    users.add("ann", "analyst", "correct horse battery")
    users.add("vic", "viewer", "staple battery horse")
    tiny = tmp_path / "scenarios" / "tiny"
    tiny_scenario(tiny / "train", start=START, spike_at=150)
    tiny_scenario(tiny / "validation", start=START + pd.Timedelta(days=2), spike_at=120)
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(main_file))
    st.cache_resource.clear()  # the UI caches its settings per process
    yield settings, tiny
    st.cache_resource.clear()


def _as(monkeypatch: pytest.MonkeyPatch, user: str, password: str) -> None:
    monkeypatch.setenv("LAB_TEST_USER", user)
    monkeypatch.setenv("LAB_TEST_PASSWORD", password)


def test_an_analyst_trains_reads_the_report_card_and_deploys(lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    settings, tiny = lab
    _as(monkeypatch, "ann", "correct horse battery")
    at = AppTest.from_function(_lab_page, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Anomaly lab"
    assert at.selectbox(key="lab.set").value == "tiny"
    at.button(key="lab.train.go").click().run()
    assert not at.exception, at.exception
    assert any("Trained and stored lab-tiny/v1" in s.value for s in at.success), [e.value for e in at.error]
    card = ModelRegistry(settings.anomaly.models_dir).cards()[0]
    assert card.ref == "lab-tiny/v1" and card.report is not None and card.report["scenarios"]
    assert card.data == [str((tiny / "train").resolve())] and card.data_hash.startswith("sha256:")
    # the report card of the new model: its figures, the recall by fault type as a table and a chart
    assert at.selectbox(key="lab.model.pick").value == "lab-tiny/v1"
    assert [m.label for m in at.metric][:2] == ["Event F1", "Recall"]
    recall = at.dataframe[1].value
    assert "spike" in recall.index and "recall" in recall.columns
    assert at.get("arrow_bar_chart") or at.get("vega_lite_chart")
    assert at.get("plotly_chart")  # the series with its label window and the model's alarms
    # deploy: audited first, as the signed-in analyst
    at.text_input(key="lab.deploy.reason").input("finds the tiny spike").run()
    at.button(key="lab.deploy.go").click().run()
    assert not at.exception, at.exception
    assert ModelRegistry(settings.anomaly.models_dir).deployed_ref() == "lab-tiny/v1"
    entries = [e for e in AuditRecord(settings.audit.path).entries() if e.action.startswith("model.")]
    assert [(e.actor, e.role, e.action, e.target) for e in entries] == [
        ("ann", "analyst", "model.train", "lab-tiny"),
        ("ann", "analyst", "model.deploy", "lab-tiny/v1"),
    ]
    assert entries[1].after["deployed"] == "lab-tiny/v1" and entries[1].reason == "finds the tiny spike"


def test_a_viewer_sees_the_page_but_cannot_train_or_deploy(lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    settings, tiny = lab
    _as(monkeypatch, "vic", "staple battery horse")
    historian = EmbeddedHistorian(settings.historian.path)  # what the stack's live scorer reported
    fields = {"state": "warming_up", "model": "default/v1", "message": "warming up: 4 of 10 samples"}
    historian.write([Record(LIVE_STATUS, {"site": settings.site.name}, fields, time.time_ns())])
    historian.close()
    at = AppTest.from_function(_lab_page, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Anomaly lab"
    assert any("warming up: 4 of 10 samples" in i.value and "default/v1" in i.value for i in at.info)
    keys = {b.key for b in at.button}
    assert not keys & {"lab.train.go", "lab.deploy.go", "lab.gen.go"}
    monkeypatch.setenv("LAB_TEST_SET", str(tiny))
    for forged in ("train", "deploy"):
        monkeypatch.setenv("LAB_TEST_FORGE", forged)
        at = AppTest.from_function(_lab_page, default_timeout=60).run()
        refused = [e.value for e in at.error]
        assert any(f"anomaly.{forged}" in e and "Not permitted" in e for e in refused), (refused, at.exception)
        assert not any(m.value == "acted" for m in at.markdown)
    assert ModelRegistry(settings.anomaly.models_dir).cards()[-1].name == "default"  # nothing trained
    assert ModelRegistry(settings.anomaly.models_dir).deployed_ref() is None
    assert not [e for e in AuditRecord(settings.audit.path).entries() if e.action.startswith("model.")]
