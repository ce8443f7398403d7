"""Buffer points and write them to the historian in batches; keep them while the store is down."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from gridverse.historian import Historian, HistorianError
from gridverse.points import Point, Record

log = logging.getLogger(__name__)


class BufferFull(Exception):
    """The in-memory buffer is full: the store has been down too long for the configured size."""


class HistorianWriter:
    """A background thread that flushes buffered points; a failed batch is retried, not dropped.

    This first cut buffers in memory (bounded, refusing new points when full with an error that
    says so); the durable on-disk spool is the gateway issue's work.
    """

    def __init__(self, historian: Historian, flush_interval_s: float, max_points: int) -> None:
        self.historian = historian
        self.flush_interval_s = flush_interval_s
        self.max_points = max_points
        self._buffer: deque[Record] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="historian-writer", daemon=True)
        self.written: dict[str, int] = {}
        self.store_up = True

    def start(self) -> None:
        self._thread.start()

    def submit(self, points: list[Point]) -> None:
        self.submit_records([p.to_record() for p in points])

    def submit_records(self, records: list[Record]) -> None:
        with self._lock:
            if len(self._buffer) + len(records) > self.max_points:
                raise BufferFull(
                    f"historian writer: {len(self._buffer)} points waiting for the store; "
                    "raise gateway.max_buffer_points or bring the historian back"
                )
            self._buffer.extend(records)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def _take(self, n: int) -> list[Record]:
        with self._lock:
            return [self._buffer[i] for i in range(min(n, len(self._buffer)))]

    def _drop(self, n: int) -> None:
        with self._lock:
            for _ in range(n):
                self._buffer.popleft()

    def flush(self) -> None:
        while batch := self._take(5000):
            try:
                self.historian.write(batch)
            except HistorianError as exc:
                if self.store_up:
                    log.error("historian unavailable, keeping %d points: %s", self.pending(), exc)
                self.store_up = False
                return
            if not self.store_up:
                log.info("historian back; writing the %d points kept", self.pending())
            self.store_up = True
            self._drop(len(batch))
            for r in batch:
                src = r.tags.get("source", "?")
                self.written[src] = self.written.get(src, 0) + 1

    def _run(self) -> None:
        backoff = self.flush_interval_s
        while not self._stop.is_set():
            self.flush()
            backoff = self.flush_interval_s if self.store_up else min(backoff * 2, 30.0)
            self._stop.wait(backoff)
        self.flush()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and flush what is left (graceful shutdown loses nothing the store accepts)."""
        self._stop.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self.pending() and self.store_up and time.monotonic() < deadline:
            self.flush()
