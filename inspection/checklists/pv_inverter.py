"""PV inverter: display and fault log, cooling, DC isolators, AC current, thermography."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

PV_INVERTER = register(
    Checklist(
        AssetKind.PV_INVERTER,
        (
            CheckItem(
                "display", "Display shows operating (no fault codes); output agrees with telemetry", compare=("W",)
            ),
            CheckItem("cooling", "Fans running, heatsink and air inlets clean"),
            CheckItem("dc_isolators", "DC isolators closed and undamaged; string fuses intact"),
            CheckItem(
                "ac_current",
                "Clamp-meter AC output current, against the telemetered current",
                reading="current_a",
                compare=("A",),
            ),
            thermography("AC and DC terminals"),
        ),
    )
)
