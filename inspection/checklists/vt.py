"""Voltage transformer: tank, insulator, fuses and secondary box, thermography."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

VT = register(
    Checklist(
        AssetKind.VT,
        (
            CheckItem("tank", "Tank: no oil leak or swelling; oil level indicator in range"),
            CheckItem("insulator", "Insulator clean, no cracks or tracking", compare=("PPV", "PhV")),
            CheckItem("secondary_box", "Secondary fuses or MCBs intact, box closed and dry"),
            thermography("primary terminal"),
        ),
    )
)
