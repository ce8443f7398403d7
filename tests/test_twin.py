"""The live twin on the demo site: points in the historian → topology, estimate, bad data,
observability → results, suspect flags and alarms back in the historian; replay; N-1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandapower as pp
import pytest

from anomaly.alarms import AlarmBook
from anomaly.service import Detectors
from fieldsim.grid import GridSimulator, true_value
from gridmodel.contingency import n_minus_1, what_if
from gridmodel.network import load_grid
from gridmodel.twin import TWIN_BUS, TWIN_RESIDUAL, Twin
from gridverse.cli import main
from gridverse.config import Measurand, Settings
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import TELEMETRY, Point, Quality, Record, Source
from gridverse.settings import load_settings
from tests.helpers import config_dir

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_790_000_000_000_000_000


class Site:
    """The demo configuration, an embedded historian and the field simulator's truth."""

    def __init__(self, tmp: Path) -> None:
        self.config = config_dir(tmp)
        self.settings: Settings = load_settings(self.config)
        self.historian = EmbeddedHistorian(self.settings.historian.path)
        self.sim = GridSimulator(load_grid(self.settings.site.network), self.settings.simulator)
        self.truth = self.sim.step(0.0)

    def write_points(self, t_ns: int, *, override: dict | None = None, skip_device: str = "") -> None:
        """Every configured point as a perfect instrument reads it, plus the simulator's clock."""
        override = override or {}
        records = [
            Record(
                "sim_clock", {"site": self.settings.site.name}, {"sim_time_ns": int(self.truth.sim_time.value)}, t_ns
            )
        ]
        for sub in self.settings.site.substations:
            for dev in sub.devices:
                if dev.name == skip_device or dev.element is None:
                    continue
                for p in self.settings.profiles[dev.profile].points:
                    if p.measurand in (Measurand.TAP, Measurand.TEMPERATURE, Measurand.OTHER):
                        continue
                    value = override.get((dev.name, p.name), true_value(self.truth, dev.element, p.measurand))
                    point = Point(
                        self.settings.site.name,
                        sub.name,
                        dev.bay,
                        dev.name,
                        p.name,
                        Source.MODBUS,
                        t_ns,
                        float(value),
                        unit=p.unit,
                    )
                    records.append(point.to_record())
        self.historian.write(records)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.mark.parametrize("engine", ["sparse", "pandapower"])
def test_cycle_estimates_the_truth_and_stores_it(site: Site, engine: str) -> None:
    site.write_points(T0)
    settings = site.settings.model_copy(update={"twin": site.settings.twin.model_copy(update={"estimator": engine})})
    twin = Twin(settings, site.historian)
    result = twin.cycle(T0)
    assert result.converged, result.error
    est = result.estimate.res_bus.vm_pu.dropna()
    assert (est - site.truth.res_bus.vm_pu.reindex(est.index)).abs().max() < 0.003
    stored = site.historian.latest(TWIN_BUS, tags={"site": site.settings.site.name}, start_ns=T0, end_ns=T0)
    assert len(stored) == len(est)
    assert result.report is not None and result.report.suspects == []
    cycle = site.historian.latest("twin_cycle", tags={"site": site.settings.site.name})[0]
    assert cycle.fields["engine"] == engine and int(cycle.fields["chi2_alarm"]) == 0


def test_open_breaker_takes_its_line_out_of_the_model(site: Site) -> None:
    site.sim.set_line_outage(44, True)  # feeder F6's head: its breaker reads open
    site.truth = site.sim.step(1.0)
    site.write_points(T0)
    twin = Twin(site.settings, site.historian)
    result = twin.cycle(T0)
    assert result.converged, result.error
    assert not twin.net.line.at[44, "in_service"]
    assert result.estimate.res_line.loading_percent.isna()[44]
    assert result.estimate.res_bus.vm_pu.isna().sum() > 0  # the feeder behind it is dead
    est = result.estimate.res_bus.vm_pu.dropna()
    assert (est - site.truth.res_bus.vm_pu.reindex(est.index)).abs().max() < 0.003


def test_a_wrong_reading_is_flagged_in_the_telemetry_and_alarmed(site: Site) -> None:
    bus_kv = site.sim.net.bus.vn_kv[45] * 1e3
    true_v = site.truth.res_bus.vm_pu[45] * bus_kv
    site.write_points(T0, override={("RTU45", "MMXU1.PPV"): true_v * 1.06})  # +6 %: a wrong VT ratio
    twin = Twin(site.settings, site.historian)
    result = twin.cycle(T0)
    assert result.converged, result.error
    assert [s.measurement.label for s in result.report.suspects] == ["RTU45/MMXU1.PPV"]
    site_tag = {"site": site.settings.site.name}
    stored = site.historian.latest(TELEMETRY, tags={**site_tag, "device": "RTU45", "point": "MMXU1.PPV"})
    assert stored[0].fields["quality"] == Quality.SUSPECT.value
    assert stored[0].fields["value"] == pytest.approx(true_v * 1.06)  # the reading itself is kept
    residual = site.historian.latest(TWIN_RESIDUAL, tags={**site_tag, "device": "RTU45", "point": "MMXU1.PPV"})
    assert int(residual[0].fields["suspect"]) == 1 and abs(float(residual[0].fields["normalised"])) > 4
    book = AlarmBook.of(site.settings, site.historian, None)
    Detectors(site.settings, site.historian, book).evaluate()
    assert ("residual", "RTU45", "MMXU1.PPV") in book.active
    # the state is estimated without the bad reading: bus 45 stays close to the truth
    assert result.estimate.res_bus.vm_pu[45] == pytest.approx(site.truth.res_bus.vm_pu[45], abs=0.005)


def test_a_device_that_drops_out_is_reported_with_its_remedy(site: Site) -> None:
    twin = Twin(site.settings, site.historian)
    site.write_points(time.time_ns())
    assert twin.cycle().converged  # live cycles keep track of which devices report
    time.sleep(0.01)
    site.historian.close()
    site.historian = twin.historian = EmbeddedHistorian(Path(str(site.settings.historian.path) + ".later"))
    site.write_points(time.time_ns(), skip_device="F6")  # feeder F6's IED (line 44) stops answering
    result = twin.cycle()
    assert result.converged  # pseudo-measurements carry the feeder
    notes = " ".join(result.observability_notes)
    assert "F6 lost" in notes and "48" in notes  # line 44's far end is no longer observed
    assert "P flow line 44" in notes  # the meter that would restore it
    assert 48 in result.unobservable_buses


def test_replay_command_reestimates_a_past_moment(site: Site, tmp_path: Path, capsys) -> None:
    site.write_points(T0)
    site.historian.close()
    out = tmp_path / "replay.json"
    assert main(["--config", str(site.config), "twin", "replay", "--at", str(T0), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["converged"] and report["suspects"] == []
    assert report["engine"] == "sparse" and report["telemetered_measurements"] > 30
    assert main(["--config", str(site.config), "twin", "replay", "--at", "2020-01-01T00:00:00Z"]) == 1
    assert "holds no telemetry" in capsys.readouterr().err


def test_n1_ranks_outages_and_finds_the_refeeding_switch() -> None:
    net = pp.from_json(str(GOLDEN / "ring_open_point" / "network.json"))
    before = net.switch.closed.copy()
    frame, results, seconds = n_minus_1(net)
    assert (net.switch.closed == before).all()  # the caller's network is untouched
    assert seconds > 0 and len(frame) == len(net.line)
    worst = results[0]
    assert worst.outage == "line 0" and worst.summary.unsupplied_mw == pytest.approx(1.6)
    assert worst.restored_by == "close switch 1" and worst.restored.unsupplied_mw == 0
    assert list(frame.severity) == sorted(frame.severity, reverse=True)
    closed_ring = what_if(net, close_switches=[1])
    assert closed_ring.unsupplied_mw == 0 and not net.switch.at[1, "closed"]


def test_replay_without_store_reports_the_violations_it_finds(site: Site) -> None:
    """Violations come with the estimate, not with storing it (they were empty without --store)."""
    from gridmodel.replay import replay

    site.write_points(T0)
    site.historian.close()
    # a band no real feeder stays inside: every bus violates it
    narrow = site.settings.anomaly.model_copy(update={"voltage_band_pu": (0.9, 0.91)})
    settings = site.settings.model_copy(update={"anomaly": narrow})
    report = replay(settings, T0, store=False)
    assert report["converged"]
    assert any(v.startswith("bus ") and "voltage" in v for v in report["violations"])
    stored = EmbeddedHistorian(settings.historian.path)
    try:
        assert stored.count("twin_violation") == 0  # nothing written without --store
    finally:
        stored.close()
