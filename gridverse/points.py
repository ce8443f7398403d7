"""The point schema every part shares: one timestamped reading, tagged by where it comes from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

TELEMETRY = "telemetry"


class Quality(StrEnum):
    """Point quality, after IEC 61850's validity: a bad reading has no value, never a zero."""

    GOOD = "good"
    INVALID = "invalid"  # the device answered, but with an exception or an impossible value
    COMM_FAIL = "comm_fail"  # the device did not answer
    SUSPECT = "suspect"  # flagged by the twin's bad-data test


class Source(StrEnum):
    MODBUS = "modbus"
    MQTT = "mqtt"


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True, slots=True)
class Record:
    """One row for the historian: a measurement name, bounded tags, fields and a UTC time in ns."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | str | bool]
    time_ns: int

    def series_key(self) -> str:
        return ",".join(f"{k}={self.tags[k]}" for k in sorted(self.tags))


@dataclass(frozen=True, slots=True)
class Point:
    """A normalised telemetry point: `device` + IEC 61850 `name` (e.g. MMXU1.TotW) in SI units."""

    site: str
    substation: str
    bay: str
    device: str
    name: str
    source: Source
    time_ns: int
    value: float | None
    quality: Quality = Quality.GOOD
    unit: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quality is Quality.GOOD and self.value is None:
            raise ValueError(f"{self.device}/{self.name}: a good point needs a value")

    @property
    def ln_class(self) -> str:
        ln = self.name.split(".", 1)[0]
        return "".join(c for c in ln if c.isalpha())[-4:]

    def to_record(self) -> Record:
        fields: dict[str, float | int | str | bool] = {"quality": self.quality.value}
        if self.value is not None:
            fields["value"] = float(self.value)
        return Record(
            measurement=TELEMETRY,
            tags={
                "site": self.site,
                "substation": self.substation,
                "bay": self.bay,
                "device": self.device,
                "ln_class": self.ln_class,
                "point": self.name,
                "source": self.source.value,
            },
            fields=fields,
            time_ns=self.time_ns,
        )

    @staticmethod
    def from_record(record: Record) -> Point:
        t = record.tags
        value = record.fields.get("value")
        return Point(
            site=t["site"],
            substation=t["substation"],
            bay=t["bay"],
            device=t["device"],
            name=t["point"],
            source=Source(t["source"]),
            time_ns=record.time_ns,
            value=None if value is None else float(value),
            quality=Quality(str(record.fields.get("quality", Quality.GOOD.value))),
        )
