"""The historian interface every backend implements."""

from __future__ import annotations

import marshal
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from gridverse.config import HistorianConfig
from gridverse.points import Record


class HistorianError(Exception):
    """The store refused or could not be reached; the message names the store and the remedy."""


class HistorianRejected(HistorianError):
    """The store is up but refused the data itself (HTTP 400/413/422): retrying will not help."""


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
        self.write([r for blob in blobs for r in self.decode(blob)])

    def split_encoded(self, blob: bytes) -> list[bytes]:
        """One blob per record, to isolate the records a store refuses."""
        return [self.encode([r]) for r in self.decode(blob)]

    def decode(self, blob: bytes) -> list[Record]:
        return [Record(*row) for row in marshal.loads(blob)]

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

        return EmbeddedHistorian(config.path)
    from gridverse.historian.influx import InfluxHistorian

    return InfluxHistorian(config.influx)
