"""Cable termination (SCL CAB, the sealing end where a cable meets the busbar): a support, a
bracket and one termination per phase (state colour), with the cable running down the support."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

CABLE_TERMINATION = register(
    EquipmentKind(
        kind=AssetKind.CABLE_TERMINATION,
        parts=(
            PartSpec("support", Primitive.BOX, (0.3, 0.3, 2.4), (0.0, 0.0, 0.0)),
            PartSpec("cable", Primitive.CYLINDER, (0.18, 2.4), (0.0, 0.0, 1.2)),
            PartSpec("bracket", Primitive.BOX, (1.4, 0.3, 0.12), (0.0, 0.0, 2.4)),
            *(
                PartSpec(f"termination{i}", Primitive.CYLINDER, (0.1, 0.9), (dx, 0.0, 2.97), ColourRole.STATE)
                for i, dx in enumerate((-0.5, 0.0, 0.5))
            ),
        ),
    )
)
