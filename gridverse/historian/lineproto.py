"""InfluxDB line protocol, formatted fast (about 2 µs a point instead of influxdb-client's
Point builder at about 19 µs): the series part (measurement and tags) is escaped once per series
and cached, since tags are bounded by design (site, substation, bay, device, point, source: no
unbounded values such as ids or times are tags)."""

from __future__ import annotations

from collections.abc import Iterable

from gridverse.points import Record

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_series_cache: dict[tuple, str] = {}
_MAX_CACHED_SERIES = 200_000


def _series(measurement: str, tags: dict[str, str]) -> str:
    key = (measurement, *tags.items())
    cached = _series_cache.get(key)
    if cached is not None:
        return cached
    parts = [measurement.translate(_MEASUREMENT_ESCAPES)]
    for k in sorted(tags):
        value = tags[k]
        if value == "":
            continue  # line protocol has no empty tag values; an empty tag is an absent tag
        parts.append(f"{k.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}")
    text = ",".join(parts)
    if len(_series_cache) < _MAX_CACHED_SERIES:
        _series_cache[key] = text
    return text


def _field(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"line protocol has no {value}; a point without a value carries its quality only")
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_field_keys: dict[str, str] = {}


def _key(name: str) -> str:
    escaped = _field_keys.get(name)
    if escaped is None:
        escaped = _field_keys[name] = name.translate(_KEY_ESCAPES)
    return escaped


def to_line(record: Record) -> str:
    parts = []
    for k, v in record.fields.items():
        # floats (the common case) first; bool before int, since bool is an int
        if type(v) is float and v - v == 0.0:  # finite
            parts.append(f"{_key(k)}={v!r}")
        elif type(v) is str and '"' not in v and "\\" not in v and "\n" not in v:
            parts.append(f'{_key(k)}="{v}"')
        else:
            parts.append(f"{_key(k)}={_field(v)}")
    return f"{_series(record.measurement, record.tags)} {','.join(parts)} {record.time_ns}"


def to_lines(records: Iterable[Record]) -> str:
    return "\n".join(map(to_line, records))
