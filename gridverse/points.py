"""The point schema every part shares: one timestamped reading, tagged by where it comes from."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

TELEMETRY = "telemetry"
_TAGS: dict[tuple, dict[str, str]] = {}  # one shared tags dict per series (bounded, read-only)
_MAX_CACHED_SERIES = 200_000


#: `[prefix]CLAS<instance>.DataObject[.Sub]`: an optional prefix, the four upper-case letters of the
#: logical-node class, its instance number, a dot and a data object starting with a capital
#: (`MMXU1.TotW`, `YPTR1.TmpOil`, `MMXU1.PhV.phsA`). ASCII only, so a name is a safe tag value.
_LN_DO = re.compile(
    r"[A-Za-z0-9_]{0,12}?[A-Z]{4}[0-9]{1,5}\.[A-Z][A-Za-z0-9_]{0,31}(?:\.[A-Za-z][A-Za-z0-9_]{0,31}){0,3}"
)
#: An int64 nanosecond time holds 1677-09-21 .. 2262-04-11; a store cannot take one beyond it.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def is_ln_do_name(name: str) -> bool:
    """An IEC 61850 logical node + data object name such as `MMXU1.TotW` or `YPTR1.TmpOil`: the
    LN class (four capitals) and instance, a dot, a data object (`Inverter.Power` is not one)."""
    return len(name) <= 80 and _LN_DO.fullmatch(name) is not None


class TimeError(ValueError):
    """A timestamp the stores cannot hold or that is implausibly far from now; says which and why."""


def check_time_ns(
    t_ns: int, now_ns: int, *, max_future_s: float = 300.0, max_past_s: float = 10 * 365.25 * 86400
) -> int:
    """`t_ns` if a store can hold it (int64 ns) and it lies within [now - max_past_s, now +
    max_future_s]; else TimeError naming the time, the window and the remedy."""
    if not INT64_MIN <= t_ns <= INT64_MAX:
        raise TimeError(f"time {t_ns} ns is beyond what a store can hold (int64 ns, years 1677..2262)")
    if t_ns > now_ns + max_future_s * 1e9:
        raise TimeError(
            f"time {_iso(t_ns)} is more than {max_future_s:.0f} s ahead of the gateway clock ({_iso(now_ns)}); "
            "send UTC epoch milliseconds, fix the sender's clock, or raise gateway.max_future_s"
        )
    if t_ns < now_ns - max_past_s * 1e9:
        raise TimeError(
            f"time {_iso(t_ns)} is more than {max_past_s:.0f} s before the gateway clock ({_iso(now_ns)}); "
            "send UTC epoch milliseconds, fix the sender's clock, or raise gateway.max_past_s"
        )
    return t_ns


def _iso(t_ns: int) -> str:
    """A time in ns as ISO 8601 UTC when it is representable, else the raw number."""
    try:
        return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return f"{t_ns} ns"


def ln_class(name: str) -> str:
    """The logical-node class of a point name (`MMXU1.TotW` → `MMXU`)."""
    ln = name.split(".", 1)[0]
    return "".join(c for c in ln if c.isalpha())[-4:]


class Quality(StrEnum):
    """Point quality, after IEC 61850's validity: a bad reading has no value, never a zero."""

    GOOD = "good"
    INVALID = "invalid"  # the device answered, but with an exception or an impossible value
    COMM_FAIL = "comm_fail"  # the device did not answer
    SUSPECT = "suspect"  # flagged by the twin's bad-data test


class Source(StrEnum):
    MODBUS = "modbus"
    MQTT = "mqtt"
    SPARKPLUG = "sparkplug"
    MANUAL = "manual"  # read by a technician on an inspection (a finding), with its σ in the row's fields


def now_ns() -> int:
    return time.time_ns()


class Record(NamedTuple):
    """One row for the historian: a measurement name, bounded tags, fields and a UTC time in ns.

    A named tuple: built in C, which matters at tens of thousands of rows a second. Its tags dict
    may be shared between the records of one series (see Point.to_record): treat it as read-only.
    """

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | str | bool]
    time_ns: int

    def series_key(self) -> str:
        return ",".join(f"{k}={self.tags[k]}" for k in sorted(self.tags))


def series_tags(site: str, substation: str, bay: str, device: str, name: str, source: Source) -> dict[str, str]:
    """The tags of one telemetry series; one shared dict per series (treat it as read-only)."""
    key = (site, substation, bay, device, name, source)
    tags = _TAGS.get(key)
    if tags is None:
        tags = {
            "site": site,
            "substation": substation,
            "bay": bay,
            "device": device,
            "ln_class": ln_class(name),
            "point": name,
            "source": source.value,
        }
        if len(_TAGS) < _MAX_CACHED_SERIES:
            _TAGS[key] = tags
    return tags


def telemetry_fields(value: float | None, quality: Quality, text: str = "") -> dict[str, float | int | str | bool]:
    """A telemetry row's fields: its quality always, its value only when it has one, its text if any."""
    fields: dict[str, float | int | str | bool] = {"quality": quality.value}
    if value is not None:
        fields["value"] = float(value)
    if text:
        fields["text"] = str(text)
    return fields


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
        if self.quality is Quality.GOOD and self.value is None and not self.extra.get("text"):
            raise ValueError(f"{self.device}/{self.name}: a good point needs a value (or text)")

    @property
    def ln_class(self) -> str:
        return ln_class(self.name)

    def to_record(self) -> Record:
        tags = series_tags(self.site, self.substation, self.bay, self.device, self.name, self.source)
        return Record(
            TELEMETRY, tags, telemetry_fields(self.value, self.quality, self.extra.get("text", "")), self.time_ns
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
