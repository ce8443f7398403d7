"""Points → durable spool → historian, with nothing lost between them.

Two threads:
- the committer takes what was submitted (an MQTT message's points, a poll's points), appends it
  to the spool in one transaction every few milliseconds (group commit), and only then calls each
  submission's `on_durable` (the MQTT gateway acknowledges its message there);
- the drainer writes the oldest spooled batches to the historian and removes them once the store
  has accepted them. A store that is down keeps them spooled (retried with exponential back-off,
  logged once when it goes and once when it comes back); a store that refuses data (HTTP 4xx)
  has the offending points isolated by bisection and set aside with the reason, never retried
  forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from gateway.spool import Spool, SpoolBatch, SpoolError, SpoolFull
from gridverse.historian import Historian, HistorianError
from gridverse.historian.base import HistorianRejected
from gridverse.points import Record

log = logging.getLogger(__name__)

OnDurable = Callable[[], None]


class HistorianWriter:
    def __init__(
        self,
        historian: Historian,
        spool: Spool,
        *,
        flush_interval_s: float = 0.2,
        commit_interval_s: float = 0.01,
        batch_points: int = 20_000,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.max_backoff_s = max_backoff_s
        self.historian = historian
        self.spool = spool
        self.flush_interval_s = flush_interval_s
        self.commit_interval_s = commit_interval_s
        self.batch_points = batch_points
        self._queue: list[tuple[list[Record], OnDurable | None]] = []
        self._queued_points = 0
        self._lock = threading.Lock()
        self._submitted = threading.Event()
        self._committed = threading.Event()
        self._stop = threading.Event()
        self._committer = threading.Thread(target=self._commit_loop, name="spool-committer", daemon=True)
        self._drainer = threading.Thread(target=self._drain_loop, name="historian-drainer", daemon=True)
        self.written: dict[str, int] = {}  # points the historian accepted, by source
        self.set_aside = 0  # points the store rejected, kept in the spool's rejected table
        self.store_up = True
        # (batches, write started ns, write finished ns), for metrics and latency measurement
        self.on_written: Callable[[Sequence[SpoolBatch], int, int], None] | None = None

    def start(self) -> None:
        self._committer.start()
        self._drainer.start()

    # -- intake -----------------------------------------------------------------------------
    def submit_records(self, records: list[Record], on_durable: OnDurable | None = None) -> None:
        """Queue records for the spool; `on_durable` runs once they are on disk."""
        with self._lock:
            self._queue.append((records, on_durable))
            self._queued_points += len(records)
        self._submitted.set()

    @property
    def refused(self) -> int:
        """Points the spool refused (full, policy reject_new)."""
        return self.spool.refused

    def pending(self) -> int:
        """Points not yet in the historian (queued for the spool, or spooled)."""
        with self._lock:
            queued = self._queued_points
        return queued + self.spool.depth()

    # -- committer --------------------------------------------------------------------------
    def _commit_loop(self) -> None:
        while not self._stop.is_set():
            self._submitted.wait(0.5)
            self._submitted.clear()
            self.commit()
            time.sleep(self.commit_interval_s)  # let a group gather: one transaction, many messages
        self.commit()

    def commit(self) -> None:
        with self._lock:
            items, self._queue, self._queued_points = self._queue, [], 0
        if not items:
            return
        try:
            encode = self.historian.encode
            self.spool.append(
                [
                    (len(records), records[0].tags.get("source", records[0].measurement), encode(records))
                    for records, _ in items
                    if records
                ]
            )
        except SpoolFull as exc:  # the spool counts what it refused
            log.error("%s", exc)
            return  # callbacks not called: MQTT messages stay unacknowledged and are redelivered
        except SpoolError as exc:
            log.error("%s; %d points kept in memory for the next attempt", exc, sum(len(r) for r, _ in items))
            with self._lock:
                self._queue[:0] = items
                self._queued_points += sum(len(r) for r, _ in items)
            return
        for _records, on_durable in items:
            if on_durable is not None:
                try:
                    on_durable()
                except Exception:  # an ack that fails must not stop the others
                    log.exception("acknowledging a durable batch failed")
        self._committed.set()

    # -- drainer ----------------------------------------------------------------------------
    def _drain_loop(self) -> None:
        backoff = self.flush_interval_s
        while not self._stop.is_set():
            moved = self.flush()
            if self.store_up:
                backoff = self.flush_interval_s
                if not moved:
                    self._committed.wait(self.flush_interval_s)
                    self._committed.clear()
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def flush(self, max_rounds: int = 1_000_000) -> int:
        """Write spooled batches, oldest first, until the spool is empty or the store fails."""
        moved = 0
        for _ in range(max_rounds):
            batches = self.spool.oldest(self.batch_points)
            if not batches:
                break
            points = sum(b.points for b in batches)
            started = time.time_ns()
            try:
                self._write([b.body for b in batches])
            except HistorianError as exc:
                if self.store_up:
                    log.error("historian unavailable, spooling (%d points waiting): %s", self.spool.depth(), exc)
                self.store_up = False
                return moved
            if not self.store_up:
                log.info("historian back; draining %d spooled points", self.spool.depth())
            self.store_up = True
            self._forget(batches)
            moved += points
            for b in batches:
                self.written[b.source] = self.written.get(b.source, 0) + b.points
            if self.on_written is not None:
                self.on_written(batches, started, time.time_ns())
        return moved

    def _write(self, bodies: list[bytes]) -> None:
        """Write, isolating what the store rejects by bisection (it is set aside, not retried)."""
        try:
            self.historian.write_encoded(bodies)
        except HistorianRejected as exc:
            if len(bodies) == 1:
                units = self.historian.split_encoded(bodies[0])
                if len(units) == 1:
                    self.spool.set_aside(bodies[0], str(exc))
                    self.set_aside += 1
                    log.error("historian rejected a point (kept aside in the spool's rejected table): %s", exc)
                    return
                bodies = units
            half = len(bodies) // 2
            self._write(bodies[:half])
            self._write(bodies[half:])

    def _forget(self, batches: Sequence[SpoolBatch]) -> None:
        try:
            self.spool.remove(batches)
        except SpoolError as exc:  # written but not forgotten: rewritten later, idempotently
            log.error("%s", exc)

    # -- shutdown ---------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> None:
        """Commit what was submitted, then try to drain within `timeout`; what the store did not
        take stays in the spool for the next start (graceful shutdown loses nothing)."""
        self._stop.set()
        self._submitted.set()
        self._committed.set()
        self._committer.join(timeout)
        self._drainer.join(timeout)
        deadline = time.monotonic() + timeout
        while self.spool.depth() and self.store_up and time.monotonic() < deadline:
            if not self.flush(max_rounds=1):
                break
