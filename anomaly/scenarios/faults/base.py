"""What a fault kind is: how it picks a target and what it does to the grid or to the telemetry.

Three families, each applied at its own stage of the generator:

- `MeasurementFault`: a meter lies; it rewrites one point's column of the noisy telemetry;
- `GridEvent`: the grid itself changes; the generator calls `apply` on the network before each
  power flow of the window, so every meter sees the event consistently (and `thermal` for the
  transformer top-oil model);
- `InjectionAttack`: an attacker rewrites several telemetered points at once, knowing the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from anomaly.scenarios.generator import GridContext

_REGISTRY: dict[str, type[FaultKind]] = {}


def register(cls: type[FaultKind]) -> type[FaultKind]:
    """Class decorator: add a fault kind under its `name` (unique)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(
            f"fault kind {cls.name!r} registered twice ({_REGISTRY[cls.name].__module__}, {cls.__module__})"
        )
    _REGISTRY[cls.name] = cls
    return cls


@dataclass
class Fault:
    """One drawn fault: kind, window (step indices, both inclusive), target and parameters."""

    kind: str
    start: int
    end: int
    element_type: str
    element: int
    point: str = ""  # the faulty point (measurement faults), else empty
    params: dict[str, Any] = field(default_factory=dict)

    def active(self, step: int) -> bool:
        return self.start <= step <= self.end

    def targets(self) -> set[tuple[str, Any]]:
        """What this fault occupies: two faults sharing a target never overlap in time."""
        out: set[tuple[str, Any]] = {(self.element_type, self.element)}
        if self.point:
            out.add(("point", self.point))
        return out


class FaultKind:
    """A kind of fault. `draw` picks a target and parameters (None: nothing in this grid fits)."""

    name: ClassVar[str]
    family: ClassVar[str]  # measurement | grid | attack
    #: window length in hours (min, max); a spike is one sample
    hours: ClassVar[tuple[float, float]] = (1.0, 6.0)
    #: allowed hours of day for the start (PV needs the sun), or None
    start_hours: ClassVar[tuple[int, int] | None] = None

    def draw(self, ctx: GridContext, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        raise NotImplementedError


class MeasurementFault(FaultKind):
    family = "measurement"
    #: quantities this fault can hit
    quantities: ClassVar[tuple[str, ...]] = ("v_pu", "p_mw", "q_mvar", "i_ka", "temp_oil_c")

    def draw(self, ctx: GridContext, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        candidates = ctx.points.index[ctx.points.quantity.isin(self.quantities)]
        if not len(candidates):
            return None
        point = str(rng.choice(candidates))
        row = ctx.points.loc[point]
        fault = Fault(self.name, start, end, str(row.element_type), int(row.element), point)
        fault.params = self.parameters(ctx, rng, point)
        return fault

    def parameters(self, ctx: GridContext, rng: np.random.Generator, point: str) -> dict[str, Any]:
        return {}

    def apply(self, fault: Fault, column: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
        """Rewrite `column[fault.start:fault.end + 1]` in place (the point's noisy series)."""
        raise NotImplementedError


class GridEvent(FaultKind):
    family = "grid"

    def apply(self, fault: Fault, net: Any, ctx: GridContext) -> None:
        """Change the network for one step of the window (the generator resets it every step)."""

    def observe(self, fault: Fault, net: Any, ctx: GridContext) -> bool:
        """Look at the solved power flow of a step in the window (e.g. to name the worst bus);
        True asks for the step to be solved again after `apply` (an event that calibrates itself)."""
        return False

    def rise_factor(self, fault: Fault, trafo: int) -> float:
        """Multiplier of a transformer's rated top-oil rise during the window (1: normal cooling)."""
        return 1.0

    def settle(self, fault: Fault, ctx: GridContext) -> bool:
        """After the simulation: adjust the labelled window to what the grid really did (False:
        the event had no effect worth a label, and the grid is simulated again without it). `ctx`
        holds what the simulation recorded (`ctx.extra`, e.g. `oil_excess_k`)."""
        return True


class InjectionAttack(FaultKind):
    family = "attack"
