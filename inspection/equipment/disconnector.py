"""Disconnector (SCL DIS): a centre-break switch on a steel support: a base beam, two post
insulators and the blade between them (state colour: grey when open)."""

from __future__ import annotations

from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

DISCONNECTOR = register(
    EquipmentKind(
        kind=AssetKind.DISCONNECTOR,
        parts=(
            PartSpec("support", Primitive.BOX, (0.3, 0.3, 2.2), (0.0, 0.0, 0.0)),
            PartSpec("base", Primitive.BOX, (2.4, 0.4, 0.2), (0.0, 0.0, 2.2)),
            PartSpec("insulator0", Primitive.CYLINDER, (0.09, 1.1), (-1.0, 0.0, 2.95)),
            PartSpec("insulator1", Primitive.CYLINDER, (0.09, 1.1), (1.0, 0.0, 2.95)),
            PartSpec("blade", Primitive.BOX, (2.2, 0.08, 0.08), (0.0, 0.0, 3.5), ColourRole.STATE),
        ),
    )
)
