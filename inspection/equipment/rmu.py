"""Ring-main unit (secondary substation switchgear, a private SCL type ERMU): the gas tank
enclosure on a plinth and three panel fronts (two ring switches and the transformer feeder,
state colour)."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

RMU = register(
    EquipmentKind(
        kind=AssetKind.RMU,
        parts=(
            PartSpec("plinth", Primitive.BOX, (1.9, 0.9, 0.3), (0.0, 0.0, 0.0)),
            PartSpec("enclosure", Primitive.BOX, (1.8, 0.8, 1.4), (0.0, 0.0, 0.3)),
            *(
                PartSpec(f"panel{i}", Primitive.BOX, (0.5, 0.06, 1.1), (dx, -0.43, 0.45), ColourRole.STATE)
                for i, dx in enumerate((-0.6, 0.0, 0.6))
            ),
            PartSpec("cable_box", Primitive.BOX, (1.8, 0.06, 0.5), (0.0, 0.43, 0.3)),
        ),
    )
)
