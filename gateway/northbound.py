"""Optional northbound republish: the points the gateway has made durable, normalised (IEC 61850
names, SI units, quality, and no value when the reading is bad), published over MQTT for other
consumers such as a SCADA front end or a second historian."""

from __future__ import annotations

import json
from collections.abc import Sequence

from gridverse.config import MqttConfig
from gridverse.mqtt import topic
from gridverse.points import TELEMETRY, Record

KIND = "normalised"


def normalised_messages(config: MqttConfig, records: Sequence[Record]) -> list[tuple[str, bytes]]:
    """One message per device, on `<prefix>/<site>/<substation>/<device>/normalised`: a JSON object
    whose `points` list holds each point's name, bay, source, time (ns) and its fields (`quality`
    always; `value` and `text` only when the reading has them)."""
    by_device: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for r in records:
        if r.measurement != TELEMETRY:
            continue
        t = r.tags
        by_device.setdefault((t["site"], t["substation"], t["device"]), []).append(
            {"point": t["point"], "bay": t["bay"], "source": t["source"], "time_ns": r.time_ns, **r.fields}
        )
    return [
        (topic(config, site, substation, device, KIND), json.dumps({"points": points}).encode())
        for (site, substation, device), points in by_device.items()
    ]
