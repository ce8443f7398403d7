"""Fault kinds, one file each: every module here that defines a class decorated with `@register`
adds a kind to the generator; nothing else needs editing (the same registry as the detectors').

Measurement faults rewrite one point's telemetry (stuck, drift, spike, dropout, bias); grid
events change the network during their window before the power flow (line outage, transformer
overheating, PV overvoltage, PV trip, energy theft); `fdia` is a stealthy false-data injection.
"""

from __future__ import annotations

from anomaly.scenarios.faults.base import (
    Fault,
    FaultKind,
    GridEvent,
    InjectionAttack,
    MeasurementFault,
    register,
)
from gridverse.plugins import import_plugins

__all__ = ["Fault", "FaultKind", "GridEvent", "InjectionAttack", "MeasurementFault", "fault_kinds", "register"]


def fault_kinds() -> dict[str, type[FaultKind]]:
    """Every registered fault kind by name, after importing each module of this package."""
    import_plugins(__name__, __path__)
    from anomaly.scenarios.faults.base import _REGISTRY

    return dict(sorted(_REGISTRY.items()))
