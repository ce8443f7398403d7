"""Risk of each piece of equipment = likelihood × consequence, for ranking inspection routes.

Likelihood (dimensionless, 0.05 for healthy equipment just inspected) adds up what says it may
fail: its active alarms (critical 1.0, warning 0.5, info 0.2), anomaly scores from learned
detectors' alarms (the score, 0..1), its live state (overloaded 0.5, loaded 0.25, unknown 0.3,
de-energised 0.2, open 0.1), its transformer hot-spot ageing (log2 of the IEC 60076-7 ageing
rate over 6: 1.0 at V = 64) and the time since its last inspection (0.5 a year, at most 0.5;
0.5 when never inspected).

Consequence (MW) comes from the twin's contingency analysis: the network element the equipment
is (its `element` in assets.yaml, else its device's) is taken out of service and the power flow
run; the consequence is the load left without supply plus the load that would have to be shed
to bring every branch the trip overloads back to its limit, with a floor of 0.05 MW so that no
equipment counts as free to lose. Results are cached per network, element and hour of load."""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pandapower as pp

from gridmodel.contingency import PowerFlowError, power_flow
from gridverse.config import Settings
from gridverse.elements import ElementKind, ElementRef
from gridverse.historian import Historian
from gridverse.schema import SIM_CLOCK, AlarmRule
from inspection.config import AssetConfig
from inspection.state import AssetState, EquipmentLive, elements_of, live_states

log = logging.getLogger(__name__)

SEVERITY_WEIGHT = {"critical": 1.0, "warning": 0.5, "info": 0.2}
STATE_WEIGHT = {
    AssetState.OVERLOADED: 0.5,
    AssetState.WARNING: 0.25,
    AssetState.UNKNOWN: 0.3,
    AssetState.DEENERGISED: 0.2,
    AssetState.OPEN: 0.1,
}
BASE_LIKELIHOOD = 0.05
CONSEQUENCE_FLOOR_MW = 0.05
#: rules of the built-in detectors; an alarm of any other rule comes from a learned model
BUILTIN_RULES = {r.value for r in AlarmRule}


@dataclass(frozen=True)
class Factor:
    """One reason an equipment is risky: its name, its share of the likelihood, and what it is."""

    name: str
    weight: float
    detail: str


@dataclass(frozen=True)
class Consequence:
    """What a trip of one network element costs, from a power flow without it."""

    element: str  # "trafo 1", "line 44", "bus 2"
    mw: float
    unsupplied_mw: float
    shed_mw: float  # load to shed to relieve the overloads the trip causes
    overloaded: tuple[str, ...] = ()
    note: str = ""

    @property
    def detail(self) -> str:
        parts = [f"trip of {self.element}: {self.unsupplied_mw:.2f} MW lost"]
        if self.overloaded:
            parts.append(f"overloads {', '.join(self.overloaded)} ({self.shed_mw:.2f} MW to shed)")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


@dataclass(frozen=True)
class EquipmentRisk:
    asset: AssetConfig
    live: EquipmentLive
    likelihood: float
    consequence: Consequence | None
    factors: tuple[Factor, ...] = field(default_factory=tuple)

    @property
    def consequence_mw(self) -> float:
        return self.consequence.mw if self.consequence is not None else CONSEQUENCE_FLOOR_MW

    @property
    def risk(self) -> float:
        return self.likelihood * self.consequence_mw

    @property
    def why(self) -> list[str]:
        """The risk factors, largest first, then the consequence."""
        out = [f.detail for f in sorted(self.factors, key=lambda f: -f.weight)]
        out.append(self.consequence.detail if self.consequence else "no network element: consequence taken as low")
        return out


def likelihood(
    asset: AssetConfig, live: EquipmentLive, *, today: date, last_inspected: date | None = None
) -> tuple[float, list[Factor]]:
    """How likely the equipment is to be failing, and why (see the module's docstring)."""
    factors: list[Factor] = []
    worst = 0.0
    for a in live.alarms:
        if a.rule in BUILTIN_RULES:
            worst = max(worst, SEVERITY_WEIGHT.get(a.severity, 0.5))
    if worst:
        text = "; ".join(
            f"{a.severity} {a.rule} alarm on {a.device}/{a.point}" for a in live.alarms if a.rule in BUILTIN_RULES
        )
        factors.append(Factor("alarm", worst, f"active alarm: {text}"))
    learned = [a for a in live.alarms if a.rule not in BUILTIN_RULES]
    if learned:
        scores = [min(1.0, max(0.0, a.value)) if a.value is not None and 0 <= a.value <= 1 else 0.6 for a in learned]
        best = max(scores)
        names = ", ".join(sorted({a.rule for a in learned}))
        factors.append(Factor("anomaly", best, f"anomaly score {best:.2f} from {names}"))
    if live.state in STATE_WEIGHT:
        why = "; ".join(live.reasons) or live.state.value
        factors.append(Factor("state", STATE_WEIGHT[live.state], f"{live.state.value}: {why}"))
    v = live.ageing_rate
    if v is not None and v > 1.0:
        w = min(1.0, math.log2(v) / 6.0)
        factors.append(
            Factor("ageing", w, f"hot spot {live.hot_spot_c:.0f} °C ages its paper {v:.1f}× the normal rate")
        )
    dates = [d for d in (last_inspected, asset.last_inspected) if d is not None]
    seen = max(dates) if dates else None
    if seen is None:
        factors.append(Factor("inspection", 0.5, "never inspected"))
    else:
        days = max(0, (today - seen).days)
        factors.append(Factor("inspection", min(0.5, 0.5 * days / 365.0), f"last inspected {days} days ago"))
    return BASE_LIKELIHOOD + sum(f.weight for f in factors), factors


# -- consequence -----------------------------------------------------------------------------

_CACHE: dict[tuple, Consequence] = {}
_CACHE_LOCK = threading.Lock()


def _branch_rating_mva(net: pp.pandapowerNet, kind: str, idx: int) -> float:
    if kind == "trafo":
        return float(net.trafo.at[idx, "sn_mva"])
    line = net.line.loc[idx]
    vn = float(net.bus.at[int(line.from_bus), "vn_kv"])
    return math.sqrt(3) * vn * float(line.max_i_ka) * float(line.get("parallel", 1) or 1)


def trip_consequence(
    net: pp.pandapowerNet,
    element: ElementRef,
    *,
    band: tuple[float, float] = (0.95, 1.05),
    limit: float = 100.0,
) -> Consequence:
    """The power flow with `element` out of service (a switch: the branch or bus it connects)."""
    kind, idx = element.kind.value, element.index
    if element.kind is ElementKind.SWITCH:
        sw = net.switch.loc[idx]
        kind = {"l": "line", "t": "trafo", "b": "bus"}.get(str(sw.et), "bus")
        idx = int(sw.element) if kind != "bus" else int(sw.bus)
    name = f"{kind} {idx}"
    trial = copy.deepcopy(net)
    table = getattr(trial, kind)
    if idx not in table.index:
        raise KeyError(f"{name} is not in the network; fix the element of the asset in assets.yaml")
    table.at[idx, "in_service"] = False
    try:
        summary = power_flow(trial, band, limit)
    except PowerFlowError as exc:
        load = float(net.load[net.load.in_service].p_mw.clip(lower=0).sum())
        return Consequence(name, load, load, 0.0, (), f"no power flow without it ({exc}): all load counted")
    shed = 0.0
    over: list[str] = []
    for bkind in ("line", "trafo"):
        res = getattr(trial, f"res_{bkind}")
        if not len(res):
            continue
        for bidx, pct in res.loading_percent.dropna().items():
            if pct > limit:
                shed += (pct - limit) / 100.0 * _branch_rating_mva(trial, bkind, int(bidx))
                over.append(f"{bkind} {bidx} ({pct:.0f} %)")
    mw = max(CONSEQUENCE_FLOOR_MW, summary.unsupplied_mw + shed)
    return Consequence(name, mw, summary.unsupplied_mw, shed, tuple(over))


def _load_moment(settings: Settings, historian: Historian | None, now_ns: int) -> int:
    """The moment the network's loads describe: the simulator's clock when one runs, else now."""
    if historian is not None:
        clock = historian.latest(SIM_CLOCK, tags={"site": settings.site.name}, end_ns=now_ns)
        if clock:
            return int(clock[0].fields["sim_time_ns"])
    return now_ns


def _network_at(settings: Settings, when_ns: int) -> pp.pandapowerNet:
    """The network with its loads and generation at `when_ns` (its profiles, when it has them)."""
    import pandas as pd

    from gridmodel.network import apply_profiles, load_grid, profile_values

    grid = load_grid(settings.site.network)
    if grid.profiles:
        apply_profiles(grid.net, profile_values(grid.profiles, pd.Timestamp(when_ns, tz="UTC")))
    return grid.net


def consequences(
    settings: Settings,
    elements: Sequence[ElementRef],
    *,
    historian: Historian | None = None,
    now_ns: int | None = None,
    net: pp.pandapowerNet | None = None,
) -> dict[tuple[str, int], Consequence]:
    """Each element's trip consequence, computed once per network, element and hour of load
    (the network is loaded only when something is not cached yet)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    when = _load_moment(settings, historian, now_ns)
    hour = when // 3_600_000_000_000
    network_key = repr(settings.site.network) if net is None else f"net-{id(net)}"
    band = (float(settings.anomaly.voltage_band_pu[0]), float(settings.anomaly.voltage_band_pu[1]))
    limit = float(settings.anomaly.loading_limit_percent)
    out: dict[tuple[str, int], Consequence] = {}
    for element in elements:
        key = (element.kind.value, element.index)
        cache_key = (network_key, hour, key)
        with _CACHE_LOCK:
            hit = _CACHE.get(cache_key)
        if hit is None:
            if net is None:
                net = _network_at(settings, when)
            hit = trip_consequence(net, element, band=band, limit=limit)
            with _CACHE_LOCK:
                _CACHE[cache_key] = hit
        out[key] = hit
    return out


def last_inspections(settings: Settings) -> dict[str, date]:
    """Each asset's last completed inspection step in the audit record (`inspect.step`)."""
    try:
        from gridverse.audit import open_audit

        entries = open_audit(settings).entries()
    except Exception as exc:  # no audit section or unreadable record: assets.yaml dates stand
        log.debug("inspection: no audit record to read last inspections from: %s", exc)
        return {}
    out: dict[str, date] = {}
    for e in entries:
        if e.action != "inspect.step" or not e.target:
            continue
        try:
            day = datetime.fromisoformat(e.time.replace("Z", "+00:00")).astimezone(UTC).date()
        except ValueError:
            continue
        out[e.target] = max(day, out.get(e.target, day))
    return out


def assess(
    settings: Settings,
    historian: Historian,
    substation: str,
    *,
    now_ns: int | None = None,
    window_s: float = 120.0,
    net: pp.pandapowerNet | None = None,
    assets: Sequence[AssetConfig] | None = None,
) -> list[EquipmentRisk]:
    """Every asset of `substation` with its risk, riskiest first."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    assets = list(settings.assets.get(substation, []) if assets is None else assets)
    if not assets:
        raise LookupError(
            f"no equipment for substation {substation!r} in assets.yaml (known: {', '.join(settings.assets) or 'none'})"
        )
    live = live_states(settings.site, assets, historian, substation, now_ns - int(window_s * 1e9))
    elements = {a.name: elements_of(a, settings.site) for a in assets}
    branchy = {
        a: next(
            (e for e in els if e.kind in (ElementKind.LINE, ElementKind.TRAFO)),
            next((e for e in els if e.kind in (ElementKind.SWITCH, ElementKind.BUS)), None),
        )
        for a, els in elements.items()
    }
    cons = consequences(
        settings, [e for e in branchy.values() if e is not None], historian=historian, now_ns=now_ns, net=net
    )
    seen = last_inspections(settings)
    today = datetime.fromtimestamp(now_ns / 1e9, tz=UTC).date()
    out = []
    for asset in assets:
        lk, factors = likelihood(asset, live[asset.name], today=today, last_inspected=seen.get(asset.name))
        element = branchy[asset.name]
        consequence = cons.get((element.kind.value, element.index)) if element is not None else None
        out.append(EquipmentRisk(asset, live[asset.name], lk, consequence, tuple(factors)))
    out.sort(key=lambda r: -r.risk)
    return out
