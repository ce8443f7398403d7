"""Points → durable spool → historian, with nothing lost between them.

Two threads:
- the committer takes what was submitted (an MQTT message's points, a poll's points), appends it
  to the spool in one transaction (group commit), and only then calls each submission's
  `on_durable` (the MQTT gateway acknowledges its message there). A group is committed when the
  first submission in it has waited `commit_max_delay_s`, when it holds `group_points`, or when
  submissions stop coming once it holds as many as the stream was seen to stall at (the broker's
  window of unacknowledged QoS 1 messages is used up). At light load that is a commit every
  `commit_max_delay_s` instead of one every few messages; under a broker that allows few messages
  in flight, a commit as soon as the window is used up;
- the drainer writes the oldest spooled batches to the historian and removes them once the store
  has accepted them. It writes when `flush_points` are spooled or the oldest has waited
  `flush_interval_s`, so at light load there is one HTTP write per interval, not one per
  commit. A store that is down keeps them spooled (retried with exponential back-off, logged once
  when it goes and once when it comes back); a store that refuses data (HTTP 4xx) has the
  offending points isolated by bisection and set aside with the reason, never retried forever.

Neither thread dies of what it meets. A write that fails with a data error (the store's
HistorianRejected, or a TypeError/ValueError/OverflowError from a row it cannot convert) is
bisected and the bad rows set aside; any other exception counts as the store being down (retried
with back-off, logged once). A submission that cannot even be encoded is set aside at intake and
acknowledged. `problem()` says what is wrong (a thread stopped, the drainer failing, the spool
full or its file gone) for /health, and `last_drain_ns` when the drainer last succeeded.

A full spool (`reject_new`) is logged once when refusing starts and once when it ends; then
`on_room` is called (once, on its own thread) so the MQTT side can ask the broker to redeliver
the messages it left unacknowledged.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from gateway.config import SpoolPolicy
from gateway.spool import Spool, SpoolBatch, SpoolError, SpoolFull
from gridverse.historian import Historian, HistorianError
from gridverse.historian.base import HistorianRejected
from gridverse.points import Record
from gridverse.schema import OnDurable

log = logging.getLogger(__name__)

#: a pause this long, once a group holds as many submissions as the stream was seen to stall at,
#: commits it at once (see _learn_stall)
_QUIET_S = 0.002
#: the stall size before one was seen: none, so groups wait for their deadline
_UNKNOWN = 1 << 62
#: no broker in common use has an in-flight window below this (Mosquitto 20, EMQX 32): a smaller
#: group that stalled is a light load, not a window
_MIN_WINDOW = 10


#: exceptions from a write that say the data, not the store, is the problem: bisect, set aside
_DATA_ERRORS = (
    TypeError,
    ValueError,
    OverflowError,
    EOFError,
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
)


class HistorianWriter:
    def __init__(
        self,
        historian: Historian,
        spool: Spool,
        *,
        flush_interval_s: float = 0.2,
        commit_max_delay_s: float = 0.05,
        group_points: int = 5_000,
        flush_points: int = 5_000,
        batch_points: int = 20_000,
        max_backoff_s: float = 5.0,
        max_memory_points: int = 100_000,
    ) -> None:
        self.max_backoff_s = max_backoff_s
        self.historian = historian
        self.spool = spool
        self.flush_interval_s = flush_interval_s
        self.commit_max_delay_s = commit_max_delay_s
        self.group_points = group_points
        self.flush_points = flush_points
        self.batch_points = batch_points
        self.commits = 0  # spool transactions that took submissions (group commits)
        self.flushes = 0  # historian writes (each of up to batch_points)
        self._first_queued = 0.0  # monotonic time of the oldest submission not yet committed
        self._last_submitted = 0.0  # monotonic time of the newest one
        self._stall_size = _UNKNOWN  # submissions in hand when the stream last stalled
        self._spooled_since: float | None = None  # monotonic time of the oldest commit not yet written
        self.max_memory_points = max_memory_points  # held in memory while the spool file fails
        self._queue: list[tuple[list[Record], OnDurable | None]] = []
        self._queued_points = 0
        self._lock = threading.Lock()
        self._submitted = threading.Event()
        self._batch = threading.local()  # begin_batch/end_batch, per submitting thread
        self._committed = threading.Event()
        self._stop = threading.Event()
        self._started = False
        self._committer = threading.Thread(target=self._commit_loop, name="spool-committer", daemon=True)
        self._drainer = threading.Thread(target=self._drain_loop, name="historian-drainer", daemon=True)
        self.written: dict[str, int] = {}  # points the historian accepted, by source
        self.set_aside = 0  # points the store rejected, kept in the spool's rejected table
        self.unencodable = 0  # submissions that could not be encoded, set aside at intake
        self.store_up = True
        self.store_down_since: float | None = None  # time.time() of the failure, while down
        # (batches, write started ns, write finished ns), for metrics and latency measurement
        self.on_written: Callable[[Sequence[SpoolBatch], int, int], None] | None = None
        #: called after each group's on_durable callbacks (the MQTT side sends the acknowledgements
        #: they held in one write)
        self.on_acknowledged: Callable[[], None] | None = None
        #: called once (on its own thread) when the spool has room again after refusing
        self.on_room: Callable[[], None] | None = None
        self.refusals = 0  # commits refused (spool full, or its file failing beyond memory)
        self.memory_refused = 0  # points refused because the spool failed and memory was full
        self.commit_failures = 0  # commits that could not reach the spool file
        self.drain_failures = 0  # drain rounds that failed with an unexpected exception
        self.last_drain_ns = 0  # when the drainer last finished a round without an unexpected error
        self._refusing: str | None = None  # why new points are refused, until there is room
        self._refused_at_depth = 0  # spool depth at the first refusal: room again only below it
        self._spool_failing: str | None = None
        self._unexpected: str | None = None  # the drainer's last unexpected error, until it succeeds
        self._poison_logged = 0.0

    def start(self) -> None:
        self._started = True
        self._committer.start()
        self._drainer.start()

    # -- intake -----------------------------------------------------------------------------
    def submit_records(self, records: list[Record], on_durable: OnDurable | None = None) -> None:
        """Queue records for the spool; `on_durable` runs once they are on disk."""
        now = time.monotonic()
        with self._lock:
            if not self._queue:
                self._first_queued = now
            self._last_submitted = now
            self._queue.append((records, on_durable))
            self._queued_points += len(records)
            first = len(self._queue) == 1
            full = self._queued_points >= self.group_points
        if getattr(self._batch, "open", False) and not full:
            self._batch.submitted = True  # the batch's end commits it or wakes the committer
            return
        if first or full:  # the committer times the group from its first submission
            self._submitted.set()

    def begin_batch(self) -> None:
        """This thread is about to submit a batch (an MQTT network pass): its submissions do not
        wake the committer one by one; `end_batch` says what happens to them."""
        self._batch.open, self._batch.submitted = True, False

    def end_batch(self, commit_here: bool) -> None:
        """The batch is complete: commit it on this thread now (`commit_here`: a light load, where
        handing it to the committer costs more than the commit), or wake the committer (a heavy
        one: it commits while this thread reads on). Either way what the batch submitted is on disk
        before it is acknowledged; were this never called, the committer's own half-second check
        would still commit it."""
        submitted = getattr(self._batch, "submitted", False)
        self._batch.open = self._batch.submitted = False
        if not submitted:
            return
        if commit_here:
            try:
                self.commit()
                return
            except Exception:  # never seen: leave it to the committer, which logs and retries
                log.exception("committing a batch on the MQTT thread failed; the committer takes it")
        self._submitted.set()

    @property
    def refused(self) -> int:
        """Points refused: by the spool (full, policy reject_new) or, while its file failed, by
        the writer's bounded memory."""
        return self.spool.refused + self.memory_refused

    def pending(self) -> int:
        """Points not yet in the historian (queued for the spool, or spooled)."""
        with self._lock:
            queued = self._queued_points
        return queued + self.spool.depth()

    def alive(self) -> bool:
        """Both threads run (True before start and after stop too: nothing is expected then)."""
        if not self._started or self._stop.is_set():
            return True
        return self._committer.is_alive() and self._drainer.is_alive()

    def problem(self) -> str | None:
        """What keeps points from reaching the historian safely, for /health; None when all is
        well (a store that is down while the spool takes the points is not a problem: store_up)."""
        parts: list[str] = []
        if self._started and not self._stop.is_set():
            for thread in (self._committer, self._drainer):
                if not thread.is_alive():
                    parts.append(f"the {thread.name} thread has stopped; restart the gateway")
        spool = self.spool.problem()
        if spool is not None:
            parts.append(spool)
        elif self._spool_failing is not None:
            parts.append(self._spool_failing)
        store = self.historian.problem()
        if store is not None:
            parts.append(store)
        if self._unexpected is not None:
            parts.append(
                f"the historian drainer fails ({self._unexpected}; {self.drain_failures} failed rounds); "
                "points stay spooled"
            )
        if self._refusing is not None:
            parts.append(self._refusing)
        return "; ".join(parts) or None

    # -- committer --------------------------------------------------------------------------
    def _group_due_in(self) -> float:
        """Seconds until the queued group is due for its commit (0: now): when its first
        submission has waited commit_max_delay_s, when it holds group_points, or when it holds as
        many submissions as the stream last stalled at and none came for _QUIET_S."""
        now = time.monotonic()
        with self._lock:
            if not self._queue:
                return self.commit_max_delay_s
            if self._queued_points >= self.group_points:
                return 0.0
            due = self._first_queued + self.commit_max_delay_s
            if len(self._queue) >= self._stall_size:
                due = min(due, self._last_submitted + _QUIET_S)
            return max(0.0, due - now)

    def _learn_stall(self, submissions: int, first: float, last: float, committed: float) -> None:
        """Learn how many submissions arrive before the stream stalls. A broker sends at most its
        in-flight window of unacknowledged QoS 1 messages (Mosquitto's default: 20), then waits for
        acknowledgements: waiting for the deadline then would cap the rate at one window per
        commit_max_delay_s. A group of at least _MIN_WINDOW submissions that reached its deadline
        after a pause at least as long as it took to gather is such a stall (the window filled at
        once, then nothing came); a group larger than the stall size raises it, so a steady light
        stream settles at about one commit per commit_max_delay_s."""
        pause, gathering = committed - last, last - first
        stalled = (
            committed - first >= self.commit_max_delay_s
            and submissions >= _MIN_WINDOW
            and pause >= max(_QUIET_S, gathering)
        )
        if stalled or submissions > self._stall_size:
            self._stall_size = submissions

    def _wait_for_group(self) -> tuple[int, float, float]:
        """Block until a queued group is due, or 0.5 s without submissions (the loop then checks
        the spool file), or the writer stops; (submissions, first and last submitted) of the group."""
        self._submitted.wait(0.5)
        self._submitted.clear()
        while not self._stop.is_set():
            with self._lock:
                if not self._queue:
                    return 0, 0.0, 0.0
            wait = self._group_due_in()
            if wait <= 0.0:
                break
            # woken early only by a full group (submit_records sets the event then) or stop()
            if self._submitted.wait(wait):
                self._submitted.clear()
        with self._lock:
            return len(self._queue), self._first_queued, self._last_submitted

    def _commit_loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            submissions, first, last = self._wait_for_group()
            if submissions:
                self._learn_stall(submissions, first, last, time.monotonic())
            try:
                self.spool.check()  # at most once a second: notices a deleted file without traffic
                self.commit()
                if failing:
                    log.info("spool committer recovered")
                failing = False
            except Exception:  # never seen; must not stop the committer
                self.commit_failures += 1
                if not failing:
                    log.exception("spool committer: unexpected failure; retrying")
                failing = True
                self._stop.wait(1.0)
        try:
            self.commit()
        except Exception:
            log.exception("spool committer: the last commit at shutdown failed")

    def commit(self) -> None:
        """Append what was submitted to the spool (one transaction, or a few when a full
        `reject_new` spool has room for only part of the group), then acknowledge it."""
        with self._lock:
            items, self._queue, self._queued_points = self._queue, [], 0
        if not items:
            return
        encode = self.historian.encode
        # (submission, its encoded batch or None when there is nothing to spool)
        entries: list[tuple[tuple[list[Record], OnDurable | None], tuple[int, str, bytes] | None]] = []
        for item in items:
            records = item[0]
            if not records:
                entries.append((item, None))
                continue
            try:
                batch = (len(records), records[0].tags.get("source", records[0].measurement), encode(records))
            except Exception as exc:  # a submission the store's format cannot express: set aside, go on
                if not self._set_aside_unencodable(records, exc):
                    self.memory_refused += len(records)  # not acknowledged: the spool cannot take it now
                    continue
                batch = None
            entries.append((item, batch))
        done = 0
        for chunk in self._chunks(entries):
            try:
                self.spool.append([b for _item, b in chunk if b is not None])
            except SpoolFull as exc:  # the spool counts what it refused (the last chunk: the rest)
                self._refused(str(exc))
                return  # callbacks not called: MQTT messages stay unacknowledged and are redelivered
            except SpoolError as exc:
                self._spool_failed(str(exc), [item for item, _b in entries[done:]])
                return
            self._durable(chunk)
            done += len(chunk)

    def _chunks(
        self, entries: list[tuple[tuple[list[Record], OnDurable | None], tuple[int, str, bytes] | None]]
    ) -> list[list[tuple[tuple[list[Record], OnDurable | None], tuple[int, str, bytes] | None]]]:
        """The group as one chunk, or, when a `reject_new` spool has room for only part of it, the
        part that fits, then the rest (which the spool refuses: a group commit must not take a
        spool past max_points, nor refuse messages that would have fitted)."""
        if self.spool.policy != SpoolPolicy.REJECT_NEW:
            return [entries]
        room = self.spool.max_points - self.spool.depth()
        total = sum(b[0] for _i, b in entries if b is not None)
        if total <= room:
            return [entries]
        used, cut = 0, 0
        for k, (_item, batch) in enumerate(entries):
            points = batch[0] if batch is not None else 0
            if used + points > room and (used or self.spool.depth()):
                break
            used, cut = used + points, k + 1
        return [entries[:cut], entries[cut:]] if cut else [entries]

    def _durable(
        self, chunk: list[tuple[tuple[list[Record], OnDurable | None], tuple[int, str, bytes] | None]]
    ) -> None:
        """A chunk is in the spool: wake the drainer if need be, then acknowledge each submission."""
        if any(b is not None for _i, b in chunk):
            self.commits += 1
        with self._lock:
            first = self._spooled_since is None
            if first:
                self._spooled_since = time.monotonic()
        if first or self.spool.depth() >= self.flush_points:
            self._committed.set()  # the drainer times its next write from the first commit
        if self._spool_failing is not None:
            log.info("spool %s takes points again", self.spool.path)
            self._spool_failing = None
        for (_records, on_durable), _batch in chunk:
            if on_durable is not None:
                try:
                    on_durable()
                except Exception:  # an ack that fails must not stop the others
                    log.exception("acknowledging a durable batch failed")
        if self.on_acknowledged is not None:
            try:
                self.on_acknowledged()
            except Exception:
                log.exception("sending the acknowledgements of a durable group failed")

    def _set_aside_unencodable(self, records: list[Record], exc: Exception) -> bool:
        """Keep a submission that cannot be encoded in the rejected table; True when it is there."""
        body = repr(records).encode("utf-8", "backslashreplace")[:100_000]
        try:
            self.spool.set_aside(body, f"cannot encode for the store: {type(exc).__name__}: {exc}")
        except SpoolError:
            return False
        self.unencodable += 1
        now = time.monotonic()
        if now - self._poison_logged > 60:
            self._poison_logged = now
            log.error(
                "a submission of %d points cannot be encoded for the historian (%s: %s); set aside in the spool's "
                "rejected table (%d so far, logged at most once a minute)",
                len(records),
                type(exc).__name__,
                exc,
                self.unencodable,
            )
        return True

    def _refused(self, message: str) -> None:
        self.refusals += 1
        if self._refusing is None:
            down_s = time.time() - (self.store_down_since or time.time())
            if not self.store_up:
                store = f"the historian is down for {down_s:.0f} s"
            # the drainer may not have tried the store since it went down (the spool can fill first
            # under load): the store's own check says so before a write fails
            elif (problem := self.historian.problem()) is not None:
                store = f"the historian is down ({problem})"
            else:
                store = "the historian is up and draining"
            self._refusing = f"{message}; {store}"
            self._refused_at_depth = self.spool.depth()
            log.error("%s (logged once; another line when there is room again)", self._refusing)

    def _spool_failed(self, message: str, items: list[tuple[list[Record], OnDurable | None]]) -> None:
        """Keep the points in memory for the next attempt, up to max_memory_points; refuse the rest
        (not acknowledged, so MQTT messages are redelivered)."""
        self.commit_failures += 1
        with self._lock:
            room = self.max_memory_points - self._queued_points
            keep: list[tuple[list[Record], OnDurable | None]] = []
            for records, on_durable in items:
                if len(records) <= room:
                    keep.append((records, on_durable))
                    room -= len(records)
                else:
                    self.memory_refused += len(records)
                    self._refusing = self._refusing or (
                        f"the spool cannot take points ({message}) and {self.max_memory_points} are held in "
                        "memory; newer points are refused"
                    )
            self._queue[:0] = keep
            self._queued_points += sum(len(r) for r, _ in keep)
        if self._spool_failing is None:
            self._spool_failing = message
            log.error("%s; up to %d points kept in memory meanwhile (logged once)", message, self.max_memory_points)

    def _check_room(self) -> None:
        """After a refusal: once the spool is below its warning level again (and its file is
        fine), log it and call on_room on its own thread."""
        if self._refusing is None or self._spool_failing is not None or self.spool.problem() is not None:
            return
        depth = self.spool.depth()
        if depth and depth >= self.spool.warn_fraction * self.spool.max_points:
            return
        if depth and self._refused_at_depth and depth >= self._refused_at_depth:
            return  # nothing drained since a group was refused (it may be refused below the warning level)
        log.info(
            "spool has room again (%d of %d points); %d points were refused in %d commits while full",
            depth,
            self.spool.max_points,
            self.refused,
            self.refusals,
        )
        self._refusing, self._refused_at_depth = None, 0
        callback = self.on_room
        if callback is not None:
            threading.Thread(target=self._call_on_room, args=(callback,), name="spool-on-room", daemon=True).start()

    @staticmethod
    def _call_on_room(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("the spool's on_room callback failed")

    # -- drainer ----------------------------------------------------------------------------
    def _drain_loop(self) -> None:
        backoff = self.flush_interval_s
        while not self._stop.is_set():
            try:
                self.flush()
                self._check_room()
            except SpoolError as exc:  # the spool cannot forget what was written (disk full): back off
                self.drain_failures += 1
                if self._unexpected is None:
                    log.error("historian drainer: %s; what was written is rewritten later, idempotently", exc)
                self._unexpected = str(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            except Exception as exc:  # never seen: the drainer must not die; treated as the store down
                self.drain_failures += 1
                if self._unexpected is None:
                    log.exception("historian drainer: unexpected failure; points stay spooled, retrying with back-off")
                self._unexpected = f"{type(exc).__name__}: {exc}"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self.last_drain_ns = time.time_ns()
            if self._unexpected is not None:
                log.info("historian drainer recovered after %d failed rounds", self.drain_failures)
                self._unexpected = None
            if self.store_up:
                backoff = self.flush_interval_s
                self._wait_for_flush()
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _flush_due_in(self) -> float | None:
        """Seconds until the next historian write is due (0: now; None: nothing spooled). Due
        when flush_points are spooled or the oldest commit not yet written is flush_interval_s
        old."""
        depth = self.spool.depth()
        if depth == 0:
            return None
        if depth >= self.flush_points:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if self._spooled_since is None:  # spooled before this drainer saw it (a restart)
                self._spooled_since = now
            since = self._spooled_since
        return max(0.0, since + self.flush_interval_s - now)

    def _wait_for_flush(self) -> None:
        """Block until a historian write is due (or the writer stops)."""
        while not self._stop.is_set():
            due = self._flush_due_in()
            if due == 0.0:
                return
            if self._committed.wait(0.5 if due is None else due):
                self._committed.clear()

    def flush(self, max_rounds: int = 1_000_000) -> int:
        """Write spooled batches, oldest first, until the spool is empty or the store fails."""
        moved = 0
        for _ in range(max_rounds):
            batches = self.spool.oldest(self.batch_points)
            if not batches:
                with self._lock:
                    self._spooled_since = None
                break
            points = sum(b.points for b in batches)
            started = time.time_ns()
            aside = self.set_aside
            try:
                self._write([b.body for b in batches])
            except HistorianError as exc:
                if self.store_up:
                    log.error("historian unavailable, spooling (%d points waiting): %s", self.spool.depth(), exc)
                    self.store_down_since = time.time()
                self.store_up = False
                return moved
            if self.set_aside > aside:
                log.error(
                    "the historian refused %d rows of a batch of %d points (kept aside in the spool's rejected "
                    "table, %d so far): %s",
                    self.set_aside - aside,
                    points,
                    self.set_aside,
                    self._last_rejection,
                )
            if not self.store_up:
                log.info("historian back; draining %d spooled points", self.spool.depth())
            self.store_up = True
            self.store_down_since = None
            self._forget(batches)
            self.flushes += 1
            moved += points
            for b in batches:
                self.written[b.source] = self.written.get(b.source, 0) + b.points
            if self.on_written is not None:
                try:
                    self.on_written(batches, started, time.time_ns())
                except Exception:
                    log.exception("the writer's on_written callback failed")
        return moved

    _last_rejection = ""

    def _write(self, bodies: list[bytes]) -> None:
        """Write, isolating what the store rejects by bisection (it is set aside, not retried).
        A data error is a rejection; any other unexpected exception counts as the store down."""
        try:
            self.historian.write_encoded(bodies)
            return
        except HistorianError as exc:
            if not isinstance(exc, HistorianRejected):
                raise
            reason = str(exc)
        except _DATA_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            raise HistorianError(f"historian write failed unexpectedly ({type(exc).__name__}: {exc})") from exc
        if len(bodies) == 1:
            units = self.historian.split_encoded(bodies[0])
            if len(units) == 1:
                self.spool.set_aside(bodies[0], reason)
                self.set_aside += 1
                self._last_rejection = reason
                return
            bodies = units
        half = len(bodies) // 2
        self._write(bodies[:half])
        self._write(bodies[half:])

    def _forget(self, batches: Sequence[SpoolBatch]) -> None:
        """Remove written batches; a spool that cannot (disk full) ends the round with SpoolError,
        and the batches are rewritten later, idempotently (never in a loop, never a log per try)."""
        self.spool.remove(batches)

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
        try:
            while self.spool.depth() and self.store_up and time.monotonic() < deadline:
                if not self.flush(max_rounds=1):
                    break
        except Exception:
            log.exception("draining at shutdown failed; what is left stays in the spool for the next start")
        with self._lock:
            unsaved = self._queued_points
        if unsaved:
            log.error(
                "stopping with %d points that never reached the spool (%s): MQTT messages among them were not "
                "acknowledged and are redelivered by the broker; poll results are lost",
                unsaved,
                self._spool_failing or "the spool refused them",
            )
