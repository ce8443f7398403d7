"""Busbar: post insulators, conductor joints (thermography), voltage against the telemetered one."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

BUSBAR = register(
    Checklist(
        AssetKind.BUSBAR,
        (
            CheckItem("insulators", "Post insulators clean, no cracks, tracking or bird nests", compare=("PPV",)),
            CheckItem("conductor", "Conductor and clamps: no sag, broken strands or loose clamps"),
            thermography("joints and clamps"),
        ),
    )
)
