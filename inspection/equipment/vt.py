"""Voltage transformer (SCL VTR), inductive type: a support, the tank at its foot (state colour),
the insulator and the HV terminal on top."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

VT = register(
    EquipmentKind(
        kind=AssetKind.VT,
        parts=(
            PartSpec("support", Primitive.BOX, (0.4, 0.4, 2.0), (0.0, 0.0, 0.0)),
            PartSpec("tank", Primitive.BOX, (0.7, 0.7, 0.6), (0.0, 0.0, 2.0), ColourRole.STATE),
            PartSpec("insulator", Primitive.CYLINDER, (0.2, 1.4), (0.0, 0.0, 3.3)),
            PartSpec("terminal", Primitive.SPHERE, (0.12,), (0.0, 0.0, 4.1)),
        ),
    )
)
