"""The store-and-forward spool: every point is on disk before anyone is told it arrived.

One SQLite file in WAL mode. A row holds a batch (one MQTT message's or one poll's records)
already encoded in the store's own wire format (line protocol for InfluxDB, marshal'd records for
the embedded store; see Historian.encode), so tens of thousands of points a second cost a few
hundred row inserts, and draining is reading and sending bytes.

Batches drain oldest first. The spool is bounded in points; when
full it either refuses new batches (`reject_new`: MQTT messages then stay unacknowledged at the
broker, which redelivers them later) or drops the oldest (`drop_oldest`), counting every point
dropped. A warning level (default 80 %) lets an alarm fire before it is full.

Durability: WAL with synchronous=NORMAL survives the process being killed (kill -9); `full`
also survives a power cut, at the cost of an fsync per commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Policy = Literal["reject_new", "drop_oldest"]

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
        policy: Policy = "reject_new",
        warn_fraction: float = 0.8,
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        self.path = Path(path)
        self.max_points = max_points
        self.policy = policy
        self.warn_fraction = warn_fraction
        self.dropped = 0  # points dropped by drop_oldest
        self.refused = 0  # points refused by reject_new
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute("SELECT COALESCE(SUM(n), 0) FROM spool").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(
                f"spool {self.path}: cannot open ({exc}); check that gateway.spool.path is on a writable disk"
            ) from exc
        self._depth = int(row[0])  # points in the spool, kept in memory to avoid a SUM per call

    # -- writing ----------------------------------------------------------------------------
    def append(self, batches: Sequence[tuple[int, str, bytes]]) -> None:
        """Store (points, source, encoded body) batches durably in one transaction (all or none)."""
        batches = [b for b in batches if b[0]]
        if not batches:
            return
        incoming = sum(b[0] for b in batches)
        now = time.time_ns()
        rows = [(now, n, source, body) for n, source, body in batches]
        with self._lock:
            if self._depth + incoming > self.max_points and self.policy == "reject_new":
                self.refused += incoming
                raise SpoolFull(
                    f"spool {self.path}: full ({self._depth} of {self.max_points} points) while the store "
                    "is unreachable; new points are refused (and MQTT messages left unacknowledged for "
                    "redelivery); raise gateway.spool.max_points or bring the historian back"
                )
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                if self._depth + incoming > self.max_points:  # drop_oldest
                    self._drop_oldest_locked(self._depth + incoming - self.max_points)
                self._conn.executemany("INSERT INTO spool (created_ns, n, source, body) VALUES (?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise SpoolError(f"spool {self.path}: write failed ({exc}); is the disk full?") from exc
            self._depth += incoming

    def _drop_oldest_locked(self, need: int) -> None:
        freed = 0
        for row_id, n in self._conn.execute("SELECT id, n FROM spool ORDER BY id"):
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
                raise SpoolError(f"spool {self.path}: delete failed ({exc})") from exc
            self._depth -= sum(b.points for b in batches)

    def set_aside(self, body: bytes, reason: str) -> None:
        """Keep what the store refused (4xx) with the reason; it is not retried."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO rejected (rejected_ns, reason, body) VALUES (?, ?, ?)",
                (time.time_ns(), reason[:500], body),
            )

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
            self._conn.close()
