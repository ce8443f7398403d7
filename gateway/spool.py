"""The store-and-forward spool: every point is on disk before anyone is told it arrived.

One SQLite file in WAL mode. A row holds a batch (one MQTT message's or one poll's records)
already encoded in the store's own wire format (line protocol for InfluxDB, marshal'd records for
the embedded store; see Historian.encode), so tens of thousands of points a second cost a few
hundred row inserts, and draining is reading and sending bytes.

Batches drain oldest first. The spool is bounded in points; when
full it either refuses new batches (`reject_new`: MQTT messages then stay unacknowledged at the
broker, which redelivers them later) or drops the oldest (`drop_oldest`), counting every point
dropped. A warning level (default 80 %) lets an alarm fire before it is full.

A commit on an empty spool is never refused, however large (after a restart one group commit
may hold more than `max_points`).

Durability: WAL with synchronous=NORMAL survives the process being killed (kill -9); FULL (the
gateway's default, `gateway.spool.durability: power_cut`) also survives a power cut, at the cost
of an fsync per commit, which the writer's group commit keeps to a few a second.

The file: checked at open (an empty, truncated or corrupt spool is moved aside to
`<name>.corrupt-<time>` with an error, and a fresh one started), and after every commit the path
must still name the open file. A spool deleted or replaced while open makes `append` raise
SpoolError (nothing is acknowledged that is not in a file on disk) and `problem()` say so; what
it still held is drained from the open (deleted) file meanwhile, and named as lost in the log if
the gateway stops first. When the directory exists again, a fresh spool file is started there and
what the deleted one still held is carried over into it. A missing directory is not recreated by
the gateway (it may be an unmounted volume): recreate it and the spool resumes by itself.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.config import SpoolPolicy
from gridverse.historian.sqlitefile import FileWatch, open_sqlite

log = logging.getLogger(__name__)

Policy = SpoolPolicy

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    n INTEGER NOT NULL,
    source TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rejected_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


class SpoolError(Exception):
    """The spool file cannot be opened or written; the message names the file and the remedy."""


class SpoolFull(SpoolError):
    """The spool holds its configured maximum and the policy is to refuse new points."""


@dataclass(frozen=True)
class SpoolBatch:
    id: int
    created_ns: int
    points: int
    source: str  # modbus, mqtt, ... (for per-source counts)
    body: bytes  # encoded by the historian (Historian.encode)


class Spool:
    def __init__(
        self,
        path: Path | str,
        *,
        max_points: int,
        policy: Policy = SpoolPolicy.REJECT_NEW,
        warn_fraction: float = 0.8,
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        self.path = Path(path)
        self.max_points = max_points
        self.policy = policy
        self.warn_fraction = warn_fraction
        self.synchronous = synchronous
        self.dropped = 0  # points dropped by drop_oldest
        self.refused = 0  # points refused by reject_new
        self.lost_files = 0  # times the file was found deleted or replaced while open
        self._lock = threading.Lock()
        self._problem: str | None = None  # deleted, replaced or unwritable: nothing is accepted
        self._gone = False  # the open file is no longer at self.path
        self._checked = 0.0
        self._conn = self._open()
        row = self._conn.execute("SELECT COALESCE(SUM(n), 0) FROM spool").fetchone()
        self._depth = int(row[0])  # points in the spool, kept in memory to avoid a SUM per call

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.executescript(_SCHEMA)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = open_sqlite(self.path, "spool", self._setup)
            self._watch = FileWatch.of(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(
                f"spool {self.path}: cannot open ({exc}); check that gateway.spool.path is on a writable disk"
            ) from exc
        return conn

    def synchronous_pragma(self) -> str:
        """`PRAGMA synchronous` as the open connection has it: "full" or "normal" (read back
        from SQLite, not from the setting)."""
        with self._lock:
            level = int(self._conn.execute("PRAGMA synchronous").fetchone()[0])
        return {0: "off", 1: "normal", 2: "full", 3: "extra"}[level]

    # -- the file ---------------------------------------------------------------------------
    def check(self, force: bool = False) -> str | None:
        """Whether the file is still the one open (at most once a second unless forced); the
        problem, or None. Called by the committer's loop, so a deletion is noticed without traffic."""
        with self._lock:
            now = time.monotonic()
            if force or now - self._checked >= 1.0:
                self._checked = now
                if self._gone:
                    self._recover_locked()
                else:
                    self._check_locked()
            return self._problem

    def problem(self) -> str | None:
        """What keeps the spool from taking points durably (file deleted, replaced, unwritable)."""
        return self.check()

    def _check_locked(self) -> None:
        problem = self._watch.problem()
        if problem is None:
            return
        self._gone = True
        self.lost_files += 1
        self._problem = (
            f"spool {problem}; new points are refused (MQTT messages stay unacknowledged) until "
            f"{self.path.parent} exists again"
        )
        log.error(
            "%s. %d acknowledged points not yet in the historian are only in the deleted file, still open: they "
            "are drained from it meanwhile and carried over to the new file, but are LOST if the gateway stops "
            "before",
            self._problem,
            self._depth,
        )

    def _recover_locked(self) -> None:
        """Start a fresh file at the path once its directory exists, carrying over what the old
        (deleted) one still holds."""
        if not self.path.parent.is_dir():
            return
        try:
            new = open_sqlite(self.path, "spool", self._setup)
            watch = FileWatch.of(self.path)
            carried = 0
            new.execute("BEGIN IMMEDIATE")
            for created, n, source, body in self._conn.execute(
                "SELECT created_ns, n, source, body FROM spool ORDER BY id"
            ):
                new.execute(
                    "INSERT INTO spool (created_ns, n, source, body) VALUES (?, ?, ?, ?)", (created, n, source, body)
                )
                carried += n
            new.executemany(
                "INSERT INTO rejected (rejected_ns, reason, body) VALUES (?, ?, ?)",
                self._conn.execute("SELECT rejected_ns, reason, body FROM rejected ORDER BY id").fetchall(),
            )
            new.execute("COMMIT")
            depth = int(new.execute("SELECT COALESCE(SUM(n), 0) FROM spool").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            self._problem = f"spool {self.path}: cannot start a fresh file ({exc}); retrying"
            return
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._conn, self._watch, self._depth = new, watch, depth
        self._gone, self._problem = False, None
        log.error(
            "spool %s: started a fresh file after the old one was deleted; carried over the %d points it still "
            "held (nothing lost); points that arrived meanwhile were kept in memory, or refused and counted (MQTT "
            "messages stay unacknowledged for redelivery)",
            self.path,
            carried,
        )

    # -- writing ----------------------------------------------------------------------------
    def append(self, batches: Sequence[tuple[int, str, bytes]]) -> None:
        """Store (points, source, encoded body) batches durably in one transaction (all or none).
        Raises SpoolFull (reject_new, and the spool is not empty) or SpoolError (file deleted,
        replaced or unwritable); then nothing was made durable and nothing may be acknowledged."""
        batches = [b for b in batches if b[0]]
        if not batches:
            return
        incoming = sum(b[0] for b in batches)
        now = time.time_ns()
        rows = [(now, n, source, body) for n, source, body in batches]
        with self._lock:
            if self._gone:
                if time.monotonic() - self._checked >= 1.0:
                    self._checked = time.monotonic()
                    self._recover_locked()
                if self._gone:
                    raise SpoolError(self._problem or f"spool {self.path}: file gone")
            self._check_locked()  # before the commit too: write nothing into a file already deleted
            if self._gone:
                raise SpoolError(self._problem or f"spool {self.path}: file gone")
            full = self._depth + incoming > self.max_points
            if full and self.policy == SpoolPolicy.REJECT_NEW and self._depth > 0:
                self.refused += incoming
                raise SpoolFull(
                    f"spool {self.path}: full ({self._depth} of {self.max_points} points, "
                    f"{self._depth / self.max_points:.0%}); {incoming} new points refused (MQTT messages left "
                    "unacknowledged for redelivery); raise gateway.spool.max_points if this is not an outage"
                )
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                if full and self.policy == SpoolPolicy.DROP_OLDEST:
                    self._drop_oldest_locked(self._depth + incoming - self.max_points)
                self._conn.executemany("INSERT INTO spool (created_ns, n, source, body) VALUES (?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._problem = f"spool {self.path}: write failed ({exc}); is the disk full or the file read-only?"
                raise SpoolError(self._problem) from exc
            self._depth += incoming
            self._checked = time.monotonic()
            self._check_locked()  # after the commit: only a file still at its path counts as durable
            if self._gone:
                raise SpoolError(self._problem or f"spool {self.path}: file gone")
            self._problem = None

    def _drop_oldest_locked(self, need: int) -> None:
        freed = 0
        for row_id, n in self._conn.execute("SELECT id, n FROM spool ORDER BY id").fetchall():
            if freed >= need:
                break
            self._conn.execute("DELETE FROM spool WHERE id = ?", (row_id,))
            freed += n
        self._depth -= freed
        self.dropped += freed

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")

    # -- draining ---------------------------------------------------------------------------
    def oldest(self, max_points: int) -> list[SpoolBatch]:
        """The oldest batches, up to about `max_points` points (at least one batch)."""
        out: list[SpoolBatch] = []
        total = 0
        with self._lock:
            cursor = self._conn.execute("SELECT id, created_ns, n, source, body FROM spool ORDER BY id LIMIT 10000")
            for row_id, created, n, source, body in cursor:
                if out and total + n > max_points:
                    break
                out.append(SpoolBatch(row_id, created, n, source, body))
                total += n
        return out

    def remove(self, batches: Sequence[SpoolBatch]) -> None:
        """Forget batches the store has accepted."""
        if not batches:
            return
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("DELETE FROM spool WHERE id = ?", [(b.id,) for b in batches])
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._problem = (
                    f"spool {self.path}: cannot remove what the historian took ({exc}); free space on its disk"
                )
                raise SpoolError(self._problem) from exc
            self._depth -= sum(b.points for b in batches)
            if not self._gone:
                self._problem = None

    def set_aside(self, body: bytes, reason: str) -> None:
        """Keep what the store refused (4xx, or a row it can never hold) with the reason; it is not
        retried."""
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO rejected (rejected_ns, reason, body) VALUES (?, ?, ?)",
                    (time.time_ns(), reason[:500], body),
                )
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self.path}: cannot set a rejected batch aside ({exc})") from exc

    def rejected(self) -> list[tuple[str, bytes]]:
        """(reason, encoded body) of everything the store refused."""
        with self._lock:
            return self._conn.execute("SELECT reason, body FROM rejected ORDER BY id").fetchall()

    # -- state ------------------------------------------------------------------------------
    def depth(self) -> int:
        with self._lock:
            return self._depth

    def oldest_age_s(self) -> float:
        with self._lock:
            # the oldest row by primary key (ids and creation times rise together): no table scan
            row = self._conn.execute("SELECT created_ns FROM spool ORDER BY id LIMIT 1").fetchone()
        return 0.0 if row is None else max(0.0, (time.time_ns() - int(row[0])) / 1e9)

    def filling(self) -> bool:
        """At or above the warning level: time to alarm, before anything is refused or dropped."""
        return self.depth() >= self.warn_fraction * self.max_points

    def close(self) -> None:
        with self._lock:
            if self._gone and self._depth:
                log.error(
                    "spool %s: closing while its file is deleted: the %d points it still held are lost",
                    self.path,
                    self._depth,
                )
            self._conn.close()
