"""The spool's group commit as it adapts to the load (issue 14): nothing is acknowledged before its
group is on disk (a gateway killed mid-stream loses no acknowledged point), at a light load the
commits become rare, a broker's small in-flight window is committed at once (real Mosquitto with
its default window of 20), and the power-cut setting reaches SQLite."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from gateway.service import Gateway
from gateway.spool import Spool
from gateway.writer import HistorianWriter
from gridverse.config import Settings
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Record, Source
from gridverse.settings import load_settings
from tests.helpers import config_dir
from tests.services import wait_for

ROOT = Path(__file__).resolve().parents[1]


def _batch(k: int, n: int = 10) -> list[Record]:
    return [
        Point(
            "rural1", "primary", "Q01", "dev1", f"MMXU1.W{i}", Source.MQTT, 10**18 + k * 1000, float(k * n + i)
        ).to_record()
        for i in range(n)
    ]


def _idle_drainer(store: EmbeddedHistorian, spool: Spool, **kw: Any) -> HistorianWriter:
    """A writer whose drainer leaves the spool alone, so the file shows what was committed."""
    return HistorianWriter(store, spool, flush_interval_s=3600, flush_points=10**9, **kw)


def test_nothing_is_acknowledged_before_its_group_is_on_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_points=10**6, synchronous="full")
    writer = _idle_drainer(EmbeddedHistorian(tmp_path / "h.db"), spool, commit_max_delay_s=0.05)
    reader = sqlite3.connect(tmp_path / "s.db", check_same_thread=False)  # another connection to the file
    on_disk_at_ack: list[tuple[int, int]] = []

    def ack(k: int) -> None:
        on_disk_at_ack.append((k, int(reader.execute("SELECT COALESCE(SUM(n), 0) FROM spool").fetchone()[0])))

    writer.start()
    try:
        for k in range(150):
            writer.submit_records(_batch(k), lambda k=k: ack(k))
            time.sleep(0.004)
        wait_for(lambda: len(on_disk_at_ack) == 150, "every submission acknowledged", timeout=10)
    finally:
        writer.stop()
        reader.close()
    # submission k is acknowledged only when its 10 points, and all before it, are in the file
    assert [k for k, _ in on_disk_at_ack] == list(range(150))
    assert all(points >= 10 * (k + 1) for k, points in on_disk_at_ack)
    assert writer.commits < 150 / 3  # and they went in groups


_PRODUCER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from gateway.spool import Spool
    from gateway.writer import HistorianWriter
    from gridverse.historian.embedded import EmbeddedHistorian
    from tests.test_group_commit import _batch
    tmp = Path(sys.argv[1])
    writer = HistorianWriter(
        EmbeddedHistorian(tmp / "h.db"), Spool(tmp / "s.db", max_points=10**7, synchronous="full"),
        flush_interval_s=3600, flush_points=10**9, commit_max_delay_s=0.05,
    )
    writer.start()
    k = 0
    while True:  # until killed: a steady light load, each acknowledgement printed at once
        writer.submit_records(_batch(k), lambda k=k: print(k, flush=True))
        k += 1
        time.sleep(0.002)
    """
)


def test_a_killed_gateway_loses_no_acknowledged_point(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _PRODUCER, str(tmp_path), str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) >= 400:
                break
        proc.send_signal(signal.SIGKILL)  # mid-stream: groups gathering, one perhaps committing
        rest, _ = proc.communicate(timeout=10)
        acked += [int(k) for k in rest.split()]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 400
    store = EmbeddedHistorian(tmp_path / "h.db")
    spool = Spool(tmp_path / "s.db", max_points=10**7)
    spooled = {int(r.fields["value"]) // 10 for b in spool.oldest(10**9) for r in store.decode(b.body)}
    missing = sorted(set(acked) - spooled)
    assert not missing, f"acknowledged but not in the spool after kill -9: {missing[:10]}"


def test_at_a_light_load_commits_become_rare(tmp_path: Path) -> None:
    """100 submissions a second (an MQTT message each): a commit per commit_max_delay_s, not one
    per message or per 10 ms as before."""
    spool = Spool(tmp_path / "s.db", max_points=10**6)
    writer = _idle_drainer(EmbeddedHistorian(tmp_path / "h.db"), spool, commit_max_delay_s=0.1)
    acked: list[int] = []
    writer.start()
    try:
        t0 = time.monotonic()
        for k in range(200):
            writer.submit_records(_batch(k), lambda k=k: acked.append(k))
            time.sleep(max(0.0, t0 + (k + 1) * 0.01 - time.monotonic()))
        elapsed = time.monotonic() - t0
        wait_for(lambda: len(acked) == 200, "every submission acknowledged", timeout=5)
        assert acked == list(range(200)) and spool.depth() == 2000
    finally:
        writer.stop()
    # about elapsed / 0.1 commits (a few more when the sender stalls on a busy machine)
    assert writer.commits <= elapsed / 0.1 * 1.5 + 3, f"{writer.commits} commits in {elapsed:.1f} s"


def test_a_broker_window_of_twenty_is_committed_at_once(tmp_path: Path) -> None:
    """A broker sends at most its in-flight window of unacknowledged QoS 1 messages (Mosquitto's
    documented default: 20), then waits for acknowledgements. The writer learns the stall and
    commits each window at once instead of at its deadline (which would cap the rate at 20
    messages per commit_max_delay_s: 10 s here). The broker is modelled by a sender that holds at
    most 20 unacknowledged submissions: Mosquitto 2.0.11 on loopback let more than its window
    through once acknowledgements flowed (280 of 300 in hand), so it cannot pin the window here."""
    messages, window = 400, 20
    spool = Spool(tmp_path / "s.db", max_points=10**6)
    writer = _idle_drainer(EmbeddedHistorian(tmp_path / "h.db"), spool, commit_max_delay_s=0.5)
    slots = threading.Semaphore(window)
    acked: list[int] = []
    writer.start()
    try:
        t0 = time.monotonic()
        for k in range(messages):
            assert slots.acquire(timeout=5), "a window was never acknowledged"
            writer.submit_records(_batch(k), lambda k=k: (acked.append(k), slots.release()))
        wait_for(lambda: len(acked) == messages, "every message acknowledged", timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        writer.stop()
    assert acked == list(range(messages))
    assert elapsed < 4.0, f"{messages} messages through a window of {window} took {elapsed:.1f} s"
    assert writer.commits >= messages // window  # a commit per window, not per deadline


def test_the_power_cut_setting_reaches_sqlite(tmp_path: Path) -> None:
    """The shipped configuration fsyncs every commit (PRAGMA synchronous reads FULL on the spool's
    own connection); `durability: process_crash` is the named opt-out (NORMAL)."""
    shipped = load_settings(config_dir(tmp_path / "shipped"))
    assert shipped.gateway.spool.durability == "power_cut"

    def opt_out(doc: dict[str, Any]) -> None:
        doc["gateway"]["spool"]["durability"] = "process_crash"

    opted = load_settings(config_dir(tmp_path / "opted", opt_out))

    async def pragma(name: str, settings: Settings) -> str:
        gw = Gateway(settings, EmbeddedHistorian(tmp_path / f"{name}.db"))  # as `gateway run` builds it
        try:
            return gw.spool.synchronous_pragma()
        finally:
            await gw.stop()

    found = {name: asyncio.run(pragma(name, settings)) for name, settings in (("shipped", shipped), ("opted", opted))}
    assert found == {"shipped": "full", "opted": "normal"}


def test_a_light_mqtt_pass_commits_on_its_own_thread_and_a_heavy_one_wakes_the_committer(tmp_path: Path) -> None:
    """The MQTT network thread brackets each pass with begin_batch/end_batch: a light pass's
    messages are committed on that thread before end_batch returns (acknowledged there, on disk
    first); a heavy pass hands them to the committer thread. Nothing is acknowledged before it is
    in the spool file either way."""
    spool = Spool(tmp_path / "s.db", max_points=10**6, synchronous="full")
    writer = _idle_drainer(EmbeddedHistorian(tmp_path / "h.db"), spool, commit_max_delay_s=0.05)
    reader = sqlite3.connect(tmp_path / "s.db", check_same_thread=False)
    acked: list[tuple[int, str, int]] = []

    def ack(k: int) -> None:
        on_disk = int(reader.execute("SELECT COALESCE(SUM(n), 0) FROM spool").fetchone()[0])
        acked.append((k, threading.current_thread().name, on_disk))

    writer.start()
    try:
        writer.begin_batch()
        for k in range(5):
            writer.submit_records(_batch(k), lambda k=k: ack(k))
        assert acked == [], "nothing acknowledged while the pass is still reading"
        writer.end_batch(commit_here=True)
        assert [k for k, _t, _n in acked] == list(range(5)), "committed and acknowledged before end_batch returned"
        assert {t for _k, t, _n in acked} == {threading.current_thread().name}
        assert all(n >= 50 for _k, _t, n in acked)

        acked.clear()
        writer.begin_batch()
        for k in range(5, 10):
            writer.submit_records(_batch(k), lambda k=k: ack(k))
        writer.end_batch(commit_here=False)
        wait_for(lambda: len(acked) == 5, "the heavy pass acknowledged by the committer", timeout=10)
        assert {t for _k, t, _n in acked} == {"spool-committer"}
        assert all(n >= 100 for _k, _t, n in acked)
    finally:
        writer.stop(5)
        reader.close()
