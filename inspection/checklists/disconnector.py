"""Disconnector: blade position and contact, insulators, operating mechanism, thermography."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

DISCONNECTOR = register(
    Checklist(
        AssetKind.DISCONNECTOR,
        (
            CheckItem("position", "Blade fully closed (or open) as telemetered; contacts aligned", compare=("Pos",)),
            CheckItem("insulators", "Post insulators clean, no cracks or chipped sheds"),
            CheckItem("mechanism", "Operating mechanism and interlock locked, earth switch position as expected"),
            thermography("main contacts and terminals"),
        ),
    )
)
