"""Cable termination (sealing end): stress cone, sealing, earthing, thermography."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

CABLE_TERMINATION = register(
    Checklist(
        AssetKind.CABLE_TERMINATION,
        (
            CheckItem("stress_cone", "Terminations: no tracking, discharge marks or swelling at the stress cones"),
            CheckItem("sealing", "Sealing ends and glands tight, no compound or oil leak"),
            CheckItem("earthing", "Screen earth connections present and tight"),
            CheckItem(
                "cable_current",
                "Clamp-meter current on each phase, against the telemetered current",
                reading="current_a",
                compare=("MMXU1.A", "loading_percent"),
            ),
            thermography("lugs and terminations"),
        ),
    )
)
