"""ISA-18.2 alarm handling: the state table, the store that outlives the process (and is shared
with the UI's), reconciliation at restart, shelving that expires by itself, chatter folded into
one alarm, suppression by design, and the flood and alarm-load figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anomaly.alarms import AlarmBook
from anomaly.alarmstate import (
    AlarmStore,
    bad_actors,
    flood,
    open_alarm_store,
    parse_key,
    per_window,
    standing,
)
from anomaly.alarmstates import Event, InvalidTransition, Priority, State, Status, transition
from anomaly.detectors import Snapshot
from gridverse.config import Settings
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Source
from gridverse.schema import ALARM, Alarm, AlarmRule, Severity
from gridverse.settings import load_settings
from tests.helpers import config_dir

S = 1_000_000_000
T0 = 1_790_000_000 * S
OIL = Alarm(AlarmRule.LIMIT, "PRIM", "T2-oil", "YPTR1.TmpOil", Severity.CRITICAL, "YPTR1.TmpOil = 151.0 above 85")
STUCK = Alarm(AlarmRule.STUCK, "PRIM", "F2", "MMXU1.A", Severity.WARNING, "MMXU1.A has read 80 for 8 samples")

N, U, A, R = State.NORMAL, State.UNACK, State.ACK, State.RTN_UNACK
SH, SU, OOS = State.SHELVED, State.SUPPRESSED, State.OUT_OF_SERVICE

# (state, condition active, event) → (state, condition active)
TABLE = [
    (N, False, Event.RAISE, U, True),
    (U, True, Event.ACK, A, True),
    (U, True, Event.CLEAR, R, False),
    (A, True, Event.CLEAR, N, False),
    (A, True, Event.RAISE, A, True),
    (R, False, Event.ACK, N, False),
    (R, False, Event.RAISE, U, True),
    (N, False, Event.CLEAR, N, False),
    (U, True, Event.SHELVE, SH, True),
    (SH, True, Event.CLEAR, SH, False),
    (SH, False, Event.RAISE, SH, True),
    (SH, True, Event.UNSHELVE, U, True),  # back annunciated: its condition still holds
    (SH, False, Event.UNSHELVE, N, False),
    (U, True, Event.SUPPRESS, SU, True),
    (SU, True, Event.UNSUPPRESS, U, True),
    (SU, False, Event.UNSUPPRESS, N, False),
    (A, True, Event.REMOVE, OOS, True),
    (OOS, True, Event.RAISE, OOS, True),
    (OOS, False, Event.RETURN, N, False),
    (OOS, True, Event.RETURN, U, True),
]


@pytest.mark.parametrize(("state", "active", "event", "after", "after_active"), TABLE)
def test_state_table(state: State, active: bool, event: Event, after: State, after_active: bool) -> None:
    assert transition(Status(state, active), event) == Status(after, after_active)


@pytest.mark.parametrize(
    ("state", "event", "says"),
    [
        (N, Event.ACK, "nothing to acknowledge"),
        (A, Event.ACK, "nothing to acknowledge"),
        (U, Event.UNSHELVE, "not shelved"),
        (OOS, Event.SHELVE, "return it to service"),
        (U, Event.RETURN, "in service already"),
    ],
)
def test_actions_that_do_not_apply_are_refused_with_the_reason(state: State, event: Event, says: str) -> None:
    with pytest.raises(InvalidTransition, match=says):
        transition(Status(state, True), event)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    def quick(doc: dict) -> None:
        doc["anomaly"].update(clear_after=1, chatter_count=3, chatter_window_s=600, raise_after={})

    return load_settings(config_dir(tmp_path, quick), environ={})


@pytest.fixture
def historian(tmp_path: Path):
    h = EmbeddedHistorian(tmp_path / "historian.db")
    yield h
    h.close()


def _book(settings: Settings, historian, now_ns: int = T0) -> AlarmBook:
    return AlarmBook(settings.site.name, settings.anomaly, settings.mqtt, historian, None, now_ns=now_ns)


def _alarm_records(historian) -> list[tuple[str, int]]:
    return [(r.tags["device"], int(r.fields["active"])) for r in historian.query(ALARM, tags={})]


def test_the_store_keeps_state_priority_and_acknowledgement_across_a_reopen(settings: Settings, historian) -> None:
    store = open_alarm_store(settings)
    book = AlarmBook.of(settings, historian, None, store)
    book.update([OIL], T0)
    store.acknowledge("limit:T2-oil/YPTR1.TmpOil", "olga", "crew informed", now_ns=T0 + S)
    store.close()
    again = AlarmStore(settings.anomaly.alarm_state_path)
    row = again.get(OIL.key)
    assert row is not None
    assert (row.state, row.active, row.priority, row.acked_by, row.ack_comment, row.count) == (
        State.ACK,
        True,
        Priority.CRITICAL,
        "olga",
        "crew informed",
        1,
    )
    assert row.message == OIL.message and row.substation == "PRIM" and row.first_raised_ns == T0
    assert [e.event for e in again.events()] == ["raise", "ack"]
    assert [e.actor for e in again.events()] == ["system", "olga"]
    again.close()


def test_another_process_acknowledges_while_the_stack_holds_the_store_open(settings: Settings, historian) -> None:
    """The UI is a separate process: its acknowledgement lands in the file the stack has open."""
    book = _book(settings, historian)
    book.update([OIL], T0)
    code = (
        "import sys; from anomaly.alarmstate import AlarmStore; "
        "s = AlarmStore(sys.argv[1]); print(s.acknowledge('limit:T2-oil/YPTR1.TmpOil', 'olga').state)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(settings.anomaly.alarm_state_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "ack"
    book.update([OIL], T0 + 2 * S)  # the stack keeps writing to the same file
    assert book.store.get(OIL.key).state is State.ACK
    book.update([], T0 + 4 * S)
    assert book.store.get(OIL.key).state is State.NORMAL


def test_a_restart_does_not_resurrect_an_alarm_whose_condition_is_gone(settings: Settings, historian) -> None:
    """Issue 12: alarms from a previous run came back as active after a restart."""
    first = _book(settings, historian)
    first.update([OIL, STUCK], T0)
    first.store.close()  # the stack stops (or dies) with both alarms stored active

    second = _book(settings, historian, now_ns=T0 + 60 * S)
    assert second.active_alarms() == []  # nothing active from storage alone, even before evaluating
    rows = {r.key: r for r in second.store.rows()}
    assert {k: (r.state, r.active) for k, r in rows.items()} == {OIL.key: (R, False), STUCK.key: (R, False)}
    assert second.store.evaluated_ns() is None  # the UI can tell nothing has been confirmed yet
    second.update([OIL], T0 + 62 * S)  # the first evaluation finds only the oil still too hot
    assert [a.key for a in second.active_alarms()] == [OIL.key]
    assert second.store.get(OIL.key).status == Status(U, True)
    assert second.store.get(STUCK.key).status == Status(R, False)  # cleared, awaiting acknowledgement
    assert second.raised == 0 and second.restored == 1  # the same alarm, not a new one
    assert second.store.get(OIL.key).count == 1
    assert second.store.evaluated_ns() == T0 + 62 * S
    # the historian says so too: each cleared at the restart, the oil alarm confirmed again
    assert _alarm_records(historian) == [("T2-oil", 1), ("F2", 1), ("T2-oil", 0), ("F2", 0), ("T2-oil", 1)]


def test_an_acknowledged_alarm_still_true_after_a_restart_stays_acknowledged(settings: Settings, historian) -> None:
    first = _book(settings, historian)
    first.update([OIL], T0)
    first.store.acknowledge(OIL.key, "olga", now_ns=T0 + S)
    first.store.close()
    second = _book(settings, historian, now_ns=T0 + 60 * S)
    assert second.active_alarms() == []
    second.update([OIL], T0 + 62 * S)
    row = second.store.get(OIL.key)
    assert (row.state, row.active, row.acked_by) == (A, True, "olga")
    second.update([OIL], T0 + 64 * S)
    assert second.store.get(OIL.key).state is A and second.raised == 0


def test_a_shelf_needs_a_reason_and_expires_by_itself(settings: Settings, historian) -> None:
    book = _book(settings, historian)
    book.update([OIL, STUCK], T0)
    store = book.store
    with pytest.raises(InvalidTransition, match="reason"):
        store.shelve(OIL.key, "olga", "  ", T0 + 600 * S, now_ns=T0)
    store.shelve(OIL.key, "olga", "sensor replaced tomorrow", T0 + 600 * S, now_ns=T0)
    store.shelve(STUCK.key, "olga", "known to read flat", T0 + 600 * S, now_ns=T0)
    row = store.get(OIL.key)
    assert (row.state, row.shelved_by, row.shelve_reason, row.shelved_until_ns) == (
        SH,
        "olga",
        "sensor replaced tomorrow",
        T0 + 600 * S,
    )
    book.update([OIL], T0 + 10 * S)  # the stuck condition ends while shelved; the oil one holds
    assert {r.key: r.state for r in store.rows(now_ns=T0 + 599 * S)} == {OIL.key: SH, STUCK.key: SH}
    after = {r.key: r for r in store.rows(now_ns=T0 + 600 * S)}  # nobody unshelves: the shelf expires
    assert after[OIL.key].status == Status(U, True)  # still true: annunciated again
    assert after[STUCK.key].status == Status(N, False)
    assert [e.note for e in store.events() if e.event == "unshelve"] == ["shelf expired", "shelf expired"]


def test_a_chattering_alarm_is_folded_into_one_alarm_with_a_count(settings: Settings, historian) -> None:
    """F2 raised and cleared 4 times in 4 minutes (issue 11): after `chatter_count` raises within
    the window the alarm is held, each return counted on it rather than raised again."""
    book = _book(settings, historian)
    t = T0
    for _ in range(10):  # true, false, true, false... every 2 s
        book.update([STUCK], t)
        book.update([], t + 2 * S)
        t += 4 * S
    assert book.raised == 3  # then held
    row = book.store.get(STUCK.key)
    assert row.chattering and row.active and row.count == 10 and row.state is U
    assert [a for d, a in _alarm_records(historian)] == [1, 0, 1, 0, 1]  # 3 raises, 2 clears: then one
    assert len(book.store.arrivals(0)) == 3
    book.update([], t + 590 * S)
    assert book.active_alarms()  # quiet for less than a window: still held
    book.update([], t + 602 * S)
    assert book.active_alarms() == [] and book.store.get(STUCK.key).state is R


def test_a_rule_with_an_on_delay_raises_only_when_its_condition_persists(settings: Settings, historian) -> None:
    cfg = settings.anomaly.model_copy(update={"raise_after": {"violation": 2}})
    book = AlarmBook(settings.site.name, cfg, settings.mqtt, historian, None, now_ns=T0)
    edge = Alarm(AlarmRule.VIOLATION, "", "bus 7", "voltage", Severity.WARNING, "bus 7: voltage 1.061 beyond 1.05")
    assert book.update([edge], T0) == []
    book.update([], T0 + 2 * S)  # one cycle only: never raised
    assert book.update([edge], T0 + 4 * S) == []
    assert book.update([edge], T0 + 6 * S) == [edge]


def test_alarms_of_a_bay_whose_breaker_is_open_are_suppressed_by_design(settings: Settings, historian) -> None:
    points = [Point("demo", "PRIM", "Q02", "F2", "XCBR1.Pos", Source.MODBUS, T0, 0.0)]
    suppress = Snapshot(points).suppressed()
    assert suppress == {"F2": "breaker XCBR1.Pos of F2 is open"}
    book = _book(settings, historian)
    assert book.update([STUCK, OIL], T0, suppress=suppress) == [OIL]
    row = book.store.get(STUCK.key)
    assert (row.state, row.active, row.suppressed_reason) == (SU, True, "breaker XCBR1.Pos of F2 is open")
    assert _alarm_records(historian) == [("T2-oil", 1)]  # not announced
    book.update([STUCK, OIL], T0 + 2 * S)  # breaker closed again, condition still there
    assert book.store.get(STUCK.key).state is U
    assert ("F2", 1) in _alarm_records(historian)


def test_flood_and_alarm_load_figures(settings: Settings, historian) -> None:
    book = _book(settings, historian)
    burst = [
        Alarm(AlarmRule.STUCK, "PRIM" if i < 8 else "SEC1", f"F{i}", "MMXU1.A", Severity.WARNING, "stuck")
        for i in range(11)
    ]
    book.update(burst[:5], T0)
    events = book.store.events()
    assert flood(events, T0 + S, window_s=600, limit=10) is None
    book.update(burst, T0 + 60 * S)
    found = flood(book.store.events(), T0 + 61 * S, window_s=600, limit=10)
    assert found is not None and found.arrivals == 11
    assert found.by_substation == {"PRIM": 8, "SEC1": 3}
    assert flood(book.store.events(), T0 + 700 * S, window_s=600, limit=10) is None  # over
    assert per_window(book.store.events(), T0, T0 + 1800 * S) == [11, 0, 0]
    book.update([], T0 + 62 * S)
    book.update([burst[0]], T0 + 64 * S)
    assert bad_actors(book.store.events(), 1) == [("stuck:F0/MMXU1.A", 2)]
    assert standing(book.store.rows(), T0 + 2 * 86400 * S) == [book.store.get(burst[0].key)]


def test_keys_read_as_the_stack_summary_spells_them() -> None:
    assert parse_key("violation:bus 7/voltage") == ("violation", "bus 7", "voltage")
    assert parse_key("comm_fail:RTU1/*") == ("comm_fail", "RTU1", "*")
    with pytest.raises(KeyError, match="rule:device/point"):
        parse_key("limit")


def test_a_failing_store_is_logged_once_and_its_recovery_once_while_alarms_still_go_out(
    settings: Settings, historian, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from anomaly.alarmstate import AlarmStoreError

    book = _book(settings, historian)
    real = book.store.mark_evaluated

    def locked(time_ns: int) -> None:
        raise AlarmStoreError("alarm store x: cannot write (database is locked)")

    monkeypatch.setattr(book.store, "mark_evaluated", locked)
    with caplog.at_level(logging.INFO, logger="anomaly.alarms"):
        for i in range(5):
            book.update([OIL], T0 + i * S)
        monkeypatch.setattr(book.store, "mark_evaluated", real)
        book.update([OIL], T0 + 10 * S)
        book.update([OIL], T0 + 12 * S)
    store_lines = [r.getMessage() for r in caplog.records if "alarm store" in r.getMessage()]
    assert len(store_lines) == 2 and "not updated" in store_lines[0] and "updated again" in store_lines[1]
    assert book.store_failures == 5 and book.raised == 1
    assert _alarm_records(historian) == [("T2-oil", 1)]  # the alarm itself went out regardless
