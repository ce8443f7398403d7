"""Power transformer: the tank (state colour), four radiator banks, the conservator on top, three HV
and three LV bushings, and two tertiary bushings when the asset has a third winding. Drawn for a
25 MVA unit and scaled by its rating (the largest winding's `rated_mva`): linear size grows as
rating^(1/4) (transformer mass grows about as rating^(3/4)), so a 630 kVA distribution
transformer stands at 0.4 of the size."""

from __future__ import annotations

from inspection.config import AssetConfig, AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

REFERENCE_MVA = 25.0


def size_factor(asset: AssetConfig) -> float:
    """How large this transformer is drawn against the 25 MVA drawing (1 without a rating)."""
    ratings = [w.rated_mva for w in asset.windings if w.rated_mva]
    if not ratings:
        return 1.0
    return min(1.6, max(0.3, (max(ratings) / REFERENCE_MVA) ** 0.25))


def _scaled(part: PartSpec, k: float) -> PartSpec:
    if k == 1.0:
        return part
    size = tuple(v * k for v in part.size)
    offset = (part.offset[0] * k, part.offset[1] * k, part.offset[2] * k)
    return PartSpec(part.name, part.primitive, size, offset, part.colour, part.axis)


def transformer_parts(asset: AssetConfig) -> list[PartSpec]:
    parts = [
        PartSpec("tank", Primitive.BOX, (4.0, 2.6, 3.0), (0.0, 0.0, 0.0), ColourRole.STATE),
        *(
            PartSpec(f"radiator{i}", Primitive.BOX, (0.15, 2.2, 2.4), (dx, 0.0, 0.3))
            for i, dx in enumerate((-2.3, -2.6, 2.3, 2.6))
        ),
        PartSpec("conservator", Primitive.CYLINDER, (0.4, 2.4), (0.0, 1.0, 4.0), axis="x"),
        *(
            PartSpec(f"hv_bushing{i}", Primitive.CYLINDER, (0.18, 1.6), (dx, -0.6, 3.8))
            for i, dx in enumerate((-1.2, 0.0, 1.2))
        ),
        *(
            PartSpec(f"lv_bushing{i}", Primitive.CYLINDER, (0.12, 0.9), (dx, 0.3, 3.45))
            for i, dx in enumerate((-0.8, 0.0, 0.8))
        ),
    ]
    if len(asset.windings) == 3:
        parts += [
            PartSpec(f"tv_bushing{i}", Primitive.CYLINDER, (0.1, 0.7), (dx, 0.3, 3.35))
            for i, dx in enumerate((-1.6, 1.6))
        ]
    k = size_factor(asset)
    return [_scaled(p, k) for p in parts]


TRANSFORMER = register(EquipmentKind(kind=AssetKind.TRANSFORMER, parts=transformer_parts))
