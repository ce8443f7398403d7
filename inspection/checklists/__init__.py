"""Inspection checklists, one file per equipment kind: a module here that calls
`register(Checklist(...))` says what a technician checks on that kind, which readings they take
and which live values they compare them against. Adding a kind's checklist is adding one file.

Readings have a fixed vocabulary (`READINGS`): each becomes a historian point (source `manual`,
with its σ) named after the IEC 61850 data object it stands for, so the twin and the detectors
read a clamp-meter current as they read a telemetered one."""

from __future__ import annotations

from gridverse.plugins import import_plugins
from inspection.checklists.base import (
    READINGS,
    CheckItem,
    Checklist,
    Grade,
    ReadingKind,
    grade_reading,
    neta_thermography_grade,
    register,
    sf6_at_20c,
)
from inspection.config import AssetKind

__all__ = [
    "READINGS",
    "CheckItem",
    "Checklist",
    "Grade",
    "ReadingKind",
    "checklist_for",
    "checklists",
    "grade_reading",
    "neta_thermography_grade",
    "register",
    "sf6_at_20c",
]


def checklists() -> dict[AssetKind, Checklist]:
    """Every registered checklist, after importing each module of this package."""
    import_plugins(__name__, __path__)
    from inspection.checklists.base import _REGISTRY

    return dict(_REGISTRY)


def checklist_for(kind: AssetKind) -> Checklist:
    """The checklist of one kind; a kind without a file is an error naming the remedy."""
    known = checklists()
    if kind not in known:
        raise LookupError(
            f"no inspection checklist for asset kind {kind.value!r}: add inspection/checklists/{kind.value}.py "
            f"that registers a Checklist (known: {', '.join(sorted(k.value for k in known))})"
        )
    return known[kind]
