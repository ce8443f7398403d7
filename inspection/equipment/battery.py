"""Battery energy storage (SCL BAT): the battery container (state colour), its power conversion
cabinet at one end and the HVAC unit at the other."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

BATTERY = register(
    EquipmentKind(
        kind=AssetKind.BATTERY,
        parts=(
            PartSpec("container", Primitive.BOX, (6.0, 2.4, 2.6), (0.0, 0.0, 0.0), ColourRole.STATE),
            PartSpec("pcs", Primitive.BOX, (1.0, 1.0, 2.0), (-3.5, 0.0, 0.0)),
            PartSpec("hvac", Primitive.BOX, (0.8, 0.6, 0.9), (3.4, 0.0, 1.2)),
        ),
    )
)
