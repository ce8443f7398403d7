"""The historian interface every backend implements."""

from __future__ import annotations

import marshal
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from gridverse.config import HistorianConfig
from gridverse.points import Record

#: what a store can hold: times in int64 nanoseconds, integer fields in int64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class HistorianError(Exception):
    """The store refused or could not be reached; the message names the store and the remedy."""


class HistorianRejected(HistorianError):
    """The store is up but refused the data itself (HTTP 400/413/422, a time or value it cannot
    hold): retrying will not help, so the writer sets the offending rows aside."""


_PLAIN_FIELD_TYPES = frozenset({float, str, bool})


def record_problem(record: object) -> str | None:
    """Why a store can never take this record (wrong types, a time or an integer beyond int64),
    or None. Checked by the embedded store; cheap enough to run on every row (a good record is
    passed by a few C-level checks; only a suspect one is looked at field by field)."""
    if type(record) is Record:
        measurement, tags, fields, time_ns = record
        if (
            type(time_ns) is int
            and INT64_MIN <= time_ns <= INT64_MAX
            and type(measurement) is str
            and measurement
            and type(tags) is dict
            and type(fields) is dict
            and fields
        ):
            try:  # str.join refuses anything but text: every tag key and value, every field name
                "".join(tags)
                "".join(tags.values())
                "".join(fields)
            except TypeError:
                return _record_problem(record)
            if _PLAIN_FIELD_TYPES.issuperset(map(type, fields.values())):
                return None
    return _record_problem(record)


def _record_problem(record: object) -> str | None:
    if not isinstance(record, Record) and not (isinstance(record, tuple) and len(record) == 4):
        return f"not a record: {record!r:.120}"
    measurement, tags, fields, time_ns = record
    if type(time_ns) is not int:
        return f"time {time_ns!r:.40} is not an integer of nanoseconds"
    if not INT64_MIN <= time_ns <= INT64_MAX:
        return f"time {time_ns} ns is beyond int64 (years 1677..2262); the sender's time unit is likely wrong"
    if not isinstance(measurement, str) or not measurement:
        return f"measurement {measurement!r:.40} is not a name"
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        return f"tags {tags!r:.120} are not text"
    if not isinstance(fields, dict) or not fields:
        return f"fields {fields!r:.120} are not a non-empty mapping"
    for key, value in fields.items():
        if not isinstance(key, str):
            return f"field name {key!r:.40} is not text"
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            return f"field {key} = {value:.3e} is beyond int64"
        if type(value) not in (int, float, str, bool):
            return f"field {key} has a value of type {type(value).__name__}"
    return None


class Historian(ABC):
    """Writes are idempotent: the same measurement, tags and time written twice is one row."""

    @abstractmethod
    def write(self, records: Sequence[Record]) -> None: ...

    # -- the spool's wire format --------------------------------------------------------------
    # The gateway spools each batch already encoded for its store, so draining after an outage
    # is little more than reading and sending bytes. The default is marshal'd records.
    def encode(self, records: Sequence[Record]) -> bytes:
        return marshal.dumps([tuple(r) for r in records])

    def write_encoded(self, blobs: Sequence[bytes]) -> None:
        records: list[Record] = []
        for blob in blobs:
            try:
                records.extend(self.decode(blob))
            except (ValueError, EOFError, TypeError) as exc:  # marshal's errors for a damaged body
                raise HistorianRejected(f"a spooled batch of {len(blob)} bytes cannot be decoded ({exc})") from exc
        self.write(records)

    def split_encoded(self, blob: bytes) -> list[bytes]:
        """One blob per record, to isolate the records a store refuses (a blob that cannot be
        decoded is one unit: it is set aside whole)."""
        try:
            return [self.encode([r]) for r in self.decode(blob)]
        except (ValueError, EOFError, TypeError):
            return [blob]

    def decode(self, blob: bytes) -> list[Record]:
        return [Record(*row) for row in marshal.loads(blob)]

    def problem(self) -> str | None:
        """What keeps the store from taking data durably right now (its file deleted, replaced or
        unwritable), for /health; None when all is well. Backends without a file say None."""
        return None

    @abstractmethod
    def query(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Rows in time order, optionally filtered by exact tag values and a [start, end] window."""

    @abstractmethod
    def latest(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Record]:
        """The newest row of each series (distinct tag set) within the window."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


def open_historian(config: HistorianConfig) -> Historian:
    if config.backend == "embedded":
        from gridverse.historian.embedded import EmbeddedHistorian

        return EmbeddedHistorian(config.path, retention=config.retention)
    from gridverse.historian.influx import InfluxHistorian

    return InfluxHistorian(config.influx)
