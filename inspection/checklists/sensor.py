"""Sensor (e.g. a transformer's oil thermometer): reading checked against a hand-held reference."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register
from inspection.config import AssetKind

SENSOR = register(
    Checklist(
        AssetKind.SENSOR,
        (
            CheckItem(
                "reference",
                "Hand-held reference reading beside the sensor's probe, against the sensor's value",
                reading="top_oil_c",
                compare=("TmpOil",),
            ),
            CheckItem("wiring", "Sensor head, cable and gland undamaged; enclosure dry"),
        ),
    )
)
