"""Sensor (e.g. a transformer's oil thermometer): a sphere at 3.4 m in the state colour."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

SENSOR = register(
    EquipmentKind(
        kind=AssetKind.SENSOR,
        parts=(PartSpec("sensor", Primitive.SPHERE, (0.45,), (0.0, 0.0, 3.4), ColourRole.STATE),),
    )
)
