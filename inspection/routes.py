"""Inspection routes generated from live risk: the riskiest equipment first, along a short walk.

The rule. Equipment is put in tiers: tier 1 holds everything in alarm (an active alarm asks for a
look now, whatever the score); of the rest, tier 2 holds what has at least half the highest
risk, tier 3 at least a tenth of it, tier 4 the rest. Tiers are walked in order, so no step of a
later tier comes before an earlier tier's. The first tier walked starts at its riskiest
equipment; each tier after starts nearest to where the previous one ended. Within a
tier the walk is a nearest-neighbour path improved by 2-opt (its first step kept), over the
equipment's positions on the substation plot. Sensors are not steps of their own: their checks
belong to the equipment they monitor (its checklist compares against their values).

Each step carries the equipment, why it is on the route (its risk factors and consequence),
its kind's checklist, and the live values each check compares against."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandapower as pp

from gridverse.config import Settings
from gridverse.historian import Historian
from inspection.checklists import Checklist, checklist_for
from inspection.checklists.base import READINGS
from inspection.config import AssetKind
from inspection.risk import EquipmentRisk, assess
from inspection.state import AssetState

TIER_FRACTIONS = (0.5, 0.1)  # of the equipment not in alarm: tier 2 from half the highest risk, tier 3 from a tenth
RULE = (
    "tiers (1: in alarm; of the rest by risk, 2: ≥ 50 % of the highest, 3: ≥ 10 %, 4: the rest), walked in "
    "order; the first tier starts at its riskiest equipment, each later tier nearest to where the previous "
    "ended; within a tier nearest-neighbour then 2-opt over positions"
)

Xy = tuple[float, float]


@dataclass(frozen=True)
class Check:
    """One checklist item of a step, with the live values to compare its reading against."""

    key: str
    text: str
    reading: str | None
    unit: str
    compare: dict[str, float]


@dataclass(frozen=True)
class RouteStep:
    number: int
    asset: str
    kind: str
    position: Xy
    tier: int
    risk: float
    likelihood: float
    consequence_mw: float
    state: str
    why: tuple[str, ...]
    checks: tuple[Check, ...]
    values: dict[str, float] = field(default_factory=dict)
    walk_m: float = 0.0  # from the previous step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Route:
    substation: str
    generated: str  # UTC ISO time
    steps: tuple[RouteStep, ...]
    length_m: float
    rule: str = RULE

    def to_dict(self) -> dict[str, Any]:
        return {
            "substation": self.substation,
            "generated": self.generated,
            "length_m": round(self.length_m, 1),
            "rule": self.rule,
            "steps": [s.to_dict() for s in self.steps],
        }

    def step(self, asset: str) -> RouteStep:
        for s in self.steps:
            if s.asset == asset:
                return s
        raise KeyError(f"{asset!r} is not on the route of {self.substation}")


def risk_tiers(risks: Sequence[EquipmentRisk]) -> list[int]:
    """The tier of each equipment (1 first), by the rule in this module's docstring."""
    calm = [r.risk for r in risks if r.live.state is not AssetState.ALARM]
    top = max(calm, default=0.0)
    out = []
    for r in risks:
        if r.live.state is AssetState.ALARM:
            out.append(1)
        elif top > 0 and r.risk >= TIER_FRACTIONS[0] * top:
            out.append(2)
        elif top > 0 and r.risk >= TIER_FRACTIONS[1] * top:
            out.append(3)
        else:
            out.append(4)
    return out


def _dist(a: Xy, b: Xy) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def path_length(points: Sequence[Xy], start: Xy | None = None) -> float:
    legs = sum(_dist(a, b) for a, b in zip(points, points[1:], strict=False))
    return legs + (_dist(start, points[0]) if start is not None and points else 0.0)


def walk_order(points: Sequence[Xy], *, first: int | None = None, start: Xy | None = None) -> list[int]:
    """A short open walk through `points`: nearest neighbour from `first` (or from the point
    nearest `start`), then 2-opt with the first point kept."""
    n = len(points)
    if n == 0:
        return []
    if first is None:
        origin = start if start is not None else points[0]
        first = min(range(n), key=lambda i: (_dist(origin, points[i]), i))
    order = [first]
    left = set(range(n)) - {first}
    while left:
        here = points[order[-1]]
        nxt = min(left, key=lambda i: (_dist(here, points[i]), i))
        order.append(nxt)
        left.remove(nxt)
    improved = True
    while improved:
        improved = False
        for i in range(1, n - 1):
            for j in range(i + 1, n):
                a, b = points[order[i - 1]], points[order[i]]
                c = points[order[j]]
                d = points[order[j + 1]] if j + 1 < n else None
                before = _dist(a, b) + (_dist(c, d) if d is not None else 0.0)
                after = _dist(a, c) + (_dist(b, d) if d is not None else 0.0)
                if after < before - 1e-9:
                    order[i : j + 1] = reversed(order[i : j + 1])
                    improved = True
    return order


def _checks(checklist: Checklist, values: dict[str, float]) -> tuple[Check, ...]:
    out = []
    for item in checklist.items:
        compare = {k: v for k, v in values.items() for suffix in item.compare if k.endswith(suffix)}
        unit = READINGS[item.reading].unit if item.reading else ""
        out.append(Check(item.key, item.text, item.reading, unit, compare))
    return tuple(out)


def plan_route(
    substation: str,
    risks: Sequence[EquipmentRisk],
    *,
    entrance: Xy | None = None,
    now_ns: int | None = None,
) -> Route:
    """Order the assessed equipment into a route (the rule in this module's docstring)."""
    steps_in = [r for r in risks if r.asset.kind is not AssetKind.SENSOR]
    tiers = risk_tiers(steps_in)
    ordered: list[tuple[EquipmentRisk, int]] = []
    here = entrance
    for tier in sorted(set(tiers)):
        members = [r for r, t in zip(steps_in, tiers, strict=True) if t == tier]
        points = [tuple(map(float, r.asset.position)) for r in members]
        first = max(range(len(members)), key=lambda i: members[i].risk) if tier == min(tiers) else None
        for i in walk_order(points, first=first, start=here):  # type: ignore[arg-type]
            ordered.append((members[i], tier))
        here = tuple(map(float, ordered[-1][0].asset.position))  # type: ignore[assignment]
    steps = []
    prev: Xy | None = entrance
    total = 0.0
    for n, (r, tier) in enumerate(ordered, start=1):
        pos: Xy = (float(r.asset.position[0]), float(r.asset.position[1]))
        walk = _dist(prev, pos) if prev is not None else 0.0
        total += walk
        prev = pos
        steps.append(
            RouteStep(
                number=n,
                asset=r.asset.name,
                kind=r.asset.kind.value,
                position=pos,
                tier=tier,
                risk=round(r.risk, 4),
                likelihood=round(r.likelihood, 3),
                consequence_mw=round(r.consequence_mw, 3),
                state=r.live.state.value,
                why=tuple(r.why),
                checks=_checks(checklist_for(r.asset.kind), r.live.values),
                values={k: round(v, 4) for k, v in r.live.values.items()},
                walk_m=round(walk, 1),
            )
        )
    t = time.time_ns() if now_ns is None else now_ns
    generated = datetime.fromtimestamp(t / 1e9, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Route(substation, generated, tuple(steps), total)


def build_route(
    settings: Settings,
    historian: Historian,
    substation: str,
    *,
    now_ns: int | None = None,
    window_s: float = 120.0,
    net: pp.pandapowerNet | None = None,
) -> Route:
    """Assess every equipment of `substation` from live data and the twin's N-1, and route it."""
    risks = assess(settings, historian, substation, now_ns=now_ns, window_s=window_s, net=net)
    return plan_route(substation, risks, now_ns=now_ns)


def format_route(route: Route) -> str:
    """The route as text for a terminal: one block per step."""
    lines = [f"Inspection route for {route.substation} ({route.generated}), {route.length_m:.0f} m walk"]
    for s in route.steps:
        lines.append("")
        lines.append(
            f"{s.number:2d}. {s.asset} [{s.kind}] state {s.state}, risk {s.risk:.3g} "
            f"(likelihood {s.likelihood:.2f} × {s.consequence_mw:.2f} MW), tier {s.tier}, walk {s.walk_m:.0f} m"
        )
        lines += [f"    why: {w}" for w in s.why]
        for c in s.checks:
            reading = f" [reading: {c.reading}, {c.unit}]" if c.reading else ""
            compare = "  compare: " + ", ".join(f"{k} = {v:.4g}" for k, v in c.compare.items()) if c.compare else ""
            lines.append(f"    [ ] {c.key}: {c.text}{reading}{compare}")
    lines.append("")
    lines.append(f"rule: {route.rule}")
    return "\n".join(lines)
