"""The embedded historian: one SQLite file in WAL mode, so many readers can follow one writer."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from gridverse.historian.base import Historian, HistorianError
from gridverse.points import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    measurement TEXT NOT NULL,
    series TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (measurement, series, time_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_time ON records (measurement, time_ns);
"""


class EmbeddedHistorian(Historian):
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise HistorianError(
                f"embedded historian {self.path}: cannot open ({exc}); "
                "check the directory exists and is writable (historian.path)"
            ) from exc
        self._lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        rows = [
            (
                r.measurement,
                r.series_key(),
                r.time_ns,
                json.dumps(r.tags, sort_keys=True),
                json.dumps(r.fields),
            )
            for r in records
        ]
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise HistorianError(f"embedded historian {self.path}: write failed ({exc})") from exc

    def _where(
        self,
        measurement: str,
        tags: Mapping[str, str] | None,
        start_ns: int | None,
        end_ns: int | None,
    ) -> tuple[str, list[object]]:
        clauses = ["measurement = ?"]
        args: list[object] = [measurement]
        if start_ns is not None:
            clauses.append("time_ns >= ?")
            args.append(start_ns)
        if end_ns is not None:
            clauses.append("time_ns <= ?")
            args.append(end_ns)
        for key, value in (tags or {}).items():
            clauses.append("json_extract(tags, ?) = ?")
            args.extend([f"$.{key}", value])
        return " AND ".join(clauses), args

    def _rows(self, sql: str, args: list[object]) -> list[Record]:
        try:
            with self._lock:
                cursor = self._conn.execute(sql, args)
                rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise HistorianError(f"embedded historian {self.path}: query failed ({exc})") from exc
        return [Record(measurement=m, tags=json.loads(t), fields=json.loads(f), time_ns=ts) for m, ts, t, f in rows]

    def query(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        where, args = self._where(measurement, tags, start_ns, end_ns)
        sql = f"SELECT measurement, time_ns, tags, fields FROM records WHERE {where} ORDER BY time_ns"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._rows(sql, args)

    def latest(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Record]:
        where, args = self._where(measurement, tags, start_ns, end_ns)
        sql = (
            f"SELECT measurement, MAX(time_ns), tags, fields FROM records WHERE {where} GROUP BY series ORDER BY series"
        )
        return self._rows(sql, args)

    def count(self, measurement: str, *, tags: Mapping[str, str] | None = None) -> int:
        where, args = self._where(measurement, tags, None, None)
        with self._lock:
            (n,) = self._conn.execute(f"SELECT COUNT(*) FROM records WHERE {where}", args).fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
