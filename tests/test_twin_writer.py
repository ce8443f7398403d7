"""The twin writes its state with a deadband (gridmodel/writer.py): fewer rows per cycle, and a
reader that takes the newest row of each bus and branch in [state_since_ns, t] still gets the
whole state, each value within the deadband of the cycle's estimate, and nothing de-energised.
Real embedded historian (SQLite) throughout; the estimates come from the golden cases."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from gridmodel.estimator import Estimate, EstimatorKind, make_estimator
from gridmodel.measurements import Measurement
from gridmodel.writer import STATE_SINCE_FIELD, Deadband, StateWriter
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Record
from gridverse.schema import TWIN_BRANCH, TWIN_BUS, TWIN_CYCLE
from tests.test_twin import Site

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_790_000_000_000_000_000
BAND = Deadband(vm_pu=1e-3, va_degree=0.1, power_mw=2e-3, loading_percent=1.0)


@pytest.fixture(scope="module")
def estimate() -> Estimate:
    case = json.loads((GOLDEN / "feeder_trafo" / "case.json").read_text())
    net = pp.from_json(str(GOLDEN / "feeder_trafo" / "network.json"))
    return make_estimator(EstimatorKind.SPARSE).estimate(net, [Measurement(**m) for m in case["measurements"]])


def _store(historian: EmbeddedHistorian, writer: StateWriter, est: Estimate, t: int) -> int:
    rows, since = writer.rows(est, t)
    historian.write([Record(TWIN_CYCLE, {"site": "s"}, {STATE_SINCE_FIELD: since}, t), *rows])
    return len(rows)


def _read_state(historian: EmbeddedHistorian, t: int) -> tuple[dict[int, dict], dict[tuple[str, int], float]]:
    """What a reader gets for the cycle at t, following the contract in gridmodel/writer.py."""
    cycle = historian.latest(TWIN_CYCLE, tags={"site": "s"}, start_ns=t, end_ns=t)[0]
    since = int(cycle.fields[STATE_SINCE_FIELD])
    buses = {int(r.tags["bus"]): r.fields for r in historian.latest(TWIN_BUS, start_ns=since, end_ns=t)}
    branches = {
        (r.tags["kind"], int(r.tags["index"])): float(r.fields["loading_percent"])
        for r in historian.latest(TWIN_BRANCH, start_ns=since, end_ns=t)
    }
    return buses, branches


def _moved(est: Estimate, bus_shift: dict[int, float]) -> Estimate:
    res_bus = est.res_bus.copy()
    for bus, dv in bus_shift.items():
        res_bus.at[bus, "vm_pu"] += dv
    return replace(est, res_bus=res_bus)


def _assert_within_band(est: Estimate, buses: dict[int, dict], branches: dict[tuple[str, int], float]) -> None:
    expected_buses = set(est.res_bus.dropna().index.tolist())
    assert set(buses) == expected_buses
    for bus, fields in buses.items():
        assert abs(fields["vm_pu"] - est.res_bus.at[bus, "vm_pu"]) <= BAND.vm_pu
        assert abs(fields["va_degree"] - est.res_bus.at[bus, "va_degree"]) <= BAND.va_degree
        assert abs(fields["p_mw"] - est.res_bus.at[bus, "p_mw"]) <= BAND.power_mw
    for kind, table in (("line", est.res_line), ("trafo", est.res_trafo)):
        loading = table.loading_percent.dropna()
        assert {i for k, i in branches if k == kind} == set(loading.index.tolist())
        for idx, value in loading.items():
            assert abs(branches[(kind, idx)] - value) <= BAND.loading_percent


def test_small_moves_are_not_written_yet_every_bus_is_read_within_the_deadband(
    tmp_path: Path, estimate: Estimate
) -> None:
    historian = EmbeddedHistorian(tmp_path / "h.db")
    writer = StateWriter("s", BAND, refresh_cycles=1000)
    everything = _store(historian, writer, estimate, T0)
    assert writer.last_full
    buses = estimate.res_bus.dropna().index.tolist()
    assert len(buses) >= 6
    quiet, loud = buses[-1], buses[-2]  # position 5: not due for refresh in the first 1000 cycles but the 5th
    later = _moved(estimate, {quiet: 0.4 * BAND.vm_pu, loud: 3 * BAND.vm_pu})
    written = _store(historian, writer, later, T0 + 1)
    assert not writer.last_full and written < everything
    state, branches = _read_state(historian, T0 + 1)
    _assert_within_band(later, state, branches)
    assert state[loud]["vm_pu"] == pytest.approx(later.res_bus.at[loud, "vm_pu"])  # rewritten
    assert state[quiet]["vm_pu"] == pytest.approx(estimate.res_bus.at[quiet, "vm_pu"])  # within the band: kept
    # drift adds up against the value last written, not the last estimate
    drifted = _moved(later, {quiet: 0.4 * BAND.vm_pu})
    _store(historian, writer, drifted, T0 + 2)
    _assert_within_band(drifted, *_read_state(historian, T0 + 2))
    drifted_more = _moved(drifted, {quiet: 0.4 * BAND.vm_pu})
    _store(historian, writer, drifted_more, T0 + 3)
    state, branches = _read_state(historian, T0 + 3)
    _assert_within_band(drifted_more, state, branches)
    assert state[quiet]["vm_pu"] == pytest.approx(drifted_more.res_bus.at[quiet, "vm_pu"])


def test_every_row_is_rewritten_within_the_refresh_cycles(tmp_path: Path, estimate: Estimate) -> None:
    historian = EmbeddedHistorian(tmp_path / "h.db")
    writer = StateWriter("s", BAND, refresh_cycles=3)
    total = _store(historian, writer, estimate, T0)
    counts = [_store(historian, writer, estimate, T0 + k) for k in (1, 2, 3)]  # nothing moves
    assert sum(counts) == total and all(0 < c < total for c in counts)  # each a third, no spike
    cycle = historian.latest(TWIN_CYCLE, tags={"site": "s"}, start_ns=T0 + 3, end_ns=T0 + 3)[0]
    assert int(cycle.fields[STATE_SINCE_FIELD]) == T0 + 1  # no row of the first cycle is still needed
    _assert_within_band(estimate, *_read_state(historian, T0 + 3))


def test_a_deenergised_bus_writes_everything_and_leaves_the_window(tmp_path: Path, estimate: Estimate) -> None:
    historian = EmbeddedHistorian(tmp_path / "h.db")
    writer = StateWriter("s", BAND, refresh_cycles=1000)
    _store(historian, writer, estimate, T0)
    gone = estimate.res_bus.dropna().index[-1]
    res_bus = estimate.res_bus.copy()
    res_bus.loc[gone] = np.nan
    outage = replace(estimate, res_bus=res_bus)
    _store(historian, writer, outage, T0 + 1)
    assert writer.last_full
    state, branches = _read_state(historian, T0 + 1)
    assert gone not in state  # its old row is before the window: not shown as current
    _assert_within_band(outage, state, branches)


def test_a_failed_write_makes_the_next_cycle_write_everything(tmp_path: Path, estimate: Estimate) -> None:
    writer = StateWriter("s", BAND, refresh_cycles=1000)
    rows, _ = writer.rows(estimate, T0)
    assert writer.last_full
    writer.rows(estimate, T0 + 1)
    assert not writer.last_full
    writer.forget()  # what the twin does when the historian refused the rows
    again, since = writer.rows(estimate, T0 + 2)
    assert writer.last_full and len(again) == len(rows) and since == T0 + 2


def test_a_refresh_of_zero_cycles_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="refresh_cycles"):
        StateWriter("s", BAND, refresh_cycles=0)


def test_live_twin_cycles_write_fewer_rows_and_the_panorama_still_reads_every_bus(tmp_path: Path) -> None:
    """Two live cycles of the real twin on the demo site: the second writes only what moved (or is
    due), and the panorama's reader (ui/panorama/live.py) finds every bus of the estimate."""
    from gridmodel.twin import Twin
    from ui.panorama.layout import build_layout
    from ui.panorama.live import read_snapshot

    site = Site(tmp_path)
    twin = Twin(site.settings, site.historian)
    name = site.settings.site.name
    counts = []
    for _ in range(2):
        site.write_points(time.time_ns())
        result = twin.cycle()
        assert result.converged, result.error
        cycle = site.historian.latest(TWIN_CYCLE, tags={"site": name})[0]
        counts.append(int(cycle.fields["state_rows"]))
    assert counts[1] < counts[0]
    assert int(cycle.fields[STATE_SINCE_FIELD]) < cycle.time_ns  # older rows are still current
    est = result.estimate
    assert est is not None
    layout = build_layout(twin.net)
    snap = read_snapshot(site.settings, site.historian, twin.net, layout, now_ns=cycle.time_ns)
    assert snap.fresh and snap.estimate_ns == cycle.time_ns, snap.problem
    vm = snap.state.vm_pu
    expected = est.res_bus.vm_pu.reindex(layout.bus).to_numpy()
    live = np.isfinite(expected)
    assert np.isfinite(vm[live]).all() and np.isnan(vm[~live]).all()
    assert np.abs(vm[live] - expected[live]).max() <= site.settings.twin.state_deadband_vm_pu
