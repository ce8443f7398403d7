"""Circuit breaker (SCL CBR): a steel frame, the operating mechanism cabinet and the pole unit on
top (state colour: grey when open)."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

BREAKER = register(
    EquipmentKind(
        kind=AssetKind.BREAKER,
        parts=(
            PartSpec("frame", Primitive.BOX, (0.6, 0.6, 2.0), (0.0, 0.0, 0.0)),
            PartSpec("mechanism", Primitive.BOX, (0.7, 0.4, 0.8), (0.0, 0.0, 0.9)),
            PartSpec("pole", Primitive.BOX, (1.4, 0.9, 1.4), (0.0, 0.0, 2.0), ColourRole.STATE),
        ),
    )
)
