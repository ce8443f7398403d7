"""Opening and watching the SQLite files the gateway relies on (the spool, the embedded historian).

At open, a file that is empty (0 bytes), truncated or corrupt is moved aside to
`<name>.corrupt-<UTC time>` (with its -wal and -shm) and a fresh one is started, with an error
naming both files: never silently emptied, never a traceback with a misleading remedy.
While open, `FileWatch` tells whether the path still names the file that is open (device and
inode): a deleted or replaced file would otherwise take writes that no restart can find.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_MAGIC = b"SQLite format 3\x00"


def _damage(conn: sqlite3.Connection) -> str | None:
    """What is wrong with an open database file, or None (PRAGMA quick_check)."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])
    return None


def _precheck(path: Path) -> str | None:
    """Damage visible without SQLite: an empty file without a WAL, a wrong header, a file shorter
    than the page count its header states (truncated)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    wal = Path(f"{path}-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    if size == 0 and not wal_size:
        # another process may be creating it this very moment (connect, then the WAL pragma
        # writes the header within milliseconds): give it a moment before calling it truncated
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                if path.stat().st_size or Path(f"{path}-wal").exists():
                    return None
            except FileNotFoundError:
                return None  # gone meanwhile: a fresh one is created
        return "the file is empty (0 bytes): truncated"
    if size == 0:
        return None
    with path.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or header[:16] != _MAGIC:
        return "the file does not start with the SQLite header: it is not a database or is damaged"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # the header's page count is valid when its change counter matches "version-valid-for"
    valid = header[24:28] == header[92:96]
    if valid and not wal_size and pages * page_size > size:
        return f"the file is {size} bytes but its header says {pages * page_size}: truncated"
    return None


def move_aside(path: Path) -> Path:
    """Rename the file (and its -wal, -shm) to `<name>.corrupt-<UTC time>`; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            side.rename(Path(f"{target}{suffix}"))
    path.rename(target)
    return target


#: files up to this size get a full PRAGMA quick_check at open (about 30 MB/s from a cold disk
#: here); larger ones the header and length checks only, so a start never waits minutes
FULL_CHECK_MAX_BYTES = 256 * 2**20


def open_sqlite(
    path: Path,
    what: str,
    setup: Callable[[sqlite3.Connection], None],
) -> sqlite3.Connection:
    """Connect to `path` (creating its directory), check it, and run `setup` (pragmas, schema).
    A damaged file is moved aside with an error naming it, and a fresh one is started.
    sqlite3.OperationalError (permissions, a missing disk) is raised for the caller to explain."""
    path.parent.mkdir(parents=True, exist_ok=True)
    problem = _precheck(path)
    if problem is None:
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
        try:
            size = path.stat().st_size
            if size <= FULL_CHECK_MAX_BYTES:
                problem = _damage(conn)
            else:
                log.info(
                    "%s %s: %d MB, so only its header and length were checked at open; run "
                    "`sqlite3 %s 'PRAGMA quick_check'` while it is stopped for a full check",
                    what,
                    path,
                    size // 2**20,
                    path,
                )
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the schema page at least
            if problem is None:
                setup(conn)
                return conn
        except sqlite3.OperationalError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        conn.close()
    target = move_aside(path)
    log.error(
        "%s %s is damaged (%s); moved it aside to %s and started a fresh, empty one. What it held is "
        "not in the new file: inspect or recover it from there (sqlite3 %s .recover), or restore a backup",
        what,
        path,
        problem,
        target,
        target,
    )
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    setup(conn)
    return conn


@dataclass
class FileWatch:
    """Whether `path` still names the file opened at `identity` (device, inode)."""

    path: Path
    identity: tuple[int, int]

    @classmethod
    def of(cls, path: Path) -> FileWatch:
        st = os.stat(path)
        return cls(path, (st.st_dev, st.st_ino))

    def problem(self) -> str | None:
        """None while the path names the open file; else what happened to it."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            where = "its directory is gone too" if not self.path.parent.exists() else "the directory is still there"
            return f"{self.path} was deleted while open ({where})"
        except OSError as exc:
            return f"{self.path} cannot be checked ({exc})"
        if (st.st_dev, st.st_ino) != self.identity:
            return f"{self.path} was replaced by another file while open"
        return None
