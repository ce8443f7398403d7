"""Findings flow back: a clamp-meter reading becomes a manual historian point with its σ that
the next twin cycle uses as a measurement; failed checks become labels the anomaly lab reads;
every finding and step completion is in the audit record, which still verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomaly.dataset import read_labels
from fieldsim.grid import true_value
from gridmodel.twin import TWIN_RESIDUAL, Twin
from gridverse.audit import open_audit, verify_record
from gridverse.config import Measurand
from gridverse.elements import ElementKind, ElementRef
from gridverse.points import TELEMETRY
from inspection.checklists import READINGS
from inspection.findings import Finding, FindingError, record_finding
from tests.test_twin import T0, Site


def test_photo_hash_helper_is_sha256() -> None:
    from inspection.findings import photo_hash as h

    assert h(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_clamp_meter_reading_is_used_by_the_next_twin_cycle(tmp_path: Path) -> None:
    """A clamp-meter current on the incoming cable of secondary substation ss20 (line 16, which
    no device meters) lands in the historian as source `manual` with its σ (0.5 A + 0.7 %), and
    the twin's next cycle estimates with it: one telemetered measurement more, an `i`
    measurement of line 16's `to` end, its residual stored under `manual:MMXU1.A`."""
    site = Site(tmp_path)
    site.write_points(T0)
    amps = true_value(site.truth, ElementRef(kind=ElementKind.LINE, index=16, side="to"), Measurand.I)
    twin = Twin(site.settings, site.historian)
    before = twin.cycle(T0 + 1_000_000)
    assert before.converged, before.error
    result = record_finding(
        site.settings,
        site.historian,
        Finding("ss20", "SS20/MV/K01/ZCAB1", checks={"sealing": "pass"}, readings={"current_a": amps}),
        actor="tech1",
        role="technician",
        time_ns=T0 + 2_000_000,
    )
    assert result.failed == []
    tags = {"site": site.settings.site.name, "point": "MMXU1.A", "source": "manual"}
    stored = site.historian.latest(TELEMETRY, tags=tags)
    assert len(stored) == 1 and stored[0].fields["value"] == pytest.approx(amps)
    assert stored[0].fields["sigma"] == pytest.approx(READINGS["current_a"].sigma(amps))
    after = twin.cycle(T0 + 3_000_000)
    assert after.converged, after.error
    assert after.measurements == before.measurements + 1  # one telemetered measurement more: the reading
    used = [r for r in after.report.results if r.measurement.point == "manual:MMXU1.A"]
    assert len(used) == 1
    m = used[0].measurement
    assert (m.meas_type, m.element_type, m.element, m.side) == ("i", "line", 16, "to")
    assert m.value == pytest.approx(amps / 1e3)
    assert m.std_dev == pytest.approx(READINGS["current_a"].sigma(amps) / 1e3)
    assert used[0].estimated == pytest.approx(amps / 1e3, rel=0.05)  # the estimate agrees with the reading
    residual = site.historian.latest(TWIN_RESIDUAL, tags={"site": site.settings.site.name, "point": "manual:MMXU1.A"})
    assert residual and float(residual[0].fields["measured"]) == pytest.approx(amps / 1e3)


def test_a_reading_where_the_ied_meters_p_and_q_is_set_aside_with_the_reason(tmp_path: Path) -> None:
    """T2's LV end is metered for P and Q by its IED: the estimator sets a current there aside
    (its own rule), and says so; the reading is still in the historian for the detectors."""
    site = Site(tmp_path)
    site.write_points(T0)
    amps = true_value(site.truth, ElementRef(kind=ElementKind.TRAFO, index=1, side="lv"), Measurand.I)
    record_finding(
        site.settings,
        site.historian,
        Finding("primary", "PRIM/T2/YPTR1", readings={"current_a": amps}),
        actor="tech1",
        role="technician",
        time_ns=T0,
    )
    result = Twin(site.settings, site.historian).cycle(T0 + 1_000_000)
    assert result.converged, result.error
    skipped = {m.point: why for m, why in result.estimate.skipped if m.device == "T2"}
    assert "metered" in skipped["manual:MMXU1.A"]


def test_failed_checks_become_labels_and_everything_is_audited(tmp_path: Path) -> None:
    """A bushing that fails, 20 K over the next phase on thermography (NETA: major) and SF6 at
    5.1 bar on a breaker whose alarm level is 5.2 (fails, lockout 5.0 not reached): three labels
    in the lab's labels.csv format; both findings and both step completions audited in order."""
    site = Site(tmp_path)
    labels = tmp_path / "labels.csv"
    photo = "a" * 64
    t = record_finding(
        site.settings,
        site.historian,
        Finding(
            "primary",
            "PRIM/T2/YPTR1",
            checks={"bushings": "fail", "oil_level": "pass"},
            readings={"thermography_dk": 20.0, "top_oil_c": 71.0},
            notes="oil on HV bushing 2",
            photos=[photo],
            step=1,
        ),
        actor="tech1",
        role="technician",
        time_ns=T0,
        labels_path=labels,
    )
    assert set(t.failed) == {"bushings", "thermography"}
    assert t.grades == {"thermography": "major", "top_oil": "ok"}
    b = record_finding(
        site.settings,
        site.historian,
        Finding("primary", "PRIM/Q06/XCBR1", readings={"sf6_pressure_bar": 5.1, "operation_count": 1234}, step=2),
        actor="tech1",
        role="technician",
        time_ns=T0 + 1,
        labels_path=labels,
    )
    assert b.failed == ["sf6_pressure"] and b.grades["sf6_pressure"] == "probable deficiency"
    frame = read_labels(labels)  # the anomaly lab's own reader accepts the file
    assert sorted(frame.type) == [
        "inspection.breaker.sf6_pressure",
        "inspection.transformer.bushings",
        "inspection.transformer.thermography",
    ]
    row = frame[frame.type == "inspection.transformer.bushings"].iloc[0]
    assert row.element_type == "trafo" and int(row.element) == 1
    # the top-oil reading is filed under the sensor that monitors T2, the SF6 pressure in pascals
    oil = site.historian.latest(TELEMETRY, tags={"device": "T2-oil", "point": "YPTR1.TmpOil", "source": "manual"})
    assert oil and oil[0].fields["value"] == 71.0
    sf6 = site.historian.latest(TELEMETRY, tags={"device": "F6", "point": "SIMG1.Pres", "source": "manual"})
    assert sf6 and sf6[0].fields["value"] == pytest.approx(5.1e5)
    entries = open_audit(site.settings).entries()
    assert [(e.action, e.target) for e in entries] == [
        ("inspect.finding", "PRIM/T2/YPTR1"),
        ("inspect.step", "PRIM/T2/YPTR1"),
        ("inspect.finding", "PRIM/Q06/XCBR1"),
        ("inspect.step", "PRIM/Q06/XCBR1"),
    ]
    assert entries[0].after["photos"] == [photo] and entries[0].after["notes"] == "oil on HV bushing 2"
    assert entries[0].actor == "tech1" and entries[0].role == "technician"
    assert verify_record(site.settings.audit.path).ok


def test_a_finding_that_does_not_fit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    site = Site(tmp_path)
    cases = [
        (Finding("primary", "PRIM/T2/YPTR1", checks={"sf6_pressure": "pass"}), "not on the transformer checklist"),
        (Finding("primary", "PRIM/T2/YPTR1", checks={"oil_level": "ok"}), "pass, fail, n/a"),
        (Finding("primary", "PRIM/T2/YPTR1", readings={"sf6_pressure_bar": 6.0}), "not taken on a transformer"),
        (Finding("primary", "PRIM/T2/YPTR1", readings={"top_oil_c": float("nan")}), "not a finite number"),
        (Finding("primary", "PRIM/T2/YPTR1", photos=["abc"]), "SHA-256"),
        (Finding("primary", "PRIM/T9/YPTR1"), "no equipment"),
    ]
    for finding, message in cases:
        with pytest.raises(FindingError, match=message):
            record_finding(site.settings, site.historian, finding, actor="tech1", role="technician", time_ns=T0)
    assert open_audit(site.settings).entries() == []
    assert site.historian.latest(TELEMETRY, tags={"source": "manual"}) == []
