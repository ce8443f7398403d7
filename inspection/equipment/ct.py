"""Current transformer (SCL CTR), top-core type: a support, the porcelain insulator and the head
that holds the cores (state colour)."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

CT = register(
    EquipmentKind(
        kind=AssetKind.CT,
        parts=(
            PartSpec("support", Primitive.BOX, (0.4, 0.4, 2.0), (0.0, 0.0, 0.0)),
            PartSpec("insulator", Primitive.CYLINDER, (0.22, 1.6), (0.0, 0.0, 2.8)),
            PartSpec("head", Primitive.BOX, (0.9, 0.6, 0.6), (0.0, 0.0, 3.6), ColourRole.STATE),
        ),
    )
)
