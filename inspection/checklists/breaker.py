"""Circuit breaker: operation counter, SF6 gas pressure against its density-corrected alarm and
lockout levels, position and mechanism, thermography."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind

#: Density-corrected SF6 levels (absolute, bar at 20 °C) of a typical outdoor MV/HV live-tank
#: breaker; the nameplate of each breaker states its own: rated filling 6.0, alarm 5.2, lockout 5.0.
SF6_RATED_BAR, SF6_ALARM_BAR, SF6_LOCKOUT_BAR = 6.0, 5.2, 5.0

BREAKER = register(
    Checklist(
        AssetKind.BREAKER,
        (
            CheckItem(
                "position",
                "Position indicator agrees with the telemetered position",
                compare=("XCBR1.Pos",),
            ),
            CheckItem(
                "operation_counter",
                "Operation counter reading (against the last inspection's)",
                reading="operation_count",
                compare=("XCBR1.OpCnt",),
            ),
            CheckItem(
                "sf6_pressure",
                f"SF6 density gauge (bar at 20 °C): rated {SF6_RATED_BAR}, alarm {SF6_ALARM_BAR}, "
                f"lockout {SF6_LOCKOUT_BAR}",
                reading="sf6_pressure_bar",
                compare=("SIMG1.Pres",),
                alarm=SF6_ALARM_BAR,
                lockout=SF6_LOCKOUT_BAR,
            ),
            CheckItem("mechanism", "Spring charged indicator on; mechanism cabinet dry, heater working"),
            CheckItem(
                "feeder_current",
                "Clamp-meter current on the feeder cable, against the telemetered current",
                reading="current_a",
                compare=("MMXU1.A", "loading_percent"),
            ),
            thermography("terminals and pole connections"),
        ),
    )
)
