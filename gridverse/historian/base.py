"""The historian interface every backend implements."""

from __future__ import annotations

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
