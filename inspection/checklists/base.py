"""A checklist described as data: items a technician passes or fails, readings with their unit,
σ and limits, and the live values each reading is compared against; the NETA thermography
grades and the SF6 density correction the items use."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from inspection.config import AssetKind


class Grade(StrEnum):
    """How a reading stands against its item's limits (worst last)."""

    OK = "ok"
    POSSIBLE = "possible deficiency"  # NETA: warrants investigation
    PROBABLE = "probable deficiency"  # NETA: repair as time permits / a gas alarm level
    MONITOR = "monitor"  # NETA (over ambient only): monitor until corrected
    MAJOR = "major"  # NETA: repair immediately / a gas lockout level / over a hard limit


#: Grades that fail a check (and become a label for the anomaly lab).
FAILING = (Grade.PROBABLE, Grade.MONITOR, Grade.MAJOR)


@dataclass(frozen=True)
class ReadingKind:
    """A kind of reading a technician takes: its unit, the historian point it becomes and its σ
    (instrument uncertainty: `sigma_abs` + `sigma_rel`·|value|, one standard deviation)."""

    key: str
    label: str
    unit: str
    point: str  # IEC 61850 data object the manual point is written as
    sigma_abs: float
    sigma_rel: float = 0.0
    si_factor: float = 1.0  # the historian keeps SI units: value × si_factor (bar → Pa)
    measurand: str | None = None  # what the twin can use it as on the equipment's element (i: a current)

    def sigma(self, value: float) -> float:
        return self.sigma_abs + self.sigma_rel * abs(value)


#: The readings of issue 13: oil temperature, SF6 pressure, operation counter, clamp-meter
#: current, thermography ΔT. A clamp meter of ±2 % reading is σ ≈ 0.7 % (the class is ~3σ).
READINGS: dict[str, ReadingKind] = {
    r.key: r
    for r in (
        ReadingKind("top_oil_c", "top-oil temperature (thermometer)", "°C", "YPTR1.TmpOil", 1.0),
        ReadingKind("sf6_pressure_bar", "SF6 pressure at 20 °C (density gauge)", "bar", "SIMG1.Pres", 0.05, 0.0, 1e5),
        ReadingKind("operation_count", "operation counter", "", "XCBR1.OpCnt", 0.0),
        ReadingKind("current_a", "clamp-meter current", "A", "MMXU1.A", 0.5, 0.007, measurand="i"),
        ReadingKind("thermography_dk", "thermography ΔT over a similar component", "K", "STMP1.TmpDif", 0.5),
    )
}


@dataclass(frozen=True)
class CheckItem:
    """One thing to check. A pass/fail item has no `reading`; a reading item is graded by its
    limits (`high`: above it fails; `low`: below it fails; SF6 items carry `alarm`/`lockout`
    levels; thermography is graded by NETA MTS Table 100.18)."""

    key: str
    text: str
    reading: str | None = None  # a READINGS key
    compare: tuple[str, ...] = ()  # live values shown beside it (suffixes of "device/point" or derived names)
    high: float | None = None  # a reading above this is a major finding
    low: float | None = None  # a reading below this is a major finding
    alarm: float | None = None  # SF6: density-corrected alarm (refill) level, bar at 20 °C
    lockout: float | None = None  # SF6: density-corrected lockout (blocking) level, bar at 20 °C
    neta: bool = False  # graded by NETA MTS Table 100.18 (ΔT over similar components)

    def __post_init__(self) -> None:
        if self.reading is not None and self.reading not in READINGS:
            raise ValueError(f"check item {self.key!r}: unknown reading {self.reading!r}; known: {sorted(READINGS)}")
        if self.alarm is not None and self.lockout is not None and self.lockout >= self.alarm:
            raise ValueError(f"check item {self.key!r}: lockout {self.lockout} must be below alarm {self.alarm}")


@dataclass(frozen=True)
class Checklist:
    """What a technician checks on one kind of equipment, in walking order."""

    kind: AssetKind
    items: tuple[CheckItem, ...]

    def __post_init__(self) -> None:
        keys = [i.key for i in self.items]
        if len(set(keys)) != len(keys):
            raise ValueError(f"checklist {self.kind.value}: item keys repeat: {keys}")

    def item(self, key: str) -> CheckItem:
        for i in self.items:
            if i.key == key:
                return i
        raise KeyError(
            f"checklist {self.kind.value} has no item {key!r}; its items: {', '.join(i.key for i in self.items)}"
        )


def neta_thermography_grade(delta_k: float) -> Grade:
    """ΔT between similar components under similar load, NETA MTS Table 100.18 (Thermographic
    survey: suggested actions based on temperature rise): 1–3 °C possible deficiency (warrants
    investigation), 4–15 °C probable deficiency (repair as time permits), over 15 °C major
    discrepancy (repair immediately). Below 1 °C: no action; between 3 and 4 °C counts as 4."""
    d = abs(delta_k)
    if d > 15.0:
        return Grade.MAJOR
    if d > 3.0:
        return Grade.PROBABLE
    if d >= 1.0:
        return Grade.POSSIBLE
    return Grade.OK


def sf6_at_20c(pressure_bar: float, gas_temperature_c: float) -> float:
    """An SF6 pressure read at `gas_temperature_c` brought to 20 °C at the same gas density (ideal
    gas, absolute pressures): what the alarm and lockout levels are stated at. A density gauge
    (temperature-compensated) already reads this."""
    return pressure_bar * 293.15 / (gas_temperature_c + 273.15)


def grade_reading(item: CheckItem, value: float) -> Grade:
    """How a reading stands against its item's limits."""
    if item.neta:
        return neta_thermography_grade(value)
    if item.lockout is not None and value <= item.lockout:
        return Grade.MAJOR
    if item.alarm is not None and value <= item.alarm:
        return Grade.PROBABLE
    if item.high is not None and value > item.high:
        return Grade.MAJOR
    if item.low is not None and value < item.low:
        return Grade.MAJOR
    return Grade.OK


_REGISTRY: dict[AssetKind, Checklist] = {}


def register(checklist: Checklist) -> Checklist:
    """Add a kind's checklist to the registry (one per `AssetKind`)."""
    known = _REGISTRY.get(checklist.kind)
    if known is not None and known != checklist:
        raise ValueError(f"checklist for {checklist.kind.value!r} is described twice; keep one file for it")
    _REGISTRY[checklist.kind] = checklist
    return checklist


#: The thermography item most kinds share (NETA MTS Table 100.18).
def thermography(what: str = "connections and clamps") -> CheckItem:
    return CheckItem(
        "thermography",
        f"Thermography of the {what}: ΔT over the similar phase/component (NETA MTS Table 100.18)",
        reading="thermography_dk",
        neta=True,
    )
