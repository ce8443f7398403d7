"""The embedded historian: one SQLite file in WAL mode, so many readers can follow one writer.

Layout: `series` (one row per measurement and tag set), `raw` (series id, time, fields as JSON:
about 60 bytes a point) and `rollup` (per series, field and 1-minute or 15-minute bucket: count,
sum, min, max, and the last value of a text field).

Retention, like InfluxDB's retention policies and downsampling tasks (`historian.retention`): raw
points older than `raw_days` become 1-minute aggregates, 1-minute aggregates older than
`minute_days` become 15-minute ones, and 15-minute ones older than `quarter_days` are deleted. The
job runs on the writer's thread at most every `every_s` (bounded to about a second a run, so it
never stalls the drain), and works per series, so a late point older than the raw window is
folded into its bucket the next time round. Freed pages are reused, and handed back to the disk
by `PRAGMA incremental_vacuum` on files created with `auto_vacuum=INCREMENTAL` (every new file).

Every datum lives in exactly one table at a time, so `query` and `latest` read all three: recent
windows find raw rows, older ones find aggregates. An aggregate comes back as a record at its
bucket start whose numeric fields hold the mean, with `<field>_min`, `<field>_max` and
`<field>_count` beside it; a text field (such as `quality`) holds its last value in the bucket.

The file is checked at open (a truncated or corrupt one is moved aside, see `sqlitefile`), and
after each write the path must still name the open file: a file deleted or replaced while open
makes writes fail with HistorianError (the gateway keeps the points spooled) and `problem()` say
so, until the directory exists again; then a fresh file is started there, with an error saying
the history in the deleted file is gone. A missing directory is not recreated by the store (it
may be an unmounted volume); recreate it and the store resumes by itself.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gridverse.config import RetentionConfig
from gridverse.historian.base import Historian, HistorianError, HistorianRejected, record_problem
from gridverse.historian.sqlitefile import FileWatch, open_sqlite
from gridverse.points import Record

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    key TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (measurement, key)
);
CREATE TABLE IF NOT EXISTS raw (
    series_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (series_id, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup (
    step_s INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    field TEXT NOT NULL,
    n INTEGER NOT NULL,
    vsum REAL,
    vmin REAL,
    vmax REAL,
    vlast TEXT,
    last_ns INTEGER NOT NULL,
    PRIMARY KEY (step_s, series_id, time_ns, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_UPSERT = """
INSERT INTO rollup (step_s, series_id, time_ns, field, n, vsum, vmin, vmax, vlast, last_ns)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (step_s, series_id, time_ns, field) DO UPDATE SET
    n = n + excluded.n,
    vsum = CASE WHEN excluded.vsum IS NULL THEN vsum WHEN vsum IS NULL THEN excluded.vsum
           ELSE vsum + excluded.vsum END,
    vmin = CASE WHEN excluded.vmin IS NULL THEN vmin WHEN vmin IS NULL THEN excluded.vmin
           ELSE min(vmin, excluded.vmin) END,
    vmax = CASE WHEN excluded.vmax IS NULL THEN vmax WHEN vmax IS NULL THEN excluded.vmax
           ELSE max(vmax, excluded.vmax) END,
    vlast = CASE WHEN excluded.vlast IS NOT NULL AND (vlast IS NULL OR excluded.last_ns >= last_ns)
            THEN excluded.vlast ELSE vlast END,
    last_ns = max(last_ns, excluded.last_ns)
"""

#: one encoder for every row (json.dumps with separators builds a new encoder per call)
_encode_fields = json.JSONEncoder(separators=(",", ":")).encode
MINUTE, QUARTER = 60, 900
_NS = 1_000_000_000
_DAY_NS = 86400 * _NS


class _Acc:
    """One rollup cell being built: count, sum, min, max of numbers; last of text."""

    __slots__ = ("last", "last_ns", "n", "vmax", "vmin", "vsum")

    def __init__(self) -> None:
        self.n = 0
        self.vsum: float | None = None
        self.vmin: float | None = None
        self.vmax: float | None = None
        self.last: str | None = None
        self.last_ns = -(2**63)

    def number(self, v: float, n: int = 1, vsum: float | None = None, vmin: float | None = None, vmax=None) -> None:
        self.n += n
        s, lo, hi = (v if vsum is None else vsum), (v if vmin is None else vmin), (v if vmax is None else vmax)
        self.vsum = s if self.vsum is None else self.vsum + s
        self.vmin = lo if self.vmin is None else min(self.vmin, lo)
        self.vmax = hi if self.vmax is None else max(self.vmax, hi)

    def text(self, v: str, t: int, n: int = 1) -> None:
        self.n += n
        if t >= self.last_ns:
            self.last, self.last_ns = v, t


class EmbeddedHistorian(Historian):
    def __init__(self, path: Path | str, *, retention: RetentionConfig | None = None) -> None:
        """`retention`: a `RetentionConfig` (raw_days, minute_days, quarter_days, every_s), or
        None to keep everything raw (readers, tests)."""
        self.path = Path(path)
        self.retention = retention
        self._lock = threading.RLock()
        self._series: dict[tuple[str, str], int] = {}
        self._problem: str | None = None
        self._checked = 0.0
        self._next_retention = time.monotonic() + 5.0  # not in the way of start-up
        self._retention_cursor = 0  # series id the budgeted job resumes after
        self.lost_files = 0  # files found deleted or replaced while open
        self._conn = self._open()

    # -- the file -----------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            conn = open_sqlite(self.path, "embedded historian", self._setup)
            self._watch = FileWatch.of(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise HistorianError(
                f"embedded historian {self.path}: cannot open ({exc}); "
                "check the directory exists and is writable (historian.path)"
            ) from exc
        self._series.clear()
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        if not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect before the first table
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA journal_size_limit=67108864")  # the WAL is cut back to 64 MB after a burst
        conn.executescript(_SCHEMA)
        old = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone()
        if old:
            self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """From the first layout (one `records` table repeating tags on every row)."""
        started = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR IGNORE INTO series (measurement, key, tags) "
                "SELECT measurement, series, MIN(tags) FROM records GROUP BY measurement, series"
            )
            n = conn.execute(
                "INSERT OR REPLACE INTO raw (series_id, time_ns, fields) SELECT s.id, r.time_ns, r.fields "
                "FROM records r JOIN series s ON s.measurement = r.measurement AND s.key = r.series"
            ).rowcount
            conn.execute("DROP TABLE records")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info(
            "embedded historian %s: moved %d rows to the compact layout in %.1f s",
            self.path,
            n,
            time.monotonic() - started,
        )

    def _check_file_locked(self) -> str | None:
        problem = self._watch.problem()
        if problem is not None and self._problem is None:
            self.lost_files += 1
            log.error(
                "embedded historian %s; writes are refused (the gateway keeps the points in its spool) "
                "until the directory exists again, then a fresh file is started there. The history the "
                "deleted file held is gone unless restored from a backup",
                problem,
            )
        if problem is not None:
            self._problem = problem
        return problem

    def _ensure_open_locked(self) -> None:
        """Before a write: reopen the file if it was deleted and its directory is back."""
        if self._problem is None:
            return
        if self._watch.problem() is None:  # an unwritable spell that has passed
            return
        if not self.path.parent.is_dir():
            raise HistorianError(
                f"embedded historian {self._problem}; recreate {self.path.parent} (or fix historian.path) "
                "and the store resumes by itself"
            )
        old = self._conn
        self._conn = self._open()
        old.close()
        log.error(
            "embedded historian %s: the file was deleted or replaced while open; now writing to %s "
            "(a fresh file unless one was put there); what the old file held is not in it",
            self.path,
            self.path,
        )
        self._problem = None

    def problem(self) -> str | None:
        """The file deleted, replaced or unwritable, or None (checked at most once a second)."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= 1.0:
                self._checked = now
                self._check_file_locked()
            return self._problem

    # -- writing ------------------------------------------------------------------------------
    def write(self, records: Sequence[Record]) -> None:
        """Store records (idempotent: one row per series and time). Raises HistorianRejected when a
        record can never be stored (a time beyond int64 ns, wrong types) and HistorianError when
        the file cannot take writes now."""
        if not records:
            return
        for r in records:
            why = record_problem(r)
            if why is not None:
                raise HistorianRejected(f"embedded historian {self.path}: {why} in {r!r:.300}")
        with self._lock:
            self._ensure_open_locked()
            conn = self._conn
            new: dict[tuple[str, str], int] = {}
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rows = []
                    for r in records:
                        key = (r.measurement, r.series_key())
                        sid = self._series.get(key) or new.get(key)
                        if sid is None:
                            sid = new[key] = self._series_id(conn, key, r.tags)
                        rows.append((sid, r.time_ns, _encode_fields(r.fields)))
                    conn.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?)", rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self._problem = f"{self.path}: write failed ({exc})"
                raise HistorianError(
                    f"embedded historian {self._problem}; check the disk has space and the file is writable"
                ) from exc
            except (OverflowError, TypeError, ValueError) as exc:  # what record_problem did not foresee
                raise HistorianRejected(f"embedded historian {self.path}: {exc}") from exc
            self._series.update(new)
            problem = self._check_file_locked()
            self._checked = time.monotonic()
            if problem is not None:
                raise HistorianError(f"embedded historian {problem}: the write did not reach a file on disk")
            self._problem = None
            if self.retention is not None and time.monotonic() >= self._next_retention:
                self._retention_turn()

    def _series_id(self, conn: sqlite3.Connection, key: tuple[str, str], tags: Mapping[str, str]) -> int:
        row = conn.execute("SELECT id FROM series WHERE measurement = ? AND key = ?", key).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO series (measurement, key, tags) VALUES (?, ?, ?)",
                (*key, json.dumps(dict(tags), sort_keys=True)),
            )
            return int(cur.lastrowid or 0)
        return int(row[0])

    # -- retention ----------------------------------------------------------------------------
    def _retention_turn(self) -> None:
        assert self.retention is not None
        try:
            done = self.run_retention(budget_s=1.0)
        except sqlite3.Error as exc:
            log.error("embedded historian %s: retention job failed (%s); retried in %.0f s", self.path, exc, 60)
            done = True
        self._next_retention = time.monotonic() + (self.retention.every_s if done else 1.0)

    def run_retention(self, now_ns: int | None = None, budget_s: float | None = None) -> bool:
        """Fold raw rows older than `raw_days` into 1-minute aggregates, those older than
        `minute_days` into 15-minute ones, delete 15-minute ones older than `quarter_days`.
        True when every series was handled; False when `budget_s` ran out (it resumes there)."""
        if self.retention is None:
            return True
        cfg = self.retention
        now_ns = time.time_ns() if now_ns is None else now_ns
        quarter_ns = QUARTER * _NS
        raw_cut = (now_ns - int(cfg.raw_days * _DAY_NS)) // quarter_ns * quarter_ns
        minute_cut = (now_ns - int(cfg.minute_days * _DAY_NS)) // quarter_ns * quarter_ns
        quarter_cut = now_ns - int(cfg.quarter_days * _DAY_NS)
        deadline = None if budget_s is None else time.monotonic() + budget_s
        with self._lock:
            conn = self._conn
            ids = [
                r[0] for r in conn.execute("SELECT id FROM series WHERE id > ? ORDER BY id", (self._retention_cursor,))
            ]
            for start in range(0, len(ids), 50):
                chunk = ids[start : start + 50]
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sid in chunk:
                        self._retire(conn, sid, raw_cut, minute_cut, quarter_cut)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                self._retention_cursor = chunk[-1]
                if deadline is not None and time.monotonic() > deadline and start + 50 < len(ids):
                    return False
            self._retention_cursor = 0
            self._vacuum(conn)
        return True

    def _retire(self, conn: sqlite3.Connection, sid: int, raw_cut: int, minute_cut: int, quarter_cut: int) -> None:
        rows = conn.execute("SELECT time_ns, fields FROM raw WHERE series_id = ? AND time_ns < ?", (sid, raw_cut))
        cells: dict[tuple[int, str], _Acc] = {}
        step = MINUTE * _NS
        for t, text in rows.fetchall():
            bucket = t // step * step
            for k, v in json.loads(text).items():
                acc = cells.get((bucket, k))
                if acc is None:
                    acc = cells[bucket, k] = _Acc()
                if isinstance(v, str):
                    acc.text(v, t)
                elif isinstance(v, (int, float)) and math.isfinite(v):
                    acc.number(float(v))
        if cells:
            self._store_cells(conn, MINUTE, sid, cells)
            conn.execute("DELETE FROM raw WHERE series_id = ? AND time_ns < ?", (sid, raw_cut))
        rows = conn.execute(
            "SELECT time_ns, field, n, vsum, vmin, vmax, vlast, last_ns FROM rollup "
            "WHERE step_s = ? AND series_id = ? AND time_ns < ?",
            (MINUTE, sid, minute_cut),
        )
        cells = {}
        step = QUARTER * _NS
        for t, field, n, vsum, vmin, vmax, vlast, last_ns in rows.fetchall():
            acc = cells.get((t // step * step, field))
            if acc is None:
                acc = cells[t // step * step, field] = _Acc()
            if vsum is not None:
                acc.number(0.0, n, vsum, vmin, vmax)
            elif vlast is not None:
                acc.text(vlast, last_ns, n)
        if cells:
            self._store_cells(conn, QUARTER, sid, cells)
            conn.execute(
                "DELETE FROM rollup WHERE step_s = ? AND series_id = ? AND time_ns < ?", (MINUTE, sid, minute_cut)
            )
        conn.execute(
            "DELETE FROM rollup WHERE step_s = ? AND series_id = ? AND time_ns < ?", (QUARTER, sid, quarter_cut)
        )

    @staticmethod
    def _store_cells(conn: sqlite3.Connection, step_s: int, sid: int, cells: dict[tuple[int, str], _Acc]) -> None:
        conn.executemany(
            _UPSERT,
            [(step_s, sid, t, k, a.n, a.vsum, a.vmin, a.vmax, a.last, a.last_ns) for (t, k), a in cells.items() if a.n],
        )
        newest = max(t for t, _ in cells) + step_s * _NS
        conn.execute(
            "INSERT INTO meta VALUES ('rollup_until_ns', ?) ON CONFLICT (key) DO UPDATE SET value = "
            "max(value, excluded.value)",
            (newest,),
        )

    def _vacuum(self, conn: sqlite3.Connection) -> None:
        """Hand pages freed by retention back to the disk, when more than a tenth is free."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return  # a file from before auto_vacuum: its free pages are reused, the file does not grow
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        if free > 0.1 * pages:
            conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only

    # -- reading ------------------------------------------------------------------------------
    def _series_where(
        self, measurement: str, tags: Mapping[str, str] | None, alias: str = ""
    ) -> tuple[str, list[object]]:
        clauses = [f"{alias}measurement = ?"]
        args: list[object] = [measurement]
        for key, value in (tags or {}).items():
            clauses.append(f"json_extract({alias}tags, ?) = ?")
            args.extend([f"$.{key}", value])
        return " AND ".join(clauses), args

    @staticmethod
    def _window(start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
        lo = -(2**63) if start_ns is None else max(int(start_ns), -(2**63))
        hi = 2**63 - 1 if end_ns is None else min(int(end_ns), 2**63 - 1)
        return lo, hi

    def _read(self, sql: str, args: Sequence[object]) -> list[Any]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise HistorianError(f"embedded historian {self.path}: query failed ({exc})") from exc

    def _rollup_until(self) -> int:
        row = self._read("SELECT value FROM meta WHERE key = 'rollup_until_ns'", [])
        return int(row[0][0]) if row else -(2**63)

    @staticmethod
    def _pivot(rows: Iterable[tuple], tags_of: Mapping[int, dict[str, str]], measurement: str) -> list[Record]:
        """Rollup rows (series, time, field, n, sum, min, max, last), ordered by series and time
        within each, into records: mean under the field's name, with _min, _max, _count."""
        out: dict[tuple[int, int], dict[str, float | int | str | bool]] = {}
        for sid, t, field, n, vsum, vmin, vmax, vlast in rows:
            fields = out.setdefault((sid, t), {})
            if vsum is not None and n:
                fields[field] = vsum / n
                fields[f"{field}_min"] = vmin
                fields[f"{field}_max"] = vmax
                fields[f"{field}_count"] = n
            elif vlast is not None:
                fields[field] = vlast
        return [Record(measurement, dict(tags_of[sid]), f, t) for (sid, t), f in out.items()]

    def query(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Rows in time order; ranges older than the raw window come back as aggregates (see the
        module docstring), ranges within it as raw rows."""
        where, args = self._series_where(measurement, tags)
        lo, hi = self._window(start_ns, end_ns)
        series = self._read(f"SELECT id, tags FROM series WHERE {where}", args)
        if not series:
            return []
        tags_of = {sid: json.loads(t) for sid, t in series}
        sub = f"SELECT id FROM series WHERE {where}"
        sql = (
            f"SELECT series_id, time_ns, fields FROM raw WHERE series_id IN ({sub}) AND time_ns BETWEEN ? AND ? "
            "ORDER BY time_ns, series_id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = [
            Record(measurement, dict(tags_of[sid]), json.loads(f), t) for sid, t, f in self._read(sql, [*args, lo, hi])
        ]
        if lo < self._rollup_until():
            sql = (
                "SELECT series_id, time_ns, field, n, vsum, vmin, vmax, vlast FROM rollup "
                f"WHERE step_s = ? AND series_id IN ({sub}) AND time_ns BETWEEN ? AND ? ORDER BY series_id, time_ns"
            )
            for step in (MINUTE, QUARTER):
                out += self._pivot(self._read(sql, [step, *args, lo, hi]), tags_of, measurement)
            out.sort(key=lambda r: r.time_ns)
            if limit is not None:
                out = out[: int(limit)]
        return out

    def latest(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Record]:
        """The newest row of each series within the window: raw when there is one, else the
        newest aggregate (1-minute, then 15-minute) in the window."""
        where, args = self._series_where(measurement, tags)
        swhere, _ = self._series_where(measurement, tags, "s.")
        lo, hi = self._window(start_ns, end_ns)
        rows = self._read(
            "SELECT s.id, s.key, s.tags, r.time_ns, r.fields FROM series s JOIN raw r ON r.series_id = s.id "
            "AND r.time_ns = (SELECT MAX(time_ns) FROM raw WHERE series_id = s.id AND time_ns BETWEEN ? AND ?) "
            f"WHERE {swhere} ORDER BY s.key",
            [lo, hi, *args],
        )
        found = {sid: (key, Record(measurement, json.loads(t), json.loads(f), ts)) for sid, key, t, ts, f in rows}
        if lo < self._rollup_until():
            for sid, key, t in self._read(f"SELECT id, key, tags FROM series WHERE {where}", args):
                if sid in found:
                    continue
                for step in (MINUTE, QUARTER):
                    cells = self._read(
                        "SELECT series_id, time_ns, field, n, vsum, vmin, vmax, vlast FROM rollup WHERE step_s = ? "
                        "AND series_id = ? AND time_ns = (SELECT MAX(time_ns) FROM rollup WHERE step_s = ? "
                        "AND series_id = ? AND time_ns BETWEEN ? AND ?)",
                        [step, sid, step, sid, lo, hi],
                    )
                    if cells:
                        found[sid] = (key, self._pivot(cells, {sid: json.loads(t)}, measurement)[0])
                        break
        return [rec for _key, rec in sorted(found.values(), key=lambda kv: kv[0])]

    def count(self, measurement: str, *, tags: Mapping[str, str] | None = None) -> int:
        """Raw rows of a measurement (aggregates not counted)."""
        where, args = self._series_where(measurement, tags)
        rows = self._read(f"SELECT COUNT(*) FROM raw WHERE series_id IN (SELECT id FROM series WHERE {where})", args)
        return int(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
