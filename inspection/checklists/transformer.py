"""Power transformer: oil level and temperature, Buchholz relay, silica gel breather, bushings,
thermography, and the load current against the telemetered one."""

from __future__ import annotations

from inspection.checklists.base import CheckItem, Checklist, register, thermography
from inspection.config import AssetKind
from inspection.thermal import TOP_OIL_LIMIT_C

TRANSFORMER = register(
    Checklist(
        AssetKind.TRANSFORMER,
        (
            CheckItem("oil_level", "Conservator oil level within the gauge's marks for the oil temperature; no leaks"),
            CheckItem(
                "top_oil",
                f"Top-oil thermometer reading (max. {TOP_OIL_LIMIT_C:.0f} °C, IEC 60076-7 normal cyclic loading); "
                "compare with the oil sensor",
                reading="top_oil_c",
                compare=("TmpOil", "hot_spot_c", "ageing_rate", "loading_percent"),
                high=TOP_OIL_LIMIT_C,
            ),
            CheckItem("buchholz", "Buchholz relay window: no gas collected, relay not tripped"),
            CheckItem(
                "silica_gel", "Silica gel breather: less than two thirds of the gel changed colour, oil seal filled"
            ),
            CheckItem("bushings", "Bushings: no cracks, tracking or oil leaks; oil level in the sight glasses"),
            CheckItem(
                "load_current",
                "Clamp-meter current on the LV side, against the telemetered current",
                reading="current_a",
                compare=("MMXU1.A", "loading_percent"),
            ),
            thermography("bushing connections and tank"),
        ),
    )
)
