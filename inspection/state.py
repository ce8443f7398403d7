"""Each asset's state, read from the historian, and the colour it is drawn in."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from gridverse.config import SiteConfig
from gridverse.elements import ElementKind
from gridverse.historian import Historian
from gridverse.points import Point, Quality
from gridverse.schema import ALARM, TELEMETRY, TWIN_BRANCH, placements
from inspection.config import AssetConfig

Rgb = tuple[float, float, float]


class AssetState(StrEnum):
    NORMAL = "normal"
    WARNING = "warning"  # loaded: at or above its kind's warning loading (gridverse.schema, 50 %)
    OVERLOADED = "overloaded"  # at or above its kind's alarm loading (80 %)
    ALARM = "alarm"  # an active alarm names the device
    OPEN = "open"  # breaker open
    UNKNOWN = "unknown"  # no data or the device does not answer


COLOURS: dict[AssetState, Rgb] = {
    AssetState.NORMAL: (0.20, 0.70, 0.30),
    AssetState.WARNING: (0.95, 0.65, 0.10),
    AssetState.OVERLOADED: (0.90, 0.12, 0.10),
    AssetState.ALARM: (0.90, 0.12, 0.10),
    AssetState.OPEN: (0.35, 0.35, 0.40),
    AssetState.UNKNOWN: (0.70, 0.30, 0.80),
}


def asset_states(
    site_config: SiteConfig, assets: Sequence[AssetConfig], historian: Historian, substation: str, since_ns: int
) -> dict[str, AssetState]:
    """Each asset's state: alarm, no data, open, or how loaded its branch is (its kind's thresholds)."""
    from inspection.equipment import equipment_kind  # the kinds import this module's states

    site = site_config.name
    points = [
        Point.from_record(r)
        for r in historian.latest(TELEMETRY, tags={"site": site, "substation": substation}, start_ns=since_ns)
    ]
    by_device: dict[str, list[Point]] = {}
    for p in points:
        by_device.setdefault(p.device, []).append(p)
    alarms = historian.latest(ALARM, tags={"site": site})
    alarmed = {r.tags["device"] for r in alarms if int(r.fields.get("active", 0)) == 1}
    loading = {
        (r.tags["kind"], int(r.tags["index"])): float(r.fields["loading_percent"])
        for r in historian.latest(TWIN_BRANCH, tags={"site": site}, start_ns=since_ns)
    }
    where = placements(site_config)
    states: dict[str, AssetState] = {}
    for asset in assets:
        if asset.device is None:
            states[asset.name] = AssetState.NORMAL
            continue
        dev_points = by_device.get(asset.device, [])
        if asset.device in alarmed:
            state = AssetState.ALARM
        elif not dev_points or all(p.quality is Quality.COMM_FAIL for p in dev_points):
            state = AssetState.UNKNOWN
        elif any(p.name.endswith("XCBR1.Pos") and p.value == 0.0 for p in dev_points):
            state = AssetState.OPEN
        else:
            state = AssetState.NORMAL
            element = where[asset.device].element if asset.device in where else None
            if element is not None and element.kind != ElementKind.BUS:
                state = equipment_kind(asset.kind).loading_state(loading.get((element.kind.value, element.index)))
        states[asset.name] = state
    return states
