"""PV inverter (SCL GEN, the grid-side converter of a PV plant): the cabinet (state colour) on a
stand, its heat sink at the back and the display at the front."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

PV_INVERTER = register(
    EquipmentKind(
        kind=AssetKind.PV_INVERTER,
        parts=(
            PartSpec("stand", Primitive.BOX, (0.8, 0.3, 0.6), (0.0, 0.0, 0.0)),
            PartSpec("cabinet", Primitive.BOX, (1.0, 0.4, 1.2), (0.0, 0.0, 0.6), ColourRole.STATE),
            PartSpec("heatsink", Primitive.BOX, (0.8, 0.1, 0.9), (0.0, 0.25, 0.75)),
            PartSpec("display", Primitive.BOX, (0.3, 0.1, 0.2), (0.0, -0.25, 1.4)),
        ),
    )
)
