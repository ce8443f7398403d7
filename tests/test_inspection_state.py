"""Live equipment state: an alarm on a transformer's oil sensor puts the transformer itself in
alarm; equipment without data is unknown, never normal; a branch the twin's estimate no longer
carries is de-energised; transformers carry their IEC 60076-7 hot spot and ageing rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridverse.config import Settings
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Quality, Record, Source
from gridverse.schema import ALARM, TWIN_BRANCH, TWIN_BUS, TWIN_CYCLE
from gridverse.settings import load_settings
from inspection.state import AssetState, asset_states, live_states, monitoring_sensors
from tests.helpers import config_dir

T0 = 1_790_000_000_000_000_000


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Settings, EmbeddedHistorian]]:
    settings = load_settings(config_dir(tmp_path))
    historian = EmbeddedHistorian(settings.historian.path)
    yield settings, historian
    historian.close()


def _pt(s: Settings, device: str, name: str, value: float | None, q: Quality = Quality.GOOD) -> Record:
    return Point(s.site.name, "primary", "", device, name, Source.MODBUS, T0, value, quality=q).to_record()


def _alarm(s: Settings, device: str, point: str) -> Record:
    tags = {"site": s.site.name, "substation": "primary", "device": device, "point": point}
    return Record(ALARM, {**tags, "rule": "limit", "severity": "critical"}, {"active": 1, "message": "hot"}, T0)


def _branch(s: Settings, kind: str, index: int, pct: float) -> Record:
    return Record(TWIN_BRANCH, {"site": s.site.name, "kind": kind, "index": str(index)}, {"loading_percent": pct}, T0)


def test_the_oil_sensor_of_t2_is_found_as_its_monitor(env) -> None:
    settings, _ = env
    assert monitoring_sensors(settings.site, "primary", "T2") == ["T2-oil"]
    assert monitoring_sensors(settings.site, "primary", "F1") == []


def test_an_oil_sensor_alarm_puts_the_transformer_in_alarm(env) -> None:
    """The README's promise: when the T2 oil sensor alarms, the T2 transformer turns red."""
    settings, historian = env
    historian.write(
        [
            _pt(settings, "T1", "MMXU1.TotW", 5e6),
            _pt(settings, "T2", "MMXU1.TotW", 5e6),
            _pt(settings, "T1-oil", "YPTR1.TmpOil", 60.0),
            _pt(settings, "T2-oil", "YPTR1.TmpOil", 150.0),
            _branch(settings, "trafo", 0, 30.0),
            _branch(settings, "trafo", 1, 30.0),
            _alarm(settings, "T2-oil", "YPTR1.TmpOil"),
        ]
    )
    live = live_states(settings.site, settings.assets["primary"], historian, "primary", T0 - 1)
    t2 = live["PRIM/T2/YPTR1"]
    assert t2.state is AssetState.ALARM
    assert any("T2-oil/YPTR1.TmpOil" in r for r in t2.reasons)
    assert [a.device for a in t2.alarms] == ["T2-oil"]
    assert live["PRIM/T2/STMP1"].state is AssetState.ALARM
    assert live["PRIM/T1/YPTR1"].state is AssetState.NORMAL  # its neighbour is untouched
    assert live["PRIM/T2/TCTR1"].state is not AssetState.ALARM  # the oil sensor monitors the transformer only
    assert t2.values["T2-oil/YPTR1.TmpOil"] == 150.0  # the sensor's reading is one of its live values


def test_no_data_is_unknown_never_normal(env) -> None:
    settings, historian = env
    historian.write([_pt(settings, "F1", "XCBR1.Pos", 1.0), _pt(settings, "F3", "XCBR1.Pos", None, Quality.COMM_FAIL)])
    states = asset_states(settings.site, settings.assets["primary"], historian, "primary", T0 - 1)
    assert states["PRIM/Q01/XCBR1"] is AssetState.NORMAL
    assert states["PRIM/Q03/XCBR1"] is AssetState.UNKNOWN  # its device does not answer
    assert states["PRIM/Q05/XCBR1"] is AssetState.UNKNOWN  # nothing heard from it at all
    assert states["PRIM/T1/YPTR1"] is AssetState.UNKNOWN
    assert states["PRIM/BB1/BUSBAR"] is AssetState.UNKNOWN  # no device, and no twin estimate of its bus
    assert states["PRIM/Q01/TCTR1"] is AssetState.UNKNOWN  # its point (the current) was not heard


def test_a_branch_missing_from_the_estimate_is_deenergised(env) -> None:
    """F6 reads closed, but the twin's converged estimate carries no flow on its line 44."""
    settings, historian = env
    site = {"site": settings.site.name}
    historian.write(
        [
            _pt(settings, "F5", "XCBR1.Pos", 1.0),
            _pt(settings, "F6", "XCBR1.Pos", 1.0),
            _pt(settings, "F7", "XCBR1.Pos", 0.0),
            Record(TWIN_CYCLE, site, {"converged": 1, "measurements": 40}, T0),
            Record(TWIN_BUS, {**site, "bus": "1"}, {"vm_pu": 1.0, "va_degree": 0.0, "p_mw": 0.0, "q_mvar": 0.0}, T0),
            _branch(settings, "line", 36, 20.0),  # F5's line is in the estimate, 44 (F6) is not
        ]
    )
    states = asset_states(settings.site, settings.assets["primary"], historian, "primary", T0 - 1)
    assert states["PRIM/Q05/XCBR1"] is AssetState.NORMAL
    assert states["PRIM/Q06/XCBR1"] is AssetState.DEENERGISED
    assert states["PRIM/Q07/XCBR1"] is AssetState.OPEN  # open wins: that is why it carries nothing


def test_a_transformer_carries_its_hot_spot_and_ageing_rate(env) -> None:
    """T1 at 100 % with 70 °C measured top oil, ONAN (Hgr 26 K, y 1.3): θh = 70 + 26·1^1.3 = 96 °C,
    V = 2^((96 − 98)/6) = 0.794. T2 at 150 % with 110 °C: θh = 110 + 26·1.5^1.3 = 154.0 °C, over the
    120 °C limit: at least a warning, with the reason."""
    settings, historian = env
    historian.write(
        [
            _pt(settings, "T1", "MMXU1.TotW", 5e6),
            _pt(settings, "T2", "MMXU1.TotW", 5e6),
            _pt(settings, "T1-oil", "YPTR1.TmpOil", 70.0),
            _pt(settings, "T2-oil", "YPTR1.TmpOil", 110.0),
            _branch(settings, "trafo", 0, 100.0),
            _branch(settings, "trafo", 1, 150.0),
        ]
    )
    live = live_states(settings.site, settings.assets["primary"], historian, "primary", T0 - 1)
    t1, t2 = live["PRIM/T1/YPTR1"], live["PRIM/T2/YPTR1"]
    assert t1.hot_spot_c == pytest.approx(96.0)
    assert t1.ageing_rate == pytest.approx(0.7937, abs=1e-4)
    assert t2.hot_spot_c == pytest.approx(154.04, abs=0.01)
    assert t2.state is AssetState.OVERLOADED  # 150 % is overloaded, which outranks the hot-spot warning
    assert any("hot spot 154" in r for r in t2.reasons)


def test_a_render_carries_the_time_it_shows(tmp_path: Path) -> None:
    """The defect: renders had no timestamp, so a stale picture looked current."""
    from PIL import Image

    from inspection.state import read_render_stamp, stamp_render

    png = tmp_path / "primary.png"
    Image.new("RGB", (320, 200), (200, 220, 240)).save(png)
    stamp_render(png, {"PRIM/T2/YPTR1": AssetState.ALARM}, T0)
    stamp = read_render_stamp(png)
    assert stamp is not None and stamp["rendered_ns"] == T0 and stamp["rendered"].startswith("2026-09-21T")
    assert stamp["states"] == {"PRIM/T2/YPTR1": "alarm"}
    corner = Image.open(png).convert("RGB").crop((6, 178, 200, 196))
    assert len(set(corner.getdata())) > 1  # the time is drawn on the image itself
    assert read_render_stamp(tmp_path / "other.png") is None
