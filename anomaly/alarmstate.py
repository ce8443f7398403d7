"""The alarm store: each alarm's ISA-18.2 state, persisted in SQLite and shared by processes.

The stack's alarm book writes it (raise, clear, reconcile at start); the UI reads it and records
operator actions (acknowledge, shelve, unshelve). Both processes open the same file: WAL mode and
a busy timeout let one write while the other reads. Every change is also a row of the `event`
journal, from which the alarm-load figures (alarms per 10 minutes, floods, chattering, bad
actors) are computed. The transitions themselves live in `anomaly.alarmstates`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from anomaly.alarmstates import (
    ANNUNCIATED,
    Event,
    InvalidTransition,
    Priority,
    State,
    Status,
    priority_of,
    transition,
)
from gridverse.schema import Alarm

if TYPE_CHECKING:
    from gridverse.config import Settings

__all__ = [
    "AlarmEvent",
    "AlarmKey",
    "AlarmRow",
    "AlarmStore",
    "AlarmStoreError",
    "Event",
    "Flood",
    "bad_actors",
    "flood",
    "per_window",
    "standing",
    "InvalidTransition",
    "Priority",
    "State",
    "key_text",
    "open_alarm_store",
    "parse_key",
]

AlarmKey = tuple[str, str, str]  # (rule, device, point), as `Alarm.key`
SYSTEM = "system"


def key_text(key: AlarmKey) -> str:
    """`rule:device/point`, the alarm key as the UI, the audit record and the stack summary spell it."""
    rule, device, point = key
    return f"{rule}:{device}/{point}"


def parse_key(key: AlarmKey | str) -> AlarmKey:
    """An alarm key from its tuple or its `rule:device/point` text."""
    if isinstance(key, tuple):
        return (str(key[0]), str(key[1]), str(key[2]))
    rule, sep, rest = key.partition(":")
    device, sep2, point = rest.rpartition("/")
    if not (sep and sep2 and rule):
        raise KeyError(f"alarm key {key!r} is not 'rule:device/point'")
    return (rule, device, point)


class AlarmStoreError(RuntimeError):
    """The alarm store cannot be opened or used; the message names the file and the remedy."""


@dataclass(frozen=True)
class AlarmRow:
    """One alarm as the operator sees it."""

    rule: str
    device: str
    point: str
    substation: str
    state: State
    active: bool  # its condition is true now
    priority: Priority
    severity: str
    message: str
    value: float | None
    first_raised_ns: int
    last_raised_ns: int
    last_cleared_ns: int | None
    count: int  # raises, chattering re-occurrences folded in
    chattering: bool
    acked_by: str
    acked_ns: int | None
    ack_comment: str
    shelved_by: str
    shelve_reason: str
    shelved_until_ns: int | None
    suppressed_reason: str
    updated_ns: int

    @property
    def key(self) -> AlarmKey:
        return (self.rule, self.device, self.point)

    @property
    def key_text(self) -> str:
        return key_text(self.key)

    @property
    def status(self) -> Status:
        return Status(self.state, self.active)

    @property
    def annunciated(self) -> bool:
        """It asks something of the operator (unacknowledged, acknowledged and active, or returned
        unacknowledged)."""
        return self.state in ANNUNCIATED


@dataclass(frozen=True)
class AlarmEvent:
    """One change in the journal."""

    time_ns: int
    rule: str
    device: str
    point: str
    substation: str
    event: str
    before: str
    after: str
    actor: str
    note: str
    priority: str

    @property
    def key(self) -> AlarmKey:
        return (self.rule, self.device, self.point)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_state (
    rule TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL,
    substation TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL, active INTEGER NOT NULL,
    priority TEXT NOT NULL, severity TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '', value REAL,
    first_raised_ns INTEGER NOT NULL, last_raised_ns INTEGER NOT NULL, last_cleared_ns INTEGER,
    count INTEGER NOT NULL DEFAULT 0, chattering INTEGER NOT NULL DEFAULT 0,
    acked_by TEXT NOT NULL DEFAULT '', acked_ns INTEGER, ack_comment TEXT NOT NULL DEFAULT '',
    shelved_by TEXT NOT NULL DEFAULT '', shelve_reason TEXT NOT NULL DEFAULT '', shelved_until_ns INTEGER,
    suppressed_reason TEXT NOT NULL DEFAULT '',
    restart_state TEXT,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (rule, device, point)
);
CREATE TABLE IF NOT EXISTS alarm_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    rule TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL, substation TEXT NOT NULL,
    event TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL,
    actor TEXT NOT NULL, note TEXT NOT NULL, priority TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_event_time ON alarm_event (time_ns);
CREATE TABLE IF NOT EXISTS alarm_meta (name TEXT PRIMARY KEY, value INTEGER);
"""

_ROW_COLUMNS = (
    "rule, device, point, substation, state, active, priority, severity, message, value, first_raised_ns, "
    "last_raised_ns, last_cleared_ns, count, chattering, acked_by, acked_ns, ack_comment, shelved_by, "
    "shelve_reason, shelved_until_ns, suppressed_reason, updated_ns"
)


def _row(r: sqlite3.Row | tuple) -> AlarmRow:
    v = list(r)
    v[4] = State(v[4])
    v[5] = bool(v[5])
    v[6] = Priority(v[6])
    v[14] = bool(v[14])
    return AlarmRow(*v)


class AlarmStore:
    """ISA-18.2 state per alarm key in one SQLite file (WAL), safe to open from several processes
    and to share between threads (one connection behind a lock)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AlarmStoreError(
                f"alarm store {self.path}: cannot open ({exc}); set anomaly.alarm_state_path to a writable file"
            ) from exc
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- reading -------------------------------------------------------------------------------

    def rows(self, *, now_ns: int | None = None, include_normal: bool = True) -> list[AlarmRow]:
        """Every alarm the store knows (expired shelves are released first), highest priority and
        newest first."""
        self.expire_shelves(now_ns)
        where = "" if include_normal else "WHERE state != 'normal'"
        with self._lock:
            got = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM alarm_state {where}").fetchall()
        order = {p: i for i, p in enumerate(Priority)}
        return sorted((_row(r) for r in got), key=lambda a: (order[a.priority], -a.last_raised_ns))

    def get(self, key: AlarmKey | str) -> AlarmRow | None:
        k = parse_key(key)
        with self._lock:
            r = self._db.execute(
                f"SELECT {_ROW_COLUMNS} FROM alarm_state WHERE rule=? AND device=? AND point=?", k
            ).fetchone()
        return _row(r) if r else None

    def events(self, since_ns: int = 0, until_ns: int | None = None) -> list[AlarmEvent]:
        """The journal from `since_ns` on, oldest first."""
        until = until_ns if until_ns is not None else 2**63 - 1
        with self._lock:
            got = self._db.execute(
                "SELECT time_ns, rule, device, point, substation, event, before, after, actor, note, priority "
                "FROM alarm_event WHERE time_ns >= ? AND time_ns <= ? ORDER BY id",
                (since_ns, until),
            ).fetchall()
        return [AlarmEvent(*r) for r in got]

    def arrivals(self, since_ns: int) -> list[AlarmEvent]:
        """Alarms that arrived (were raised) from `since_ns` on: the flood and load figures."""
        return [e for e in self.events(since_ns) if e.event == Event.RAISE]

    def evaluated_ns(self) -> int | None:
        """When the stack's detectors last evaluated (their heartbeat), or None since a restart."""
        with self._lock:
            r = self._db.execute("SELECT value FROM alarm_meta WHERE name='evaluated_ns'").fetchone()
        return int(r[0]) if r and r[0] is not None else None

    def mark_evaluated(self, time_ns: int) -> None:
        with self._lock, self._tx():
            self._db.execute("INSERT OR REPLACE INTO alarm_meta (name, value) VALUES ('evaluated_ns', ?)", (time_ns,))

    # ---- the detectors' side -------------------------------------------------------------------

    def raise_alarm(self, alarm: Alarm, time_ns: int, *, chattering: bool = False) -> AlarmRow:
        """The alarm's condition became true (a new occurrence: the count goes up)."""
        with self._lock, self._tx():
            row = self._get_locked(alarm.key)
            pri = priority_of(alarm.severity)
            if row is None:
                self._db.execute(
                    "INSERT INTO alarm_state (rule, device, point, substation, state, active, priority, severity, "
                    "message, value, first_raised_ns, last_raised_ns, count, chattering, updated_ns) "
                    "VALUES (?, ?, ?, ?, 'normal', 0, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
                    (*alarm.key, alarm.substation, pri, str(alarm.severity), alarm.message, alarm.value,
                     time_ns, time_ns, time_ns),
                )  # fmt: skip
                row = self._get_locked(alarm.key)
                assert row is not None
            after = transition(row.status, Event.RAISE)
            self._db.execute(
                "UPDATE alarm_state SET state=?, active=1, priority=?, severity=?, message=?, value=?, substation=?, "
                "last_raised_ns=?, count=count+1, chattering=?, restart_state=NULL, updated_ns=? "
                "WHERE rule=? AND device=? AND point=?",
                (after.state, pri, str(alarm.severity), alarm.message, alarm.value, alarm.substation, time_ns,
                 int(chattering), time_ns, *alarm.key),
            )  # fmt: skip
            self._journal(time_ns, row, Event.RAISE, after.state, SYSTEM, alarm.message, pri)
            return self._must(alarm.key)

    def recur(self, alarm: Alarm, time_ns: int) -> AlarmRow:
        """A chattering alarm's condition came back while the alarm is held: fold it into the
        standing alarm (count + 1, newest message), no new annunciation."""
        with self._lock, self._tx():
            row = self._get_locked(alarm.key)
            if row is None:
                raise KeyError(f"alarm {key_text(alarm.key)} is not in the store")
            self._db.execute(
                "UPDATE alarm_state SET count=count+1, chattering=1, message=?, value=?, last_raised_ns=?, "
                "updated_ns=? WHERE rule=? AND device=? AND point=?",
                (alarm.message, alarm.value, time_ns, time_ns, *alarm.key),
            )
            self._journal(
                time_ns, row, "recur", row.state, SYSTEM, "chattering: folded into the standing alarm", row.priority
            )
            return self._must(alarm.key)

    def update_condition(self, alarm: Alarm, time_ns: int) -> None:
        """The condition still holds: keep its newest message and value (no state change)."""
        with self._lock, self._tx():
            self._db.execute(
                "UPDATE alarm_state SET message=?, value=? WHERE rule=? AND device=? AND point=?",
                (alarm.message, alarm.value, *alarm.key),
            )

    def clear_alarm(self, key: AlarmKey, time_ns: int, note: str = "") -> AlarmRow | None:
        """The condition became false."""
        with self._lock, self._tx():
            row = self._get_locked(key)
            if row is None:
                return None
            after = transition(row.status, Event.CLEAR)
            self._db.execute(
                "UPDATE alarm_state SET state=?, active=0, last_cleared_ns=?, chattering=0, updated_ns=? "
                "WHERE rule=? AND device=? AND point=?",
                (after.state, time_ns, time_ns, *key),
            )
            self._journal(time_ns, row, Event.CLEAR, after.state, SYSTEM, note, row.priority)
            return self._must(key)

    def suppress(self, key: AlarmKey, time_ns: int, reason: str) -> None:
        """Suppress by design (its breaker is open, its device out of service)."""
        self._apply(key, Event.SUPPRESS, SYSTEM, reason, time_ns, suppressed_reason=reason)

    def unsuppress(self, key: AlarmKey, time_ns: int) -> None:
        self._apply(key, Event.UNSUPPRESS, SYSTEM, "", time_ns, suppressed_reason="")

    def reconcile(self, time_ns: int) -> list[AlarmRow]:
        """At start: no alarm stays active from storage alone. Each stored active alarm is cleared
        (unack → rtn_unack, ack → normal; shelved and suppressed ones just lose their condition)
        and remembers its state, so that the first evaluation that finds the condition true again
        restores it (`restore`) instead of annunciating it anew. Returns the alarms cleared."""
        with self._lock, self._tx():
            got = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM alarm_state WHERE active=1").fetchall()
            rows = [_row(r) for r in got]
            for row in rows:
                after = transition(row.status, Event.CLEAR)
                self._db.execute(
                    "UPDATE alarm_state SET state=?, active=0, restart_state=?, last_cleared_ns=?, chattering=0, "
                    "updated_ns=? WHERE rule=? AND device=? AND point=?",
                    (after.state, row.state, time_ns, time_ns, *row.key),
                )
                self._journal(
                    time_ns, row, Event.CLEAR, after.state, SYSTEM, "restart: not confirmed yet", row.priority
                )
            self._db.execute("DELETE FROM alarm_meta WHERE name='evaluated_ns'")
        return [self._must(r.key) for r in rows]

    def restore(self, alarm: Alarm, time_ns: int) -> AlarmRow | None:
        """The first evaluation after a restart found a reconciled alarm's condition true again:
        back to its state before the restart (an acknowledged alarm stays acknowledged), counted
        once. None when the alarm was not reconciled (raise it instead)."""
        with self._lock, self._tx():
            r = self._db.execute(
                "SELECT restart_state FROM alarm_state WHERE rule=? AND device=? AND point=?", alarm.key
            ).fetchone()
            row = self._get_locked(alarm.key)
            if r is None or r[0] is None or row is None:
                return None
            before = State(r[0])
            state: State
            if row.state in (State.SHELVED, State.SUPPRESSED, State.OUT_OF_SERVICE):
                state = row.state  # still out of annunciation; it now tracks a true condition
            elif before is State.ACK or (before is State.UNACK and row.state is State.NORMAL):
                state = State.ACK  # acknowledged before the restart, or since
            else:
                state = transition(row.status, Event.RAISE).state
            self._db.execute(
                "UPDATE alarm_state SET state=?, active=1, restart_state=NULL, message=?, value=?, updated_ns=? "
                "WHERE rule=? AND device=? AND point=?",
                (state, alarm.message, alarm.value, time_ns, *alarm.key),
            )
            self._journal(time_ns, row, "restore", state, SYSTEM, "restart: condition confirmed", row.priority)
            return self._must(alarm.key)

    def end_reconcile(self) -> None:
        """The first evaluation after a restart is done: forget the remembered states."""
        with self._lock, self._tx():
            self._db.execute("UPDATE alarm_state SET restart_state=NULL WHERE restart_state IS NOT NULL")

    def expire_shelves(self, now_ns: int | None = None) -> list[AlarmRow]:
        """Release every shelf whose expiry has passed (back to unack when its condition holds)."""
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            got = self._db.execute(
                f"SELECT {_ROW_COLUMNS} FROM alarm_state WHERE state='shelved' AND shelved_until_ns <= ?", (now,)
            ).fetchall()
        out = []
        for r in got:
            row = _row(r)
            try:
                self._apply(row.key, Event.UNSHELVE, SYSTEM, "shelf expired", now, shelved_until_ns=None)
            except InvalidTransition:  # unshelved meanwhile by someone else
                continue
            out.append(self._must(row.key))
        return out

    # ---- operator actions ----------------------------------------------------------------------

    def acknowledge(self, key: AlarmKey | str, actor: str, comment: str = "", *, now_ns: int | None = None) -> AlarmRow:
        """Acknowledge (unack → ack, rtn_unack → normal); `InvalidTransition` if there is nothing to
        acknowledge."""
        now = time.time_ns() if now_ns is None else now_ns
        return self._apply(parse_key(key), Event.ACK, actor, comment, now, acked_by=actor, acked_ns=now,
                           ack_comment=comment)  # fmt: skip

    def shelve(
        self, key: AlarmKey | str, actor: str, reason: str, until_ns: int, *, now_ns: int | None = None
    ) -> AlarmRow:
        """Shelve until `until_ns` (it comes back by itself then); a reason is required."""
        now = time.time_ns() if now_ns is None else now_ns
        if not reason.strip():
            raise InvalidTransition("shelving needs a reason (why the alarm may be set aside)")
        if until_ns <= now:
            raise InvalidTransition("the shelf's expiry must be in the future")
        return self._apply(parse_key(key), Event.SHELVE, actor, reason, now, shelved_by=actor,
                           shelve_reason=reason.strip(), shelved_until_ns=until_ns)  # fmt: skip

    def unshelve(self, key: AlarmKey | str, actor: str, *, now_ns: int | None = None) -> AlarmRow:
        now = time.time_ns() if now_ns is None else now_ns
        return self._apply(parse_key(key), Event.UNSHELVE, actor, "", now, shelved_until_ns=None)

    def remove_from_service(
        self, key: AlarmKey | str, actor: str, reason: str, *, now_ns: int | None = None
    ) -> AlarmRow:
        now = time.time_ns() if now_ns is None else now_ns
        return self._apply(parse_key(key), Event.REMOVE, actor, reason, now)

    def return_to_service(self, key: AlarmKey | str, actor: str, *, now_ns: int | None = None) -> AlarmRow:
        now = time.time_ns() if now_ns is None else now_ns
        return self._apply(parse_key(key), Event.RETURN, actor, "", now)

    # ---- internals -----------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock at once, wait busy_timeout)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise AlarmStoreError(f"alarm store {self.path}: cannot write ({exc})") from exc
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _get_locked(self, key: AlarmKey) -> AlarmRow | None:
        r = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM alarm_state WHERE rule=? AND device=? AND point=?", key
        ).fetchone()
        return _row(r) if r else None

    def _must(self, key: AlarmKey) -> AlarmRow:
        row = self._get_locked(key)
        if row is None:
            raise KeyError(f"alarm {key_text(key)} is not in the store")
        return row

    def _apply(self, key: AlarmKey, event: Event, actor: str, note: str, now: int, **columns: object) -> AlarmRow:
        with self._lock, self._tx():
            row = self._get_locked(key)
            if row is None:
                raise KeyError(f"alarm {key_text(key)} is not in the store (it may have been removed)")
            after = transition(row.status, event)
            sets = ", ".join(f"{c}=?" for c in columns)
            self._db.execute(
                f"UPDATE alarm_state SET state=?, updated_ns=?{', ' + sets if sets else ''} "
                "WHERE rule=? AND device=? AND point=?",
                (after.state, now, *columns.values(), *key),
            )
            self._journal(now, row, event, after.state, actor, note, row.priority)
            return self._must(key)

    def _journal(
        self, time_ns: int, row: AlarmRow, event: Event | str, after: State, actor: str, note: str, priority: str
    ) -> None:
        self._db.execute(
            "INSERT INTO alarm_event (time_ns, rule, device, point, substation, event, before, after, actor, note, "
            "priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time_ns, *row.key, row.substation, str(event), str(row.state), str(after), actor, note, str(priority)),
        )


def open_alarm_store(settings: Settings) -> AlarmStore:
    """The alarm store of a configuration (`anomaly.alarm_state_path`)."""
    return AlarmStore(settings.anomaly.alarm_state_path)


# ---- alarm-load figures (EEMUA 191 / ISA-18.2) ----------------------------------------------------


@dataclass(frozen=True)
class Flood:
    """More than `limit` alarms arrived within the window: how many, and where from."""

    arrivals: int
    limit: int
    window_s: float
    by_substation: dict[str, int]
    by_device: dict[str, int]


def flood(events: Iterable[AlarmEvent], now_ns: int, *, window_s: float, limit: int) -> Flood | None:
    """A flood when more than `limit` alarms arrived (were raised) in the `window_s` before
    `now_ns`, with a summary by substation and by device (most first); None otherwise."""
    since = now_ns - int(window_s * 1e9)
    arrived = [e for e in events if e.event == Event.RAISE and since < e.time_ns <= now_ns]
    if len(arrived) <= limit:
        return None
    return Flood(
        len(arrived),
        limit,
        window_s,
        dict(Counter(e.substation or "(no substation)" for e in arrived).most_common()),
        dict(Counter(e.device for e in arrived).most_common()),
    )


def per_window(events: Iterable[AlarmEvent], since_ns: int, until_ns: int, window_s: float = 600.0) -> list[int]:
    """Alarms arrived in each consecutive `window_s` from `since_ns` to `until_ns` (EEMUA 191's
    alarms per 10 minutes when `window_s` is 600)."""
    width = int(window_s * 1e9)
    n = max(1, -(-(until_ns - since_ns) // width))
    counts = [0] * n
    for e in events:
        if e.event == Event.RAISE and since_ns <= e.time_ns < until_ns:
            counts[(e.time_ns - since_ns) // width] += 1
    return counts


def bad_actors(events: Iterable[AlarmEvent], n: int = 10) -> list[tuple[str, int]]:
    """The `n` alarms that occurred most often (raises and folded chattering returns), by key text."""
    counts = Counter(key_text(e.key) for e in events if e.event in (Event.RAISE, "recur"))
    return counts.most_common(n)


def standing(rows: Iterable[AlarmRow], now_ns: int, older_than_s: float = 86400.0) -> list[AlarmRow]:
    """Alarms whose condition has held, without a break, since longer than `older_than_s` (a day)."""
    limit = now_ns - int(older_than_s * 1e9)
    return [r for r in rows if r.active and r.last_raised_ns < limit]
