"""The spool, the writer and the embedded historian against faults in their data and their files:
a row the store can never hold is set aside and the rest drains, the drainer survives anything,
a full spool recovers by itself, a deleted file is noticed and nothing undurable acknowledged,
a truncated or corrupt file is moved aside with a clear message."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import pytest

from gateway.spool import Spool, SpoolError
from gateway.writer import HistorianWriter
from gridverse.historian import HistorianError
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Record, Source
from tests.services import wait_for

POISON_NS = 9999999999999 * 1_000_000  # "time": 9999999999999 (ms) read as ms: beyond int64 ns


def _batch(t0: int, k: int, n: int = 10) -> list[Record]:
    return [
        Point(
            "rural1", "primary", "Q01", "dev1", f"MMXU1.W{i}", Source.MQTT, t0 + k * 1000, float(k * n + i)
        ).to_record()
        for i in range(n)
    ]


def _poisoned(t0: int, k: int) -> list[Record]:
    records = _batch(t0, k)
    records[3] = records[3]._replace(time_ns=POISON_NS)
    return records


def test_a_poisoned_batch_spooled_before_a_restart_is_set_aside_and_the_rest_drains(tmp_path: Path) -> None:
    t0 = time.time_ns() - 60 * 10**9
    store = EmbeddedHistorian(tmp_path / "h.db")
    spool = Spool(tmp_path / "s.db", max_points=10_000)
    # what a gateway left behind: the poisoned batch is the oldest in the spool
    spool.append([(10, "mqtt", store.encode(_poisoned(t0, 0)))])
    spool.append([(10, "mqtt", store.encode(_batch(t0, k))) for k in range(1, 6)])
    spool.close()

    spool = Spool(tmp_path / "s.db", max_points=10_000)  # the restart
    writer = HistorianWriter(store, spool, flush_interval_s=0.05)
    writer.start()
    try:
        wait_for(lambda: spool.depth() == 0, "the spool drains past the poisoned batch")
        writer.submit_records(_batch(t0, 6))  # and ingestion goes on
        wait_for(lambda: writer.pending() == 0, "new points drain")
        assert store.count("telemetry") == 69  # every good row, the poisoned one only aside
        [(reason, body)] = spool.rejected()
        assert "int64" in reason and store.decode(body)[0].time_ns == POISON_NS
        assert writer.set_aside == 1 and writer.store_up and writer.problem() is None
        assert writer._drainer.is_alive()
    finally:
        writer.stop()


class _Flaky(EmbeddedHistorian):
    """A real embedded store whose writes fail with an exception nobody planned for, `n` times."""

    def __init__(self, path: Path, n: int) -> None:
        super().__init__(path)
        self.failures = n

    def write(self, records):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise RuntimeError("something nobody foresaw")
        super().write(records)


def test_the_drainer_survives_an_unexpected_exception_and_says_so_meanwhile(tmp_path: Path) -> None:
    store = _Flaky(tmp_path / "h.db", n=3)
    spool = Spool(tmp_path / "s.db", max_points=10_000)
    writer = HistorianWriter(store, spool, flush_interval_s=0.05, max_backoff_s=0.2)
    writer.submit_records(_batch(time.time_ns(), 1))
    writer.commit()
    writer.flush()
    assert not writer.store_up and spool.depth() == 10  # treated as the store down: kept, not set aside
    writer.start()
    try:
        wait_for(lambda: spool.depth() == 0, "drained once the store works")
        assert store.count("telemetry") == 10 and spool.rejected() == []
        assert writer._drainer.is_alive() and writer.last_drain_ns > 0 and writer.problem() is None
    finally:
        writer.stop()


def test_an_oversize_submission_on_an_empty_spool_is_accepted_and_a_group_is_cut_at_the_bound(
    tmp_path: Path,
) -> None:
    """One submission larger than the spool is never refused by an empty spool (it could never be
    taken otherwise); a group commit takes the submissions that fit and refuses the rest, so the
    spool stays within max_points however many messages one group commit gathers."""
    spool = Spool(tmp_path / "s.db", max_points=15, policy="reject_new")
    writer = HistorianWriter(EmbeddedHistorian(tmp_path / "h.db"), spool, flush_interval_s=60)
    acked: list[int] = []
    writer.submit_records(_batch(0, 0, n=30), lambda: acked.append(0))
    writer.commit()
    assert acked == [0] and spool.depth() == 30 and writer.refused == 0

    bounded = Spool(tmp_path / "b.db", max_points=25, policy="reject_new")
    writer = HistorianWriter(EmbeddedHistorian(tmp_path / "h2.db"), bounded, flush_interval_s=60)
    for k in range(1, 4):  # one group of 30 points into an empty spool of 25
        writer.submit_records(_batch(0, k), lambda k=k: acked.append(k))
    writer.commit()
    assert acked == [0, 1, 2] and bounded.depth() == 20 and writer.refused == 10  # the third waits (unacked)


def test_a_full_spool_says_so_once_and_recovers_by_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The store's directory is deleted (a real outage of the embedded store): the spool fills,
    refuses new points with one true message, and once the store is back and the spool has room,
    says so once and calls on_room, once, for the MQTT side to get the refused messages again."""
    (tmp_path / "store").mkdir()
    store = EmbeddedHistorian(tmp_path / "store" / "h.db")
    spool = Spool(tmp_path / "s.db", max_points=50, policy="reject_new")
    writer = HistorianWriter(store, spool, flush_interval_s=0.05, max_backoff_s=0.2)
    rooms: list[str] = []
    writer.on_room = lambda: rooms.append(threading.current_thread().name)
    writer.start()
    t0 = time.time_ns() - 10**9
    try:
        writer.submit_records(_batch(t0, 0))
        wait_for(lambda: store.count("telemetry") == 10, "first batch stored")
        shutil.rmtree(tmp_path / "store")
        acked: list[int] = []
        with caplog.at_level(logging.INFO):
            for k in range(1, 40):
                writer.submit_records(_batch(t0, k), lambda k=k: acked.append(k))
                time.sleep(0.02)
            wait_for(lambda: writer.refusals >= 5, "commits refused")
            assert not writer.store_up and store.problem() is not None
            problem = writer.problem()
            assert problem is not None and "full" in problem and "historian is down" in problem
            refused_lines = [r for r in caplog.records if "points refused" in r.getMessage()]
            assert len(refused_lines) == 1  # once, not on every 10 ms commit
            assert "historian is down" in refused_lines[0].getMessage()
            assert rooms == []
            (tmp_path / "store").mkdir()  # the operator brings the directory back
            wait_for(lambda: rooms != [], "on_room called", timeout=20)
            time.sleep(0.5)
        assert rooms == ["spool-on-room"]  # once, off the drainer's thread
        assert [r for r in caplog.records if "room again" in r.getMessage()]
        assert writer.problem() is None and writer.store_up
        wait_for(lambda: spool.depth() == 0, "spool drained into the fresh store file")
        # everything acknowledged is stored; nothing refused was acknowledged
        fresh = EmbeddedHistorian(tmp_path / "store" / "h.db")
        stored = {int(r.fields["value"]) // 10 for r in fresh.query("telemetry")}
        assert set(acked) <= stored and len(acked) < 39 and writer.refused > 0
    finally:
        writer.stop()


def test_a_deleted_spool_directory_acknowledges_nothing_until_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "spool").mkdir()
    store = EmbeddedHistorian(tmp_path / "h.db")
    spool = Spool(tmp_path / "spool" / "s.db", max_points=10_000)
    writer = HistorianWriter(store, spool, flush_interval_s=60)  # drained by hand below
    t0 = time.time_ns() - 10**9
    acked: list[int] = []
    writer.submit_records(_batch(t0, 0), lambda: acked.append(0))
    writer.commit()
    assert acked == [0]
    shutil.rmtree(tmp_path / "spool")
    with caplog.at_level(logging.INFO):
        writer.submit_records(_batch(t0, 1), lambda: acked.append(1))
        writer.commit()
        assert acked == [0]  # the commit went to a deleted file: not acknowledged
        assert "deleted" in (spool.problem() or "") and "deleted" in (writer.problem() or "")
        with pytest.raises(SpoolError, match="deleted"):
            spool.append([(10, "mqtt", store.encode(_batch(t0, 2)))])
        lost = [r.getMessage() for r in caplog.records if "LOST if the gateway stops" in r.getMessage()]
        assert len(lost) == 1 and "10 acknowledged points" in lost[0]  # what only the deleted file holds
        (tmp_path / "spool").mkdir()
        time.sleep(1.1)  # the file is looked at again at most once a second
        writer.commit()  # the points kept in memory go to the fresh file, then are acknowledged
    assert acked == [0, 1] and spool.problem() is None
    assert (tmp_path / "spool" / "s.db").exists()
    assert any("carried over the 10 points" in r.getMessage() for r in caplog.records)
    writer.flush()
    assert store.count("telemetry") == 20 and spool.depth() == 0


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "half":
        path.write_bytes(data[: len(data) // 2])
    else:  # garbage over the middle pages
        mid = len(data) // 2
        path.write_bytes(data[:4096] + b"\xa5" * (mid - 4096) + data[mid:])


def _fill_historian(path: Path) -> None:
    h = EmbeddedHistorian(path)
    h.write([r for k in range(300) for r in _batch(time.time_ns() - 10**12, k)])
    h.close()


def _fill_spool(path: Path) -> None:
    codec = EmbeddedHistorian(path.with_name("codec.db"))
    s = Spool(path, max_points=100_000)
    s.append([(10, "mqtt", codec.encode(_batch(0, k))) for k in range(300)])
    s.close()


@pytest.mark.parametrize("how", ["empty", "half", "garbage"])
@pytest.mark.parametrize("kind", ["spool", "historian"])
def test_a_damaged_file_at_start_is_moved_aside_with_a_clear_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, how: str
) -> None:
    path = tmp_path / f"{kind}.db"
    (_fill_spool if kind == "spool" else _fill_historian)(path)
    assert not Path(f"{path}-wal").exists()  # closed cleanly: everything is in the main file
    _damage(path, how)
    with caplog.at_level(logging.ERROR):
        if kind == "spool":
            s = Spool(path, max_points=1000)
            s.append([(10, "mqtt", EmbeddedHistorian(tmp_path / "c.db").encode(_batch(0, 1)))])
            assert s.depth() == 10  # a fresh spool that works
        else:
            h = EmbeddedHistorian(path)
            h.write(_batch(time.time_ns(), 1))
            assert h.count("telemetry") == 10  # a fresh store that works, not the damaged one's rows
    [aside] = list(tmp_path.glob(f"{kind}.db.corrupt-*"))
    assert aside.stat().st_size == (0 if how == "empty" else aside.stat().st_size) and aside.exists()
    [message] = [r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage()]
    assert str(path) in message and str(aside) in message and "fresh" in message


def test_a_deleted_historian_file_refuses_writes_until_its_directory_is_back(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    h = EmbeddedHistorian(tmp_path / "data" / "h.db")
    h.write(_batch(time.time_ns(), 0))
    shutil.rmtree(tmp_path / "data")
    with pytest.raises(HistorianError, match="deleted"):
        h.write(_batch(time.time_ns(), 1))  # would otherwise land in a file no one can find
    assert "deleted" in (h.problem() or "")
    with pytest.raises(HistorianError, match="recreate"):
        h.write(_batch(time.time_ns(), 2))
    (tmp_path / "data").mkdir()
    h.write(_batch(time.time_ns(), 3))
    assert h.problem() is None and h.count("telemetry") == 10
    assert EmbeddedHistorian(tmp_path / "data" / "h.db").count("telemetry") == 10  # on disk, at the path
