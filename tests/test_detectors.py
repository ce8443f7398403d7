"""Detectors are plugins found by a registry (adding one is adding a file); the five rules keep
their behaviour; the alarm book can be read from another thread while detectors update it."""

from __future__ import annotations

import ast
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

import anomaly.detectors as detectors_pkg
from anomaly.alarms import AlarmBook
from anomaly.config import AnomalyConfig, LimitRule
from anomaly.detectors import (
    Detector,
    DetectorError,
    Residual,
    Snapshot,
    Violation,
    all_detectors,
    detector_classes,
    run_detectors,
)
from anomaly.detectors.base import _REGISTRY
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Quality, Source
from gridverse.schema import ALARM, Alarm, AlarmRule, Severity
from gridverse.settings import REPO_ROOT, load_settings
from tests.helpers import config_dir

UPDATES = 40
RULES = {AlarmRule.LIMIT, AlarmRule.RESIDUAL, AlarmRule.VIOLATION, AlarmRule.COMM_FAIL, AlarmRule.STUCK}


def _point(device: str, name: str, value: float | None, quality: Quality = Quality.GOOD, unit: str = "") -> Point:
    return Point("demo", "PRIM", "", device, name, Source.MODBUS, 1, value, quality=quality, unit=unit)


def _only(rule: str, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
    return [a for a in run_detectors(snapshot, config) if a.rule == rule]


def test_registry_finds_one_detector_per_rule_file() -> None:
    classes = detector_classes()
    assert set(classes) == RULES
    files = {p.stem for p in Path(detectors_pkg.__file__).parent.glob("*.py")} - {"__init__", "base"}
    assert {c.__module__.rsplit(".", 1)[1] for c in classes.values()} == files
    assert all(isinstance(d, Detector) for d in all_detectors())


def test_adding_a_file_adds_a_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new module in the package (here a second folder on its search path) is found and run."""
    (tmp_path / "flatline.py").write_text(
        "from typing import ClassVar\n"
        "from anomaly.detectors.base import register\n"
        "from gridverse.schema import Alarm, Severity\n"
        "@register\n"
        "class Flatline:\n"
        "    name: ClassVar[str] = 'flatline'\n"
        "    def evaluate(self, snapshot, config):\n"
        "        return [Alarm(self.name, '', p.device, p.name, Severity.INFO, 'flat', p.value)\n"
        "                for p in snapshot.points if p.value == 0.0]\n"
    )
    monkeypatch.setattr(detectors_pkg, "__path__", [*detectors_pkg.__path__, str(tmp_path)])
    try:
        classes = detector_classes()
        assert "flatline" in classes and set(classes) == RULES | {"flatline"}
        found = run_detectors(
            Snapshot([_point("F1", "MMXU1.TotW", 0.0)]), AnomalyConfig(), tuple(c() for c in classes.values())
        )
        assert [(a.rule, a.device, a.severity) for a in found] == [("flatline", "F1", Severity.INFO)]
    finally:
        _REGISTRY.pop("flatline", None)
        sys.modules.pop("anomaly.detectors.flatline", None)
        all_detectors.cache_clear()


def test_a_failing_detector_is_named_in_the_error() -> None:
    class Broken:
        name: ClassVar[str] = "broken"

        def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
            raise KeyError("bus")

    with pytest.raises(DetectorError, match=r"detector 'broken' .*Broken.* failed: KeyError\('bus'\)"):
        run_detectors(Snapshot(), AnomalyConfig(), (Broken(),))


def test_two_detectors_with_one_name_are_refused() -> None:
    from anomaly.detectors.base import register

    class Imposter:
        name = AlarmRule.LIMIT

        def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]:
            return []

    detector_classes()
    with pytest.raises(ValueError, match="two detectors are named 'limit'"):
        register(Imposter)


def test_limit_rule_names_the_point_value_and_bound_with_the_configured_severity() -> None:
    config = AnomalyConfig(limits=[LimitRule(point="YPTR1.TmpOil", high=95.0, low=-20, severity=Severity.CRITICAL)])
    points = [
        _point("T2-oil", "YPTR1.TmpOil", 151.04, unit="degC"),
        _point("T1-oil", "YPTR1.TmpOil", 60.0, unit="degC"),
        _point("T3-oil", "YPTR1.TmpOil", -30.0),
        _point("T4-oil", "YPTR1.TmpOil", None, Quality.COMM_FAIL),
        _point("T5-oil", "MMXU1.TotW", 1e9),
    ]
    found = _only(AlarmRule.LIMIT, Snapshot(points), config)
    assert [(a.device, a.message, a.severity, a.value) for a in found] == [
        ("T2-oil", "YPTR1.TmpOil = 151.0 degC above 95.0", Severity.CRITICAL, 151.04),
        ("T3-oil", "YPTR1.TmpOil = -30.0 below -20.0", Severity.CRITICAL, -30.0),
    ]
    assert found[0].substation == "PRIM" and found[0].key == ("limit", "T2-oil", "YPTR1.TmpOil")


def test_comm_fail_rule_raises_one_alarm_per_silent_device() -> None:
    points = [
        _point("RTU1", "MMXU1.TotW", None, Quality.COMM_FAIL),
        _point("RTU1", "MMXU1.TotVAr", None, Quality.COMM_FAIL),
        _point("RTU2", "MMXU1.TotW", None, Quality.INVALID),
        _point("RTU3", "MMXU1.TotW", 3.0),
    ]
    found = _only(AlarmRule.COMM_FAIL, Snapshot(points), AnomalyConfig())
    assert [(a.device, a.point, a.severity, a.message) for a in found] == [
        ("RTU1", "*", Severity.WARNING, "device RTU1 is not answering")
    ]


def test_stuck_rule_needs_n_identical_analogue_readings() -> None:
    config = AnomalyConfig(stuck_after_samples=4)
    history = {
        ("RTU1", "MMXU1.TotW"): [9.0, 1.5, 1.5, 1.5, 1.5],  # stuck for the last 4
        ("RTU1", "MMXU1.TotVAr"): [1.5, 1.5, 1.5],  # too few samples yet
        ("RTU1", "MMXU1.A"): [1.0, 1.0, 1.0, 1.1],  # moving
        ("RTU1", "XCBR1.Pos"): [1.0] * 6,  # a breaker holds its position
        ("RTU1", "YLTC1.TapPos"): [3.0] * 6,  # so does a tap changer
    }
    found = _only(AlarmRule.STUCK, Snapshot(history=history, substations={"RTU1": "PRIM"}), config)
    assert [(a.substation, a.device, a.point, a.message, a.value) for a in found] == [
        ("PRIM", "RTU1", "MMXU1.TotW", "MMXU1.TotW has read 1.5 for 4 samples while it should have moved", 1.5)
    ]


def test_stuck_rule_is_quiet_on_a_lightly_loaded_feeder_quantised_at_a_tenth_of_an_amp() -> None:
    """Issue 11: in a healthy demo the stuck rule fired 17 times in 10 minutes on feeders whose
    current reads 0.3 A in 0.1 A steps while their (well-resolved) power moved by its noise. A
    current that should have moved by only a fraction of a step is not stuck; one that should have
    moved by several steps, or a frozen power reading, is."""
    config = AnomalyConfig(stuck_after_samples=8)
    noisy_p = [5200.0, 5188.0, 5213.0, 5195.0, 5206.0, 5191.0, 5209.0, 5199.0]  # ±0.5 % noise, W
    noisy_q = [1490.0, 1495.0, 1487.0, 1493.0, 1489.0, 1496.0, 1491.0, 1494.0]
    history = {
        ("F2", "MMXU1.A"): [0.3] * 8,  # 0.15 A of true current, read in 0.1 A steps: holds still
        ("F2", "MMXU1.TotW"): noisy_p,
        ("F2", "MMXU1.TotVAr"): noisy_q,
        ("F3", "MMXU1.A"): [80.0] * 8,  # 80 A should move by ~0.4 A (4 steps) with its power: stuck
        ("F3", "MMXU1.TotW"): noisy_p,
        ("F3", "MMXU1.TotVAr"): noisy_q,
        # from a healthy demo run: P fell 10 % while Q rose, |S| (so the current) moved 0.5 %
        ("F7", "MMXU1.A"): [3.2] * 8,
        ("F7", "MMXU1.TotW"): [68100.0, 69440.0, 67135.0, 67135.0, 65241.0, 63609.0, 63043.0, 62729.0],
        ("F7", "MMXU1.TotVAr"): [-90559.0, -90403.0, -91643.0, -91643.0, -92431.0, -93560.0, -94213.0, -94186.0],
        ("F4", "MMXU1.A"): [0.0] * 8,  # a dead feeder reads zero on purpose
        ("F4", "MMXU1.TotW"): [0.0] * 8,
        ("F5", "MMXU1.TotW"): [7123.0] * 8,  # the power itself frozen while the current moves
        ("F5", "MMXU1.A"): [40.1, 40.3, 40.0, 40.2, 40.4, 40.1, 40.2, 40.3],
        ("F6", "MMXU1.A"): [0.4] * 8,  # the whole bay frozen: a small current is not evidence...
        ("F6", "MMXU1.TotW"): [9001.0] * 8,  # ...but thousands of 1 W steps held exactly are
    }
    feeders = ("F2", "F3", "F4", "F5", "F6", "F7")
    resolution = {(f, "MMXU1.A"): 0.1 for f in feeders}
    resolution |= {(f, p): 1.0 for f in feeders for p in ("MMXU1.TotW", "MMXU1.TotVAr")}
    snapshot = Snapshot(history=history, resolution=resolution)
    found = _only(AlarmRule.STUCK, snapshot, config)
    assert sorted((a.device, a.point) for a in found) == [("F3", "MMXU1.A"), ("F5", "MMXU1.TotW"), ("F6", "MMXU1.TotW")]


def test_stuck_rule_takes_each_readings_resolution_from_its_device_profile(tmp_path: Path) -> None:
    settings = load_settings(config_dir(tmp_path), environ={})
    snapshot = Snapshot.of(settings)
    assert snapshot.resolution[("F2", "MMXU1.A")] == pytest.approx(0.1)  # feeder_ied: u16, scale 0.1
    assert snapshot.resolution[("F2", "MMXU1.TotW")] == pytest.approx(1.0)
    assert ("T1", "MMXU1.PPV") not in snapshot.resolution  # f32: continuous


def test_limit_rule_holds_until_the_value_is_back_by_its_deadband() -> None:
    """Hysteresis: raised above 85, the alarm holds at 84 (inside 2 % of 85) and clears at 83."""
    config = AnomalyConfig(limits=[LimitRule(point="YPTR1.TmpOil", high=85.0, severity=Severity.CRITICAL)])
    key = ("limit", "T2-oil", "YPTR1.TmpOil")

    def found(value: float, active: frozenset) -> bool:
        snap = Snapshot([_point("T2-oil", "YPTR1.TmpOil", value, unit="degC")], active=active)
        return bool(_only(AlarmRule.LIMIT, snap, config))

    assert not found(85.0, frozenset()) and found(85.1, frozenset())
    assert found(84.0, frozenset({key})) and not found(83.2, frozenset({key}))
    assert not found(84.0, frozenset())  # not raised from inside the band


def test_a_voltage_at_the_band_edge_does_not_raise_but_a_clear_violation_does() -> None:
    """Issue 11: a bus estimated at 1.0502 against a 1.05 band raised and cleared with every
    cycle. It is raised only beyond the deadband (0.005 pu), and once raised holds while the twin
    still reports it outside the band."""
    config = AnomalyConfig()
    edge = [Violation("bus 7", "voltage", 1.0502, 1.05), Violation("line 3", "loading", 100.9, 100.0)]
    assert _only(AlarmRule.VIOLATION, Snapshot(violations=edge), config) == []
    held = frozenset({("violation", "bus 7", "voltage")})
    assert [a.device for a in _only(AlarmRule.VIOLATION, Snapshot(violations=edge, active=held), config)] == ["bus 7"]
    clear = [Violation("bus 7", "voltage", 1.0571, 1.05), Violation("bus 9", "voltage", 0.9431, 0.95)]
    assert [a.device for a in _only(AlarmRule.VIOLATION, Snapshot(violations=clear), config)] == ["bus 7", "bus 9"]


def test_residual_rule_alarms_only_identified_bad_data() -> None:
    residuals = [
        Residual("RTU45", "MMXU1.PPV", 7.25, 0.4321, True),
        ("RTU46", "MMXU1.PPV", 2.0, 0.1, False),
    ]
    found = _only(AlarmRule.RESIDUAL, Snapshot(residuals=residuals, substations={"RTU45": "S5"}), AnomalyConfig())
    assert [(a.substation, a.device, a.point, a.message, a.value) for a in found] == [
        (
            "S5",
            "RTU45",
            "MMXU1.PPV",
            "MMXU1.PPV is suspect bad data: normalised residual +7.2 (measured 0.4321)",
            0.4321,
        )
    ]


def test_violation_rule_overload_is_critical_voltage_a_warning() -> None:
    violations = [Violation("line 3", "loading", 104.25, 100.0), ("bus 7", "voltage", 1.0612, 1.05)]
    found = _only(AlarmRule.VIOLATION, Snapshot(violations=violations), AnomalyConfig())
    assert [(a.device, a.point, a.severity, a.message) for a in found] == [
        ("line 3", "loading", Severity.CRITICAL, "line 3: loading 104.250 beyond 100.0"),
        ("bus 7", "voltage", Severity.WARNING, "bus 7: voltage 1.061 beyond 1.05"),
    ]


def test_an_alarm_with_an_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="critcal"):
        Alarm("limit", "PRIM", "T2-oil", "YPTR1.TmpOil", "critcal", "too hot")


def test_gateway_imports_nothing_from_anomaly() -> None:
    """The gateway raises its spool alarm with the shared schema, not the anomaly part's modules."""
    offenders = []
    for path in sorted((REPO_ROOT / "gateway").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name}: {n}" for n in names if n == "anomaly" or n.startswith("anomaly.")]
    assert offenders == []


def hammer(book: AlarmBook, sets: list[list[Alarm]], updates: int) -> tuple[set[frozenset], list[BaseException]]:
    """Update the book `updates` times alternating between `sets` while two threads list its
    active alarms the way the stack's summary does (a Python loop over them); returns the sets seen."""
    stop = threading.Event()
    seen: set[frozenset] = set()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                seen.add(frozenset(a.key for a in book.active_alarms()))
                seen.add(frozenset(k for k in book.active))
        except BaseException as exc:  # the failure being tested for
            errors.append(exc)

    book.update(sets[0], 1_790_000_000_000_000_000)
    readers = [threading.Thread(target=read) for _ in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    for t in readers:
        t.start()
    try:
        for i in range(1, updates):
            book.update(sets[i % 2], 1_790_000_000_000_000_000 + i)
    finally:
        stop.set()
        for t in readers:
            t.join()
        sys.setswitchinterval(interval)
    return seen, errors


def test_alarm_book_can_be_read_while_the_detector_thread_updates_it(tmp_path: Path) -> None:
    """The stack and the UI list the active alarms while the detector thread raises and clears
    them: every read is a whole evaluation's set, never a half-updated one, and never raises."""

    def clear_at_once(doc: dict) -> None:
        doc["anomaly"]["clear_after"] = 1
        doc["anomaly"]["chatter_count"] = 10 * UPDATES  # alternating on purpose: not folded as chatter here

    settings = load_settings(config_dir(tmp_path, clear_at_once))
    historian = EmbeddedHistorian(tmp_path / "alarms.db")
    book = AlarmBook.of(settings, historian, None)
    sets = [
        [Alarm(AlarmRule.STUCK, "PRIM", f"RTU{i}", "MMXU1.TotW", Severity.WARNING, "stuck") for i in range(20)],
        [Alarm(AlarmRule.LIMIT, "PRIM", f"RTU{i}", "MMXU1.TotW", Severity.WARNING, "high") for i in range(30)],
    ]
    try:
        seen, errors = hammer(book, sets, UPDATES)
    finally:
        historian.close()
    assert errors == []
    assert seen == {frozenset(a.key for a in s) for s in sets}  # whole sets only: never empty, never mixed
    assert book.raised == UPDATES // 2 * 50 and {a.key for a in book.active_alarms()} == {a.key for a in sets[1]}
    stored = EmbeddedHistorian(tmp_path / "alarms.db")
    try:
        assert stored.count(ALARM) == 20 + (UPDATES - 1) * 50  # each update raises one set and clears the other
    finally:
        stored.close()
