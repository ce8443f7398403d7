"""The console's role matrix with `AppTest`: every role, signed in through the form, is offered
exactly the pages its permissions allow; a signed-out session gets the sign-in form only; a
viewer calling the acknowledge or N-1 handler directly is refused on the server and nothing
changes; sign-out, idle expiry and lockout work through the form, each in the audit record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from anomaly.alarmstate import open_alarm_store
from gridverse.audit import AuditRecord
from gridverse.auth.roles import Permission, Role
from gridverse.auth.users import UserStore
from gridverse.schema import Alarm, AlarmRule, Severity
from gridverse.settings import REPO_ROOT, load_settings
from tests.helpers import config_dir
from ui import signin
from ui.views import PAGES

APP = REPO_ROOT / "ui" / "app.py"
PASSWORD = "a test password, not a default"
P = Permission
#: What each role may see, written out here (not read from ROLE_PERMISSIONS): widening a role
#: there must fail this test.
SEES: dict[Role, set[Permission]] = {
    Role.VIEWER: {P.GRID_VIEW, P.INSPECT_VIEW, P.ANOMALY_VIEW},
    Role.OPERATOR: {P.GRID_VIEW, P.INSPECT_VIEW, P.ANOMALY_VIEW},
    Role.ENGINEER: {P.GRID_VIEW, P.INSPECT_VIEW, P.ANOMALY_VIEW},
    Role.TECHNICIAN: {P.GRID_VIEW, P.INSPECT_VIEW},
    Role.ANALYST: {P.GRID_VIEW, P.ANOMALY_VIEW},
    Role.SECADM: {P.AUDIT_VIEW, P.USERS_MANAGE},
    Role.SECAUD: {P.AUDIT_VIEW},
}
OIL = Alarm(AlarmRule.LIMIT, "PRIM", "T2-oil", "YPTR1.TmpOil", Severity.CRITICAL, "YPTR1.TmpOil = 151.0 above 95")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo configuration with one user per role (named after it) and one unacknowledged alarm."""
    tmp = tmp_path_factory.mktemp("roles")
    fast = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}

    def mutate(doc: dict) -> None:
        doc["auth"] = {"users_file": str(tmp / "users.yaml"), **fast}
        doc.setdefault("anomaly", {}).update(alarm_state_path=str(tmp / "alarms.db"), models_dir=str(tmp / "models"))

    path = config_dir(tmp, mutate)
    settings = load_settings(path)
    store = UserStore(settings.auth)
    for role in Role:
        store.add(role.value, role, PASSWORD)
    alarms = open_alarm_store(settings)
    alarms.raise_alarm(OIL, time.time_ns())
    alarms.close()
    st.cache_resource.clear()  # the UI caches settings and the sign-in service per process
    yield path
    st.cache_resource.clear()


@pytest.fixture
def env(config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(config))
    return config


def _audit(config: Path) -> list[tuple[str, str, str]]:
    record = AuditRecord(load_settings(config).audit.path)
    return [(e.action, e.actor, e.reason) for e in record.entries()]


def _sign_in(name: str, password: str = PASSWORD) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception and at.title[0].value == "gridverse — sign in"
    at.text_input(key="signin.user").input(name)
    at.text_input(key="signin.password").input(password)
    return at.button(key="FormSubmitter:signin-Sign in").click().run()


def _listed(at: AppTest) -> set[str]:
    """The URL paths the navigation registered (AppTest keeps them in its page registry)."""
    return {info.get("url_pathname", "") for info in at._registered_pages.values()} - {"", "start", "signin"}


@pytest.fixture
def light_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages draw only their title: these tests are about navigation and sessions (each page has
    its own tests in test_ui_pages.py)."""
    monkeypatch.setattr("ui.views.PageSpec.render", lambda self: st.title(self.title))


@pytest.mark.parametrize("role", list(Role))
def test_each_role_is_offered_exactly_its_pages(env: Path, role: Role, light_pages: None) -> None:
    at = _sign_in(role.value)
    assert not at.exception, at.exception
    expected = {p.url_path for p in PAGES if p.permission in SEES[role]} or {"nothing"}
    assert _listed(at) == expected
    first = next((p.title for p in PAGES if p.url_path in expected), "Nothing to show")
    assert at.title[0].value == first, "signing in opens the first permitted page"
    assert at.sidebar.markdown[0].value == f"Signed in as **{role.value}** ({role.value})"
    assert at.sidebar.button(key="signin.signout").label == "Sign out"


def test_signed_out_there_is_only_the_sign_in_form(env: Path) -> None:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert at.title[0].value == "gridverse — sign in"
    assert not at.metric and not at.dataframe and not at.sidebar.markdown
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert len(at.button) == 1, "one button: Sign in"


def test_an_unknown_user_and_a_wrong_password_get_the_same_message(env: Path) -> None:
    unknown, wrong = _sign_in("nobody"), _sign_in("analyst", "not the password")
    assert [e.value for e in unknown.error] == [e.value for e in wrong.error] == [signin.REFUSED]
    assert unknown.title[0].value == wrong.title[0].value == "gridverse — sign in"


def test_five_wrong_passwords_in_the_form_lock_the_account(env: Path) -> None:
    for _ in range(5):
        assert _sign_in("technician", "not the password").error[0].value == signin.REFUSED
    locked = _sign_in("technician")
    assert locked.error[0].value == signin.REFUSED and locked.title[0].value == "gridverse — sign in"
    assert ("auth.lockout", "technician") in {(a, who) for a, who, _ in _audit(env)}
    UserStore(load_settings(env).auth).set_password("technician", PASSWORD)  # what a secadm does to unlock


def _ack(key: str) -> None:
    from anomaly.alarmstates import Event
    from ui.views import alarms

    alarms._act(Event.ACK, [key])


def _run_n1() -> None:
    from ui.views import twin

    twin.run_n1_action()


def _as(user: str, script: object, *args: object) -> AppTest:
    at = AppTest.from_function(script, args=args, default_timeout=120)  # type: ignore[arg-type]
    at.session_state[signin.TOKEN_KEY] = signin.start_session(user)
    return at.run()


def test_a_viewer_calling_the_acknowledge_handler_is_refused_and_nothing_changes(env: Path) -> None:
    store = open_alarm_store(load_settings(env))
    key = store.rows()[0].key_text
    before = len(_audit(env))
    refused = _as("viewer", _ack, key)
    assert not refused.exception
    assert refused.error[0].value.startswith("Not permitted: alarm.ack needs the role operator or engineer")
    assert str(store.get(key).state) == "unack", "still unacknowledged"  # type: ignore[union-attr]
    assert not [a for a, *_ in _audit(env)[before:] if a == "alarm.ack"]
    done = _as("operator", _ack, key)  # the same call by an operator does it: the refusal above is the role's
    assert not done.exception and not done.error
    assert str(store.get(key).state) == "ack"  # type: ignore[union-attr]
    assert ("alarm.ack", "operator") in {(a, who) for a, who, _ in _audit(env)[before:]}
    store.close()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANALYST, Role.SECAUD])
def test_roles_without_twin_n1_cannot_run_it_by_calling_the_handler(env: Path, role: Role) -> None:
    before = len(_audit(env))
    at = _as(role.value, _run_n1)
    assert at.error and at.error[0].value.startswith("Not permitted: twin.n1")
    assert not at.get("progress"), "the study never started"
    assert not [a for a, *_ in _audit(env)[before:] if a == "twin.n1"]


def test_nobody_signed_in_is_refused_by_every_handler(env: Path) -> None:
    at = AppTest.from_function(_run_n1, default_timeout=120).run()
    assert [w.value for w in at.warning] == ["Sign in first: this needs a signed-in user."]
    assert not at.get("progress")


def test_sign_out_ends_the_session(env: Path, light_pages: None) -> None:
    at = _sign_in("analyst")
    token = at.session_state[signin.TOKEN_KEY]
    at.sidebar.button(key="signin.signout").click().run()
    assert at.title[0].value == "gridverse — sign in"
    assert signin.service().sessions.check(token) is None, "the token is void, not merely forgotten"
    assert ("auth.signout", "analyst", "signed out") in _audit(env)


def test_an_idle_session_is_refused_at_the_next_click(
    env: Path, monkeypatch: pytest.MonkeyPatch, light_pages: None
) -> None:
    at = _sign_in("engineer")
    assert at.title[0].value != "gridverse — sign in"
    sessions = signin.service().sessions
    later = time.time() + signin.service().config.idle_timeout_s + 1
    monkeypatch.setattr(sessions, "clock", lambda: later)
    at.run()
    assert at.title[0].value == "gridverse — sign in"
    assert at.info[0].value == "Your session ended after 15 min without use; sign in again."
    assert ("auth.signout", "engineer", "session expired: idle limit (900 s)") in _audit(env)


def _deploy(ref: str) -> None:
    from ui.views import analyst

    analyst.deploy(ref, reason="role test")


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ENGINEER])
def test_only_an_analyst_gets_past_the_deploy_handlers_check(env: Path, role: Role) -> None:
    models = load_settings(env).anomaly.models_dir
    listing = sorted(models.rglob("*")) if models.exists() else None
    before = len(_audit(env))
    refused = _as(role.value, _deploy, "no-such-model")
    assert refused.error[0].value.startswith("Not permitted: anomaly.deploy needs the role analyst")
    assert not refused.exception
    assert (sorted(models.rglob("*")) if models.exists() else None) == listing, "nothing in the registry changed"
    assert not [a for a, *_ in _audit(env)[before:] if a == "model.deploy"]
    if role is Role.VIEWER:  # the same call by an analyst reaches the registry (which knows no such model)
        reached = _as("analyst", _deploy, "no-such-model")
        assert not reached.error and reached.exception and "no-such-model" in reached.exception[0].message


def _users_act(action: str, name: str) -> None:
    from ui.views import users

    users._act(action, name)


def _users_page() -> None:
    from ui.views import users

    users.page()


def test_the_users_page_lists_users_without_hashes(env: Path) -> None:
    at = _as("secadm", _users_page)
    assert not at.exception and at.title[0].value == "Users"
    table = at.dataframe[0].value
    assert set(table.user) == {r.value for r in Role} and list(table.columns) == [
        "user",
        "role",
        "state",
        "failed sign-ins",
    ]
    assert "$argon2" not in table.to_csv() and [b.label for b in at.button] == ["Disable", "Unlock"]


def test_only_a_security_administrator_manages_users_and_each_change_is_audited(env: Path) -> None:
    store = UserStore(load_settings(env).auth)
    before = len(_audit(env))
    for role in (Role.SECAUD, Role.ENGINEER):
        refused = _as(role.value, _users_act, "disable", "viewer")
        assert refused.error[0].value.startswith("Not permitted: users.manage needs the role secadm")
    assert not store.get("viewer").disabled  # type: ignore[union-attr]
    _as("secadm", _users_act, "disable", "secadm")
    assert not store.get("secadm").disabled, "a security administrator cannot lock themself out"  # type: ignore[union-attr]
    _as("secadm", _users_act, "disable", "viewer")
    assert store.get("viewer").disabled  # type: ignore[union-attr]
    _as("secadm", _users_act, "enable", "viewer")
    assert not store.get("viewer").disabled  # type: ignore[union-attr]
    entries = [(a, who) for a, who, _ in _audit(env)[before:]]
    assert entries == [("users.disable", "secadm"), ("users.enable", "secadm")]
