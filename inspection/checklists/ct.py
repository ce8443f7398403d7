"""Current transformer: housing, insulator, secondary terminal box, thermography."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

CT = register(
    Checklist(
        AssetKind.CT,
        (
            CheckItem("housing", "Head and housing: no oil or gas leak, oil level or pressure indicator in range"),
            CheckItem("insulator", "Insulator clean, no cracks or tracking"),
            CheckItem("secondary_box", "Secondary terminal box closed and dry; no open-circuited secondary"),
            CheckItem(
                "primary_current",
                "Clamp-meter current on the primary conductor, against the telemetered current",
                reading="current_a",
                compare=("MMXU1.A",),
            ),
            thermography("primary terminals"),
        ),
    )
)
