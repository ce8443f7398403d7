"""Battery storage container: BMS alarms, HVAC, fire suppression, enclosure, thermography."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

BATTERY = register(
    Checklist(
        AssetKind.BATTERY,
        (
            CheckItem(
                "bms", "BMS panel: no active alarms; state of charge agrees with telemetry", compare=("SoC", "W")
            ),
            CheckItem("hvac", "HVAC running, container temperature within the maker's band"),
            CheckItem("fire_suppression", "Fire suppression cylinder gauge in the green; detectors healthy"),
            CheckItem("enclosure", "Doors sealed, no swelling, leaks or smell of electrolyte"),
            thermography("PCS and DC busbar connections"),
        ),
    )
)
