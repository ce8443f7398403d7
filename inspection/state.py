"""Each piece of equipment's live state and values, read from the historian, and its colour.

An equipment's data comes from its own device and from the sensors that monitor it: a sensor
in the same substation and bay as the equipment's device, on the same network element, or
named after it (`T2-oil` monitors `T2`). So an alarm on the T2 oil sensor puts the T2
transformer in alarm, not only the sensor. Equipment nobody measures is `unknown`, never a
believable `normal`. Transformers also get the IEC 60076-7 hot-spot temperature and ageing rate
from the twin's loading and the measured top oil (`inspection/thermal.py`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from gridverse.config import SensorKind, SiteConfig
from gridverse.elements import ElementKind, ElementRef
from gridverse.historian import Historian
from gridverse.points import Point, Quality
from gridverse.schema import ALARM, TELEMETRY, TWIN_BRANCH, TWIN_BUS, TWIN_CYCLE, placements
from inspection.config import AssetConfig, AssetKind
from inspection.thermal import HOT_SPOT_LIMIT_C, ONAN, ageing_rate, hot_spot_from_top_oil, steady_hot_spot

Rgb = tuple[float, float, float]

#: Ambient assumed for a hot spot when no top-oil temperature is measured (IEC 60076-7's 20 °C).
DEFAULT_AMBIENT_C = 20.0


class AssetState(StrEnum):
    NORMAL = "normal"
    WARNING = "warning"  # loaded (≥ its kind's warning loading, gridverse.schema), or hot spot over its limit
    OVERLOADED = "overloaded"  # at or above its kind's alarm loading (80 %)
    ALARM = "alarm"  # an active alarm names its device or a sensor that monitors it
    OPEN = "open"  # breaker or switch open
    DEENERGISED = "de-energised"  # the twin's latest estimate has no voltage or flow for its element
    UNKNOWN = "unknown"  # no data, the device does not answer, or nothing measures it


COLOURS: dict[AssetState, Rgb] = {
    AssetState.NORMAL: (0.20, 0.70, 0.30),
    AssetState.WARNING: (0.95, 0.65, 0.10),
    AssetState.OVERLOADED: (0.90, 0.12, 0.10),
    AssetState.ALARM: (0.90, 0.12, 0.10),
    AssetState.OPEN: (0.35, 0.35, 0.40),
    AssetState.DEENERGISED: (0.15, 0.20, 0.45),
    AssetState.UNKNOWN: (0.70, 0.30, 0.80),
}


@dataclass(frozen=True)
class ActiveAlarm:
    """An active alarm as the historian holds it (rule, where, how urgent, what it said)."""

    rule: str
    device: str
    point: str
    severity: str
    message: str
    value: float | None
    time_ns: int


@dataclass(frozen=True)
class EquipmentLive:
    """One equipment's state, why, and the live values a technician compares against."""

    asset: str
    kind: AssetKind
    state: AssetState
    reasons: tuple[str, ...] = ()
    values: dict[str, float] = field(default_factory=dict)  # "T2/MMXU1.TotW", "loading_percent", "hot_spot_c"…
    alarms: tuple[ActiveAlarm, ...] = ()
    devices: tuple[str, ...] = ()  # its device first, then the sensors that monitor it
    time_ns: int | None = None  # newest value's time

    @property
    def hot_spot_c(self) -> float | None:
        return self.values.get("hot_spot_c")

    @property
    def ageing_rate(self) -> float | None:
        return self.values.get("ageing_rate")


#: What each kind of sensor monitors: a transformer's thermal sensor belongs to the transformer,
#: not to the CT or disconnector of the same bay.
SENSOR_MONITORS: dict[SensorKind, frozenset[AssetKind]] = {
    SensorKind.TRANSFORMER_THERMAL: frozenset({AssetKind.TRANSFORMER}),
}


def monitoring_sensors(
    site: SiteConfig,
    substation: str,
    device: str | None,
    bay: str | None = None,
    *,
    kind: AssetKind | None = None,
    element: ElementRef | None = None,
) -> list[str]:
    """The site's sensors that monitor equipment of `kind` with `device` (or in bay `bay`, or on
    network `element`) in `substation`: a sensor of a kind that monitors such equipment, in the
    same bay, on the same network element, or named `<device>-…`."""
    dev_bay, dev_element = bay, element
    for sub in site.substations:
        for d in sub.devices:
            if d.name == device and sub.name == substation:
                dev_bay = dev_bay or d.bay
                dev_element = dev_element or d.element
    out = []
    for s in site.sensors:
        if s.substation != substation or s.name == device:
            continue
        if kind is not None and kind not in SENSOR_MONITORS.get(s.kind, frozenset()):
            continue
        same_bay = bool(s.bay) and s.bay == dev_bay
        same_element = dev_element is not None and (s.element.kind, s.element.index) == (
            dev_element.kind,
            dev_element.index,
        )
        named = device is not None and s.name.startswith(f"{device}-")
        if same_bay or same_element or named:
            out.append(s.name)
    return out


def active_alarms(historian: Historian, site: str) -> list[ActiveAlarm]:
    """Every alarm whose latest record says active."""
    out = []
    for r in historian.latest(ALARM, tags={"site": site}):
        if int(r.fields.get("active", 0)) != 1:
            continue
        value = r.fields.get("value")
        out.append(
            ActiveAlarm(
                r.tags.get("rule", ""),
                r.tags.get("device", ""),
                r.tags.get("point", ""),
                r.tags.get("severity", ""),
                str(r.fields.get("message", "")),
                None if value is None else float(value),
                r.time_ns,
            )
        )
    return out


def elements_of(asset: AssetConfig, site: SiteConfig) -> list[ElementRef]:
    """The network elements an asset stands for: its own (assets.yaml `element`), then its
    device's (a breaker is a switch of the network and its device measures the feeder's line)."""
    out: list[ElementRef] = []
    ref = asset.element.ref() if asset.element is not None else None
    if ref is not None:
        out.append(ref)
    where = placements(site)
    placed = where[asset.device].element if asset.device in where else None
    if placed is not None and all((e.kind, e.index) != (placed.kind, placed.index) for e in out):
        out.append(placed)
    return out


def _twin_view(historian: Historian, site: str, since_ns: int) -> tuple[int | None, dict, dict]:
    """The twin's latest branch loadings; the newest converged cycle's time, with the branches
    and buses its estimate holds (a de-energised element is missing from them)."""
    loading = {
        (r.tags["kind"], int(r.tags["index"])): float(r.fields["loading_percent"])
        for r in historian.latest(TWIN_BRANCH, tags={"site": site}, start_ns=since_ns)
    }
    cycles = [
        r
        for r in historian.latest(TWIN_CYCLE, tags={"site": site}, start_ns=since_ns)
        if int(r.fields.get("converged", 0)) == 1
    ]
    if not cycles:
        return None, {"loading": loading}, {}
    t = cycles[0].time_ns
    # the state is written with a deadband: the cycle's rows are the newest of each series since
    # its state_since_ns (gridmodel/writer.py), and a de-energised element has none there
    since = int(cycles[0].fields.get("state_since_ns", t))
    fresh = {
        (r.tags["kind"], int(r.tags["index"]))
        for r in historian.latest(TWIN_BRANCH, tags={"site": site}, start_ns=since, end_ns=t)
    }
    buses = {int(r.tags["bus"]) for r in historian.latest(TWIN_BUS, tags={"site": site}, start_ns=since, end_ns=t)}
    return t, {"loading": loading, "fresh": fresh}, {"buses": buses}


def live_states(
    site_config: SiteConfig,
    assets: Sequence[AssetConfig],
    historian: Historian,
    substation: str,
    since_ns: int,
    *,
    ambient_c: float = DEFAULT_AMBIENT_C,
) -> dict[str, EquipmentLive]:
    """Each asset's state, the reasons for it and its live values, from the telemetry since
    `since_ns`, the active alarms and the twin's latest estimate."""
    from inspection.equipment import equipment_kind  # the kinds import this module's states

    site = site_config.name
    points = [
        Point.from_record(r)
        for r in historian.latest(TELEMETRY, tags={"site": site, "substation": substation}, start_ns=since_ns)
    ]
    by_device: dict[str, list[Point]] = {}
    for p in points:
        by_device.setdefault(p.device, []).append(p)
    alarms_by_device: dict[str, list[ActiveAlarm]] = {}
    for a in active_alarms(historian, site):
        alarms_by_device.setdefault(a.device, []).append(a)
    cycle_t, branches, buses = _twin_view(historian, site, since_ns)
    loading: dict = branches.get("loading", {})
    out: dict[str, EquipmentLive] = {}
    for asset in assets:
        elements = elements_of(asset, site_config)
        branch = next((e for e in elements if e.kind in (ElementKind.LINE, ElementKind.TRAFO)), None)
        modelled = [e for e in elements if e.kind in (ElementKind.BUS, ElementKind.LINE, ElementKind.TRAFO)]
        bay = asset.bay
        own_element = elements[0] if elements and asset.element is not None else None
        sensors = monitoring_sensors(site_config, substation, asset.device, bay, kind=asset.kind, element=own_element)
        devices = [asset.device, *sensors] if asset.device else sensors
        # an asset that names its points owns only those of its device (a VT: the voltage)
        described = set(asset.points)

        def own(device: str, point: str, mine: str | None = asset.device, names: set[str] = described) -> bool:
            return device != mine or not names or point in names or point in ("*", "")

        dev_points = [p for d in devices for p in by_device.get(d, []) if own(p.device, p.name)]
        good = [p for p in dev_points if p.value is not None and p.quality in (Quality.GOOD, Quality.SUSPECT)]
        values = {f"{p.device}/{p.name}": float(p.value) for p in good if p.value is not None}
        alarms = tuple(a for d in devices for a in alarms_by_device.get(d, []) if own(a.device, a.point))
        reasons: list[str] = []
        pct = None
        if branch is not None:
            pct = loading.get((branch.kind.value, branch.index))
            if pct is not None:
                values["loading_percent"] = pct
        if asset.kind is AssetKind.TRANSFORMER:
            _thermal(values, good, pct, ambient_c)

        kind = equipment_kind(asset.kind)
        if alarms:
            state = AssetState.ALARM
            reasons += [f"{a.severity} {a.rule} alarm on {a.device}/{a.point}: {a.message}" for a in alarms]
        elif not devices and not modelled:
            state = AssetState.UNKNOWN
            reasons.append("nothing measures it: give it a device or a network element in assets.yaml")
        elif devices and not good:
            state = AssetState.UNKNOWN
            silent = "no data" if not dev_points else "no valid reading (device silent or invalid)"
            reasons.append(f"{silent} from {', '.join(devices)} since the window start")
        elif any(p.name.endswith(("XCBR1.Pos", "XSWI1.Pos")) and p.value == 0.0 for p in good):
            state = AssetState.OPEN
            reasons.append("breaker reads open")
        elif cycle_t is not None and (dead := [e for e in modelled if _deenergised(e, branches, buses)]):
            state = AssetState.DEENERGISED
            where = ", ".join(f"{e.kind.value} {e.index}" for e in dead)
            reasons.append(f"the twin's latest estimate has no voltage or flow on {where}")
        elif not devices and cycle_t is None:
            state = AssetState.UNKNOWN
            reasons.append("no data: nothing measures it and the twin has no recent estimate")
        else:
            state = kind.loading_state(pct)
            if state is not AssetState.NORMAL and pct is not None:
                reasons.append(f"loaded {pct:.0f} %")
            hot = values.get("hot_spot_c")
            if hot is not None and hot > HOT_SPOT_LIMIT_C and state is AssetState.NORMAL:
                state = AssetState.WARNING
            if hot is not None and hot > HOT_SPOT_LIMIT_C:
                reasons.append(f"hot spot {hot:.0f} °C over the {HOT_SPOT_LIMIT_C:.0f} °C limit")
        times = [p.time_ns for p in dev_points]
        out[asset.name] = EquipmentLive(
            asset.name,
            asset.kind,
            state,
            tuple(reasons),
            values,
            alarms,
            tuple(devices),
            max(times) if times else None,
        )
    return out


def _deenergised(element: ElementRef, branches: dict, buses: dict) -> bool:
    if element.kind == ElementKind.BUS:
        return element.index not in buses.get("buses", set())
    if element.kind in (ElementKind.LINE, ElementKind.TRAFO):
        return (element.kind.value, element.index) not in branches.get("fresh", set())
    return False


def _thermal(values: dict[str, float], good: list[Point], pct: float | None, ambient_c: float) -> None:
    """Hot spot and ageing rate (IEC 60076-7) from the loading and the measured top oil."""
    oil = next((float(p.value) for p in good if p.name.endswith("TmpOil") and p.value is not None), None)
    if oil is not None:
        values["top_oil_c"] = oil
    if pct is None:
        return
    k = pct / 100.0
    hot = hot_spot_from_top_oil(oil, k, ONAN) if oil is not None else steady_hot_spot(k, ambient_c, ONAN)
    values["hot_spot_c"] = hot
    values["ageing_rate"] = ageing_rate(hot)


def asset_states(
    site_config: SiteConfig, assets: Sequence[AssetConfig], historian: Historian, substation: str, since_ns: int
) -> dict[str, AssetState]:
    """Each asset's state alone (see `live_states` for the reasons and values)."""
    return {
        name: live.state for name, live in live_states(site_config, assets, historian, substation, since_ns).items()
    }


def stamp_render(path: Path, states: Mapping[str, AssetState], rendered_ns: int | None = None) -> Path:
    """Mark a render with the time it shows: the UTC time drawn in its bottom-left corner and a
    sidecar `<image>.json` (time, states), so a stale picture never passes for a current one."""
    from PIL import Image, ImageDraw

    t = time.time_ns() if rendered_ns is None else rendered_ns
    when = datetime.fromtimestamp(t / 1e9, tz=UTC)
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    text = f"rendered {when:%Y-%m-%d %H:%M:%S} UTC"
    draw.rectangle((6, image.height - 22, 16 + 6 * len(text), image.height - 4), fill=(255, 255, 255))
    draw.text((10, image.height - 20), text, fill=(20, 20, 30))
    partial = path.with_name(f".{path.name}.stamping.png")
    image.save(partial)
    os.replace(partial, path)  # a reader never sees a half-written image
    doc = {
        "rendered_ns": t,
        "rendered": when.isoformat(timespec="seconds"),
        "states": {k: str(v) for k, v in states.items()},
    }
    stamp = render_stamp_path(path)
    partial_doc = stamp.with_name(f".{stamp.name}.partial")
    partial_doc.write_text(json.dumps(doc, indent=1))
    os.replace(partial_doc, stamp)
    return stamp


def render_stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_render_stamp(path: Path) -> dict | None:
    """The render's sidecar stamp (time and states), or None when it has none."""
    try:
        return json.loads(render_stamp_path(path).read_text())
    except (OSError, ValueError):
        return None
