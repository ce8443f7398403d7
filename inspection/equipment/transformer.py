"""Power transformer: a tank (state colour), four radiators and three bushings."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

TRANSFORMER = register(
    EquipmentKind(
        kind=AssetKind.TRANSFORMER,
        parts=(
            PartSpec("tank", Primitive.BOX, (4.0, 2.6, 3.0), (0.0, 0.0, 0.0), ColourRole.STATE),
            *(
                PartSpec(f"radiator{i}", Primitive.BOX, (0.15, 2.2, 2.4), (dx, 0.0, 0.3))
                for i, dx in enumerate((-2.3, -2.6, 2.3, 2.6))
            ),
            *(
                PartSpec(f"bushing{i}", Primitive.CYLINDER, (0.18, 1.6), (dx, 0.0, 3.8))
                for i, dx in enumerate((-1.2, 0.0, 1.2))
            ),
        ),
    )
)
