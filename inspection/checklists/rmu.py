"""Ring-main unit: SF6 gauge in its green band (MV levels), switch positions, voltage presence
indicators, cable boxes, partial-discharge signs."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

#: A typical SF6-insulated RMU's levels (absolute, bar at 20 °C): filled at 1.4, alarm 1.2, and
#: below 1.1 the switches must not be operated.
RMU_SF6_ALARM_BAR, RMU_SF6_LOCKOUT_BAR = 1.2, 1.1

RMU = register(
    Checklist(
        AssetKind.RMU,
        (
            CheckItem(
                "sf6_pressure",
                f"SF6 gauge (bar at 20 °C) in the green band: alarm {RMU_SF6_ALARM_BAR}, do not operate below "
                f"{RMU_SF6_LOCKOUT_BAR}",
                reading="sf6_pressure_bar",
                compare=("SIMG1.Pres",),
                alarm=RMU_SF6_ALARM_BAR,
                lockout=RMU_SF6_LOCKOUT_BAR,
            ),
            CheckItem("positions", "Switch and earth switch positions as telemetered; padlocks in place"),
            CheckItem("vpis", "Voltage presence indicators lit on the live panels", compare=("PPV", "PhV")),
            CheckItem("discharge", "No ozone smell, hissing or crackling (partial discharge)"),
            CheckItem("cable_boxes", "Cable boxes closed, no water ingress, heater working"),
            thermography("cable box covers (through IR windows)"),
        ),
    )
)
