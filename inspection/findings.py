"""Findings flow back: what a technician records at a route step goes where it is used.

- Readings (oil temperature, SF6 pressure, operation counter, clamp-meter current, thermography
  ΔT) become historian points with source `manual` and their σ, in SI units, under the
  equipment's device (a top-oil reading under the sensor that monitors it). The twin uses a
  manual current or voltage on a device bound to a network element as a measurement in its
  next cycle (`gridmodel.measurements.manual_measurements`).
- A reading is graded against its check's limits (NETA MTS Table 100.18 for thermography; SF6
  alarm and lockout levels; hard limits): a failing grade fails the check.
- Failed checks become labels in the anomaly lab's `labels.csv` format (appended to
  `inspection.labels_path`), so the lab can train on them.
- The finding and the step's completion go into the tamper-evident audit record
  (`inspect.finding`, `inspect.step`) BEFORE anything is written: no audit entry, no finding.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gridverse.config import Settings
from gridverse.historian import Historian
from gridverse.points import Point, Quality, Record, Source
from inspection.checklists import READINGS, Grade, checklist_for, grade_reading
from inspection.checklists.base import FAILING
from inspection.config import AssetConfig
from inspection.state import elements_of, monitoring_sensors

#: labels.csv columns of the anomaly lab's interchange format (anomaly/dataset.py LABELS_COLUMNS)
LABELS_COLUMNS = ["start", "end", "type", "element_type", "element", "point"]
LAB_ELEMENT_TYPES = ("bus", "line", "trafo", "sgen", "load")
DEFAULT_LABELS_PATH = Path("var/inspection/labels.csv")
OUTCOMES = ("pass", "fail", "n/a")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FindingError(ValueError):
    """A finding that cannot be recorded as given; the message names the asset, key and remedy."""


def photo_hash(data: bytes) -> str:
    """The SHA-256 of a photo's bytes, as the finding keeps it (the photo itself stays on the device)."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Finding:
    """What a technician recorded at one step: each check's outcome, readings (in the units of
    `READINGS`), notes and photo hashes."""

    substation: str
    asset: str
    checks: dict[str, str] = field(default_factory=dict)  # item key → pass / fail / n/a
    readings: dict[str, float] = field(default_factory=dict)  # READINGS key → value
    notes: str = ""
    photos: list[str] = field(default_factory=list)  # SHA-256 hex of each photo
    step: int | None = None
    route_generated: str = ""  # the route's time, to tie the step to the route it belongs to


@dataclass
class FindingResult:
    """What recording a finding did."""

    outcomes: dict[str, str]  # every check's outcome after grading the readings
    grades: dict[str, str]  # reading check → its grade
    failed: list[str]
    points: list[Record]
    labels: list[dict[str, str]]
    audit_seq: list[int]


def _asset(settings: Settings, substation: str, name: str) -> AssetConfig:
    for a in settings.assets.get(substation, []):
        if a.name == name:
            return a
    raise FindingError(
        f"no equipment {name!r} in substation {substation!r} (assets.yaml); record findings against a route step"
    )


def _reading_device(settings: Settings, substation: str, asset: AssetConfig, reading: str) -> tuple[str, str]:
    """(device, bay) a reading is filed under: the top oil under the sensor that monitors the
    equipment, anything else under the equipment's own device (its asset id when it has none)."""
    bay = asset.bay or ""
    if reading == "top_oil_c":
        sensors = monitoring_sensors(settings.site, substation, asset.device, asset.bay, kind=asset.kind)
        if sensors:
            return sensors[0], bay
    return asset.device or asset.id, bay


def _label_target(settings: Settings, asset: AssetConfig) -> tuple[str, str]:
    """The lab's (element_type, element) for an asset: its own element when the lab knows the
    table, else its device's."""
    own = asset.element
    if own is not None and own.kind.value in LAB_ELEMENT_TYPES and own.index is not None:
        return own.kind.value, str(own.index)
    for e in elements_of(asset, settings.site):
        if e.kind.value in LAB_ELEMENT_TYPES:
            return e.kind.value, str(e.index)
    return "", ""


def _twin_fields(settings: Settings, asset: AssetConfig, measurand: str | None) -> dict[str, str | int]:
    """Where the twin places a reading it can use: the equipment's branch (or bus) and side, and
    the measurand (`gridmodel.measurements.manual_measurements` reads these)."""
    if measurand is None:
        return {}
    wanted = ("line", "trafo") if measurand == "i" else ("bus", "line", "trafo")
    for e in elements_of(asset, settings.site):
        if e.kind.value in wanted:
            side = e.side or {"line": "from", "trafo": "lv"}.get(e.kind.value, "")
            return {"measurand": measurand, "element_type": e.kind.value, "element": e.index, "side": side}
    return {}


def append_labels(path: Path, rows: list[dict[str, str]]) -> None:
    """Append rows to a labels.csv (header first when the file is new), under a file lock so
    that the UI and the command line can both record."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", newline="", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0, 2)
            writer = csv.DictWriter(f, fieldnames=LABELS_COLUMNS)
            if f.tell() == 0:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _iso(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate(settings: Settings, finding: Finding) -> tuple[AssetConfig, dict[str, str], dict[str, Grade]]:
    """Check a finding against its equipment's checklist; the outcomes after grading readings."""
    asset = _asset(settings, finding.substation, finding.asset)
    checklist = checklist_for(asset.kind)
    keys = {i.key for i in checklist.items}
    for key, outcome in finding.checks.items():
        if key not in keys:
            raise FindingError(
                f"{asset.name}: check {key!r} is not on the {asset.kind.value} checklist; its checks: {sorted(keys)}"
            )
        if outcome not in OUTCOMES:
            raise FindingError(f"{asset.name}: check {key!r} outcome {outcome!r}: give one of {', '.join(OUTCOMES)}")
    by_reading = {i.reading: i for i in checklist.items if i.reading}
    grades: dict[str, Grade] = {}
    outcomes = dict(finding.checks)
    for reading, value in finding.readings.items():
        if reading not in by_reading:
            raise FindingError(
                f"{asset.name}: reading {reading!r} is not taken on a {asset.kind.value}; "
                f"its readings: {sorted(by_reading) or 'none'}"
            )
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise FindingError(f"{asset.name}: reading {reading!r} = {value!r} is not a finite number")
        item = by_reading[reading]
        grade = grade_reading(item, float(value))
        grades[item.key] = grade
        if grade in FAILING:
            outcomes[item.key] = "fail"  # a reading past its limit fails the check, whatever was ticked
        else:
            outcomes.setdefault(item.key, "pass")
    for h in finding.photos:
        if not _SHA256.match(h):
            raise FindingError(f"{asset.name}: photo hash {h!r} is not a SHA-256 in hex (64 characters 0-9a-f)")
    return asset, outcomes, grades


def record_finding(
    settings: Settings,
    historian: Historian,
    finding: Finding,
    *,
    actor: str,
    role: str,
    source: str = "",
    time_ns: int | None = None,
    labels_path: Path | None = None,
) -> FindingResult:
    """Record one step's finding: audit it, write its readings to the historian, append its
    failed checks to the labels file, and audit the step's completion."""
    from gridverse.audit import open_audit

    t = time.time_ns() if time_ns is None else time_ns
    asset, outcomes, grades = validate(settings, finding)
    failed = [k for k, v in outcomes.items() if v == "fail"]
    site = settings.site.name
    points: list[Record] = []
    for reading, value in finding.readings.items():
        kind = READINGS[reading]
        device, bay = _reading_device(settings, finding.substation, asset, reading)
        si = float(value) * kind.si_factor
        p = Point(site, finding.substation, bay, device, kind.point, Source.MANUAL, t, si, Quality.GOOD)
        r = p.to_record()
        fields: dict[str, float | int | str | bool] = {**r.fields, "sigma": kind.sigma(float(value)) * kind.si_factor}
        fields.update(_twin_fields(settings, asset, kind.measurand))
        points.append(Record(r.measurement, r.tags, fields, t))
    element_type, element = _label_target(settings, asset)
    labels = []
    for key in failed:
        item = checklist_for(asset.kind).item(key)
        point = ""
        if item.reading:
            device, _ = _reading_device(settings, finding.substation, asset, item.reading)
            point = f"{device}/{READINGS[item.reading].point}"
        labels.append(
            {
                "start": _iso(t),
                "end": _iso(t),
                "type": f"inspection.{asset.kind.value}.{key}",
                "element_type": element_type,
                "element": element,
                "point": point or asset.name,
            }
        )
    audit = open_audit(settings)
    after = {
        "checks": outcomes,
        "readings": dict(finding.readings),
        "grades": {k: g.value for k, g in grades.items()},
        "notes": finding.notes,
        "photos": list(finding.photos),
        "step": finding.step,
        "route": finding.route_generated,
    }
    seq = [audit.append(actor, role, "inspect.finding", asset.name, source=source, after=after).seq]
    if points:
        historian.write(points)
    append_labels(labels_path or _labels_path(settings), labels)
    done = {"step": finding.step, "failed": failed, "readings": len(points), "route": finding.route_generated}
    seq.append(audit.append(actor, role, "inspect.step", asset.name, source=source, after=done).seq)
    return FindingResult(outcomes, {k: g.value for k, g in grades.items()}, failed, points, labels, seq)


def _labels_path(settings: Settings) -> Path:
    return settings.inspection.labels_path if settings.inspection is not None else DEFAULT_LABELS_PATH
