"""Busbar: a conductor along x at 5 m (state colour) on four post insulators; its length comes
from the asset's `length`."""

from __future__ import annotations

import numpy as np

from inspection.config import AssetConfig, AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register


def busbar_parts(asset: AssetConfig) -> list[PartSpec]:
    half = asset.length / 2
    return [
        PartSpec("conductor", Primitive.CYLINDER, (0.12, asset.length), (0.0, 0.0, 5.0), ColourRole.STATE, axis="x"),
        *(
            PartSpec(f"post{i}", Primitive.CYLINDER, (0.15, 5.0), (float(dx), 0.0, 2.5))
            for i, dx in enumerate(np.linspace(-half, half, 4))
        ),
    ]


BUSBAR = register(EquipmentKind(kind=AssetKind.BUSBAR, parts=busbar_parts))
