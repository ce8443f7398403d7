"""The Alarms page (AppTest, real sign-in service, real alarm store and audit record): an operator
acknowledges and shelves, each action in the audit record before the store changes; a viewer
sees the alarms but cannot act, even by calling the handler; a flood shows its banner; with the
stack down the page says the states are not live."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from anomaly.alarms import AlarmBook
from anomaly.alarmstate import AlarmStore
from anomaly.alarmstates import State
from gridverse.audit import AuditRecord
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.schema import Alarm, AlarmRule, Severity
from gridverse.settings import load_settings
from tests.helpers import config_dir

OIL = Alarm(
    AlarmRule.LIMIT,
    "PRIM",
    "T2-oil",
    "YPTR1.TmpOil",
    Severity.CRITICAL,
    "YPTR1.TmpOil = 151.0 degC above 85 — transformer T2 top oil far above its limit; check the cooling fans and "
    "the load on T2 before the hot spot ages the insulation",
)
KEY = "limit:T2-oil/YPTR1.TmpOil"


def _alarm_page() -> None:
    """Sign in through the real sign-in service, then draw the page (or, with ALARM_TEST_FORGE,
    call the acknowledge handler directly, as a forged request would)."""
    import os

    import streamlit as st

    from ui import signin
    from ui.views import alarms

    if signin.TOKEN_KEY not in st.session_state:
        token, _user = signin.service().sign_in(os.environ["ALARM_TEST_USER"], os.environ["ALARM_TEST_PASSWORD"])
        st.session_state[signin.TOKEN_KEY] = token
    if os.environ.get("ALARM_TEST_FORGE"):
        from anomaly.alarmstates import Event

        event = Event(os.environ.get("ALARM_TEST_FORGE_EVENT", "ack"))
        alarms._act(event, [os.environ["ALARM_TEST_FORGE"]], reason="forged")
        st.write("acted")
        return
    alarms.page()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An operator and a viewer, and one critical alarm raised by the stack's alarm book."""
    import streamlit as st

    from gridverse.auth.users import UserStore

    main_file = config_dir(
        tmp_path,
        lambda d: d.update(
            auth={"users_file": str(tmp_path / "users.yaml"), "argon2_time_cost": 1, "argon2_memory_kib": 64}
        ),
    )
    settings = load_settings(main_file, environ={})
    users = UserStore(settings.auth)
    users.add("olga", "operator", "correct horse battery")
    users.add("vic", "viewer", "staple battery horse")
    users.add("erik", "engineer", "battery staple horse correct")
    historian = EmbeddedHistorian(tmp_path / "historian.db")
    book = AlarmBook.of(settings, historian, None)
    book.update([OIL], time.time_ns())
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(main_file))
    st.cache_resource.clear()  # the UI caches its settings and store per process
    yield settings, book
    st.cache_resource.clear()
    book.store.close()
    historian.close()


def _as(monkeypatch: pytest.MonkeyPatch, user: str, password: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ALARM_TEST_USER", user)
    monkeypatch.setenv("ALARM_TEST_PASSWORD", password)
    return AppTest.from_function(_alarm_page, default_timeout=60)


def _entries(settings) -> list:
    path = Path(settings.audit.path)
    return AuditRecord(path, settings.audit.key_path).entries() if path.exists() else []


def test_an_operator_acknowledges_and_it_is_audited_before_the_store_changes(site, monkeypatch) -> None:
    settings, book = site
    at = _as(monkeypatch, "olga", "correct horse battery").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["device"]) == ["T2-oil"] and table["state"][0] == "Unacknowledged"
    assert table["priority"][0] == "critical"
    assert table["message"][0] == OIL.message  # the whole message, not cut off
    assert "Live" in at.caption[0].value
    at.multiselect(key="alarms.pick").select(KEY).run()
    assert OIL.message in " ".join(m.value for m in at.markdown)  # selected: shown in full
    at.text_input(key="alarms.comment").input("crew on the way").run()
    at.button(key="alarms.ack").click().run()
    assert not at.exception, at.exception
    assert f"Acknowledged: {KEY}" in at.success[0].value
    row = book.store.get(KEY)
    assert (row.state, row.acked_by, row.ack_comment) == (State.ACK, "olga", "crew on the way")
    entries = [e for e in _entries(settings) if e.action == "alarm.ack"]
    assert len(entries) == 1
    e = entries[0]
    assert (e.actor, e.role, e.target, e.reason) == ("olga", "operator", KEY, "crew on the way")
    assert e.before == {"state": "unack", "active": True} and e.after == {"state": "ack", "active": True}


def test_shelving_needs_a_reason_and_is_audited_with_its_expiry(site, monkeypatch) -> None:
    settings, book = site
    at = _as(monkeypatch, "olga", "correct horse battery").run()
    at.multiselect(key="alarms.pick").select(KEY).run()
    at.button(key="alarms.shelve").click().run()
    assert "needs a reason" in at.error[0].value and book.store.get(KEY).state is State.UNACK
    at.text_input(key="alarms.reason").input("sensor being replaced").run()
    at.selectbox(key="alarms.expiry").select("4 hours").run()
    at.button(key="alarms.shelve").click().run()
    assert not at.exception, at.exception
    row = book.store.get(KEY)
    assert (row.state, row.shelved_by, row.shelve_reason) == (State.SHELVED, "olga", "sensor being replaced")
    assert abs(row.shelved_until_ns - time.time_ns() - 4 * 3600e9) < 120e9
    (entry,) = [e for e in _entries(settings) if e.action == "alarm.shelve"]
    assert entry.reason == "sensor being replaced" and entry.after["state"] == "shelved" and "until" in entry.after
    at.multiselect(key="alarms.pick").select(KEY).run()
    at.button(key="alarms.unshelve").click().run()
    assert book.store.get(KEY).state is State.UNACK  # its condition still holds
    assert [e.action for e in _entries(settings)][-1] == "alarm.unshelve"


def test_a_viewer_sees_the_alarms_but_cannot_acknowledge_even_by_calling_the_handler(site, monkeypatch) -> None:
    settings, book = site
    at = _as(monkeypatch, "vic", "staple battery horse").run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["device"]) == ["T2-oil"]
    assert not [b for b in at.button if b.key in ("alarms.ack", "alarms.shelve", "alarms.unshelve")]
    monkeypatch.setenv("ALARM_TEST_FORGE", KEY)
    forged = _as(monkeypatch, "vic", "staple battery horse").run()
    assert "Not permitted: alarm.ack" in forged.error[0].value
    assert not [m for m in forged.markdown if m.value == "acted"]
    assert book.store.get(KEY).state is State.UNACK
    assert not [e for e in _entries(settings) if e.action == "alarm.ack"]


def test_an_engineer_removes_an_alarm_from_service_with_a_reason_and_returns_it(site, monkeypatch) -> None:
    settings, book = site
    at = _as(monkeypatch, "erik", "battery staple horse correct").run()
    assert not at.exception, at.exception
    at.multiselect(key="alarms.pick").select(KEY).run()
    at.button(key="alarms.remove").click().run()
    assert "needs a reason" in at.error[0].value and book.store.get(KEY).state is State.UNACK
    at.text_input(key="alarms.service_reason").input("WO-4711: oil sensor replaced").run()
    at.button(key="alarms.remove").click().run()
    assert not at.exception, at.exception
    assert f"Removed from service: {KEY}" in at.success[0].value
    assert book.store.get(KEY).state is State.OUT_OF_SERVICE
    book.update([OIL], time.time_ns())  # the condition still holds: not annunciated again
    assert book.store.get(KEY).state is State.OUT_OF_SERVICE
    (entry,) = [e for e in _entries(settings) if e.action == "alarm.remove"]
    assert (entry.actor, entry.role, entry.reason) == ("erik", "engineer", "WO-4711: oil sensor replaced")
    at.multiselect(key="alarms.pick").select(KEY).run()
    at.button(key="alarms.return").click().run()
    assert book.store.get(KEY).state is State.UNACK  # back in service, still active: annunciated
    assert [e.action for e in _entries(settings)][-1] == "alarm.return"


def test_an_operator_cannot_remove_an_alarm_from_service_even_by_calling_the_handler(site, monkeypatch) -> None:
    settings, book = site
    at = _as(monkeypatch, "olga", "correct horse battery").run()
    assert not [b for b in at.button if b.key in ("alarms.remove", "alarms.return")]
    monkeypatch.setenv("ALARM_TEST_FORGE", KEY)
    monkeypatch.setenv("ALARM_TEST_FORGE_EVENT", "remove")
    forged = _as(monkeypatch, "olga", "correct horse battery").run()
    assert "Not permitted: alarm.service" in forged.error[0].value
    assert book.store.get(KEY).state is State.UNACK
    assert not [e for e in _entries(settings) if e.action == "alarm.remove"]


def test_a_flood_shows_a_banner_with_a_summary_by_substation(site, monkeypatch) -> None:
    settings, book = site
    burst = [
        Alarm(AlarmRule.STUCK, "PRIM" if i < 7 else "SEC1", f"F{i}", "MMXU1.A", Severity.WARNING, "stuck")
        for i in range(11)
    ]
    book.update([OIL, *burst], time.time_ns())
    at = _as(monkeypatch, "olga", "correct horse battery").run()
    assert not at.exception, at.exception
    banner = at.error[0].value
    assert "Alarm flood" in banner and "12 alarms" in banner and "PRIM: 8" in banner and "SEC1: 4" in banner


def test_with_the_stack_down_the_page_does_not_show_stale_alarms_as_live(site, monkeypatch) -> None:
    settings, book = site
    book.store.mark_evaluated(time.time_ns() - 3600 * 10**9)  # the detectors last ran an hour ago
    at = _as(monkeypatch, "olga", "correct horse battery").run()
    assert not at.exception, at.exception
    assert "not running" in at.warning[0].value and "60 s" not in at.warning[0].value
    assert any("not live" in h.value for h in at.subheader)
    # after a restart, before the first evaluation: nothing confirmed, said so
    restarted = AlarmStore(settings.anomaly.alarm_state_path)
    restarted.reconcile(time.time_ns())
    restarted.close()
    at = _as(monkeypatch, "olga", "correct horse battery").run()
    assert "have not evaluated since the stack last started" in at.warning[0].value
    assert at.dataframe[0].value["state"][0] == "Cleared, unacknowledged"


def test_an_acknowledgement_the_audit_record_refuses_is_not_performed(site, monkeypatch) -> None:
    settings, book = site
    path = Path(settings.audit.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()  # the record cannot be appended to (a directory where its file should be)
    at = _as(monkeypatch, "olga", "correct horse battery").run()
    at.multiselect(key="alarms.pick").select(KEY).run()
    at.button(key="alarms.ack").click().run()
    assert not at.exception, at.exception
    assert "not done, the audit record refused it" in at.error[0].value
    assert book.store.get(KEY).state is State.UNACK


def _pick_app() -> None:
    import os

    import streamlit as st

    from ui.views.alarms import _table_pick

    keys = os.environ["PICK_KEYS"].split(",")
    rows = [int(r) for r in os.environ["PICK_ROWS"].split(",") if r]
    st.write(",".join(_table_pick(keys, rows)))


def test_a_refresh_that_reorders_the_table_does_not_retarget_the_selected_alarm(monkeypatch) -> None:
    """Streamlit reports selected rows by position: the operator clicked row 1 (`b`); a new alarm
    arrives on top, so row 1 is now `a`. The pick stays `b` (and is dropped once `b` is gone)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PICK_KEYS", "a,b")
    monkeypatch.setenv("PICK_ROWS", "")
    at = AppTest.from_function(_pick_app, default_timeout=60).run()
    monkeypatch.setenv("PICK_ROWS", "1")  # the click, on the table as shown
    at.run()
    assert at.markdown[0].value == "b"
    monkeypatch.setenv("PICK_KEYS", "new,a,b")  # refreshed: same selected position, new table
    at.run()
    assert at.markdown[0].value == "b"
    monkeypatch.setenv("PICK_KEYS", "new,a")
    at.run()
    assert not at.markdown or at.markdown[0].value == ""
