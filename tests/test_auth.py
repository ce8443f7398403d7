"""Sign-in security without a browser: Argon2id hashes only (never a password or hash in a log,
file or listing), lockout after five wrong passwords that survives a restart and runs out,
disabled users refused, idle and absolute session limits, the `gridverse users` command with its
audit entries, the demo's users, and failure counts kept exactly by concurrent processes."""

from __future__ import annotations

import io
import logging
import multiprocessing
import stat
from pathlib import Path

import pytest
import yaml

from gridverse.audit import AuditRecord
from gridverse.auth.config import AuthConfig
from gridverse.auth.demo_users import DEMO_ROLES, ensure_demo_users
from gridverse.auth.roles import ROLE_PERMISSIONS, Permission, Role
from gridverse.auth.service import AuthService
from gridverse.auth.sessions import SessionExpired, SessionStore
from gridverse.auth.users import Outcome, UserError, UserStore
from gridverse.cli import main
from gridverse.settings import load_settings
from tests.helpers import config_dir

PASSWORD = "correct horse battery staple"
FAST = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def _config(tmp_path: Path, **kw: object) -> AuthConfig:
    return AuthConfig(users_file=tmp_path / "users.yaml", **{**FAST, **kw})  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> AuthService:
    audit = AuditRecord(tmp_path / "audit.jsonl", tmp_path / "audit.key")
    svc = AuthService(_config(tmp_path), audit, clock=clock)
    svc.users.add("olga", Role.OPERATOR, PASSWORD)
    return svc


def _actions(service: AuthService) -> list[tuple[str, str, str]]:
    assert service.auditor is not None
    return [(e.action, e.actor, e.reason) for e in service.auditor.entries()]  # type: ignore[attr-defined]


def test_the_role_matrix_denies_by_default() -> None:
    """IEC 62351-8 after the issue: what a viewer may not do, and who alone may do what."""
    P = Permission
    viewer = ROLE_PERMISSIONS[Role.VIEWER]
    assert viewer == {P.GRID_VIEW, P.INSPECT_VIEW, P.ANOMALY_VIEW}
    assert not viewer & {P.ALARM_ACK, P.ALARM_SHELVE, P.DEVICE_WRITE, P.ANOMALY_DEPLOY, P.USERS_MANAGE}
    holders = {p: {r for r in Role if p in ROLE_PERMISSIONS[r]} for p in Permission}
    assert holders[P.DEVICE_WRITE] == {Role.ENGINEER}
    assert holders[P.ALARM_ACK] == {Role.OPERATOR, Role.ENGINEER}
    assert holders[P.ANOMALY_DEPLOY] == {Role.ANALYST}
    assert holders[P.USERS_MANAGE] == {Role.SECADM}
    assert holders[P.AUDIT_VIEW] == {Role.SECADM, Role.SECAUD}
    assert holders[P.INSPECT_RECORD] == {Role.TECHNICIAN}


def test_only_an_argon2id_hash_is_stored_and_neither_password_nor_hash_is_logged(
    service: AuthService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "users.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "only its owner reads the users file"
    stored = yaml.safe_load(path.read_text())["users"]["olga"]["hash"]
    assert stored.startswith("$argon2id$") and PASSWORD not in path.read_text()
    assert service.sign_in("olga", "wrong password here", "10.0.0.7") == (None, None)
    token, user = service.sign_in("olga", PASSWORD, "10.0.0.7")
    assert token and user is not None and user.role is Role.OPERATOR
    service.sign_out(token)
    assert caplog.records, "sign-ins are logged"
    audit = (tmp_path / "audit.jsonl").read_text()
    for text in (caplog.text, audit):
        assert PASSWORD not in text and "wrong password here" not in text and "$argon2" not in text
    assert [a for a, _, _ in _actions(service)] == ["auth.signin_failed", "auth.signin", "auth.signout"]


def test_five_wrong_passwords_lock_the_account_until_the_lockout_runs_out(service: AuthService, clock: Clock) -> None:
    for _ in range(4):
        assert service.sign_in("olga", "not the password", "x")[0] is None
    assert service.sign_in("olga", PASSWORD, "x")[0], "four failures do not lock; success clears the count"
    for _ in range(5):
        assert service.sign_in("olga", "not the password", "x")[0] is None
    assert service.sign_in("olga", PASSWORD, "x")[0] is None, "locked: even the right password is refused"
    restarted = UserStore(service.config, clock=clock)  # another process, or after a restart
    assert restarted.authenticate("olga", PASSWORD).outcome is Outcome.LOCKED
    assert restarted.list()[0].locked_until == clock.t + service.config.lockout_s
    actions = [a for a, _, _ in _actions(service)]
    assert actions.count("auth.lockout") == 1 and actions[-1] == "auth.signin_failed"
    assert _actions(service)[-1][2].startswith("account locked")
    clock.t += service.config.lockout_s - 1
    assert service.sign_in("olga", PASSWORD, "x")[0] is None, "still locked a second before the end"
    clock.t += 1
    assert service.sign_in("olga", PASSWORD, "x")[0], "the lockout ran out"
    assert service.sign_in("olga", "not the password", "x")[0] is None
    assert service.users.list()[0].failed == 1, "a lockout that ran out starts a new count"


def test_an_unknown_user_is_refused_like_a_wrong_password(service: AuthService) -> None:
    assert service.sign_in("nobody", PASSWORD, "x") == (None, None)
    assert service.sign_in("olga", "wrong wrong wrong", "x") == (None, None)
    assert [u.name for u in service.users.list()] == ["olga"], "an unknown name adds nothing to the users file"
    reasons = [r for a, _, r in _actions(service) if a == "auth.signin_failed"]
    assert reasons == ["unknown user", "wrong password, failure 1 of 5"], "only the audit record tells them apart"


def test_a_disabled_user_is_refused_and_their_open_session_ends(service: AuthService) -> None:
    token, _ = service.sign_in("olga", PASSWORD, "x")
    assert service.current(token) is not None
    service.users.set_disabled("olga")
    assert service.current(token) is None, "the open session ends at the next check"
    assert service.current(token) is None
    assert service.sign_in("olga", PASSWORD, "x") == (None, None)
    assert _actions(service)[-1][0] == "auth.signin_failed" and "disabled" in _actions(service)[-1][2]
    assert ("auth.signout", "olga", "session ended: user disabled") in _actions(service)


def test_a_session_past_its_idle_limit_is_refused(service: AuthService, clock: Clock) -> None:
    token, _ = service.sign_in("olga", PASSWORD, "x")
    idle = service.config.idle_timeout_s
    clock.t += idle - 1
    assert service.current(token) is not None, "used just in time: the idle clock restarts"
    clock.t += idle - 1
    assert service.current(token, touch=False) is not None, "a live panel's refresh (no touch) ..."
    clock.t += 1
    with pytest.raises(SessionExpired) as expired:
        service.current(token)  # "... does not keep an unattended console signed in"
    assert expired.value.reason == "idle"
    assert service.current(token) is None, "and the session is gone"
    assert _actions(service)[-1][0] == "auth.signout" and "idle" in _actions(service)[-1][2]


def test_a_session_ends_at_its_absolute_limit_however_busy(clock: Clock) -> None:
    sessions = SessionStore(idle_timeout_s=900, absolute_timeout_s=8 * 3600, clock=clock)
    token = sessions.create("olga")
    for _ in range(8 * 3600 // 600 - 1):
        clock.t += 600
        assert sessions.check(token) is not None
    clock.t += 600
    with pytest.raises(SessionExpired) as expired:
        sessions.check(token)
    assert expired.value.reason == "absolute"
    assert sessions.check("a token nobody was given") is None and sessions.check(None) is None


def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(tmp_path: Path) -> None:
    old = UserStore(_config(tmp_path))
    old.add("olga", Role.VIEWER, PASSWORD)
    stronger = UserStore(_config(tmp_path, argon2_time_cost=2))
    assert "t=1" in yaml.safe_load(stronger.path.read_text())["users"]["olga"]["hash"]
    assert stronger.authenticate("olga", PASSWORD).outcome is Outcome.OK
    assert ",t=2," in yaml.safe_load(stronger.path.read_text())["users"]["olga"]["hash"]
    assert stronger.authenticate("olga", PASSWORD).outcome is Outcome.OK


def test_a_weak_password_or_bad_name_is_refused(tmp_path: Path) -> None:
    store = UserStore(_config(tmp_path))
    with pytest.raises(UserError, match="at least 12"):
        store.add("olga", Role.VIEWER, "short")
    with pytest.raises(UserError, match="user name"):
        store.add("olga smith", Role.VIEWER, PASSWORD)
    store.add("Olga", Role.VIEWER, PASSWORD)
    with pytest.raises(UserError, match="already exists"):
        store.add("olga", Role.OPERATOR, PASSWORD)


def _fail(path: str, times: int) -> None:
    store = UserStore(AuthConfig(users_file=Path(path), max_failed=1000, **FAST))  # type: ignore[arg-type]
    for _ in range(times):
        assert store.authenticate("olga", "wrong password!!").outcome is Outcome.BAD_PASSWORD


def test_concurrent_processes_lose_no_failed_attempt(tmp_path: Path) -> None:
    UserStore(_config(tmp_path)).add("olga", Role.OPERATOR, PASSWORD)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fail, args=(str(tmp_path / "users.yaml"), 15)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert UserStore(_config(tmp_path)).list()[0].failed == 60


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return config_dir(tmp_path, lambda doc: doc.update(auth={"users_file": str(tmp_path / "users.yaml"), **FAST}))


def _cli(config: Path, monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["--config", str(config), "users", *argv])


def test_users_command_round_trip_is_audited_and_prints_no_hash(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(config)
    add = ["add", "olga", "--role", "operator", "--password-stdin"]
    assert _cli(config, monkeypatch, *add, stdin=PASSWORD + "\n") == 0
    assert _cli(config, monkeypatch, "add", "olga", "--role", "viewer", "--password-stdin", stdin=PASSWORD) == 1
    assert "already exists" in capsys.readouterr().err
    prompts = iter(["a second password", "a second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(prompts))
    assert _cli(config, monkeypatch, "passwd", "olga", "--reason", "forgotten") == 0
    mismatch = iter(["one new password", "another password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(mismatch))
    assert _cli(config, monkeypatch, "passwd", "olga") == 1
    assert "differ" in capsys.readouterr().err
    store = UserStore(settings.auth)
    assert store.authenticate("olga", PASSWORD).outcome is Outcome.BAD_PASSWORD
    assert store.authenticate("olga", "a second password").outcome is Outcome.OK
    assert _cli(config, monkeypatch, "list") == 0
    listing = capsys.readouterr().out
    assert listing.split() == ["olga", "operator", "enabled"] and "$argon2" not in listing
    for _ in range(5):
        store.authenticate("olga", "not the password")
    assert store.authenticate("olga", "a second password").outcome is Outcome.LOCKED
    assert _cli(config, monkeypatch, "unlock", "olga") == 0
    assert store.authenticate("olga", "a second password").outcome is Outcome.OK
    assert _cli(config, monkeypatch, "disable", "olga", "--reason", "left the company") == 0
    assert store.authenticate("olga", "a second password").outcome is Outcome.DISABLED
    assert _cli(config, monkeypatch, "disable", "nobody") == 1
    entries = AuditRecord(settings.audit.path).entries()
    assert [(e.action, e.target, e.reason) for e in entries] == [
        ("users.add", "olga", ""),
        ("users.passwd", "olga", "forgotten"),
        ("users.unlock", "olga", ""),
        ("users.disable", "olga", "left the company"),
    ]
    assert entries[0].after == {"role": "operator", "disabled": False}
    assert entries[2].before == {"locked": True, "failed": 5}
    assert entries[3].before == {"disabled": False} and entries[3].after == {"disabled": True}
    assert "$argon2" not in Path(settings.audit.path).read_text()


def test_the_demo_creates_one_user_per_role_once_with_no_fixed_password(config: Path) -> None:
    settings = load_settings(config)
    env = {"GRIDVERSE_OPERATOR_PASSWORD": "operator password from env"}
    created = ensure_demo_users(settings, env)
    assert list(created) == [r.value for r in DEMO_ROLES] and len(DEMO_ROLES) == len(Role)
    assert created["operator"] is None, "taken from the environment, so not printed"
    printed = [p for p in created.values() if p is not None]
    assert len(set(printed)) == len(printed) == 6 and all(len(p) >= 16 for p in printed)
    store = UserStore(settings.auth)
    assert store.authenticate("operator", "operator password from env").outcome is Outcome.OK
    assert store.authenticate("secaud", created["secaud"] or "").outcome is Outcome.OK
    assert store.get("secaud").role is Role.SECAUD  # type: ignore[union-attr]
    assert ensure_demo_users(settings, env) == {}, "an existing users file is left alone: passwords shown once"
    again = ensure_demo_users(load_settings(config_dir(config.parents[1] / "other")), {})
    assert set(again.values()).isdisjoint(printed), "random each time, never a default"


def test_a_weak_demo_password_from_the_environment_is_refused_by_name(tmp_path: Path) -> None:
    settings = load_settings(config_dir(tmp_path, lambda d: d.update(auth={"users_file": str(tmp_path / "u.yaml")})))
    with pytest.raises(UserError, match="GRIDVERSE_ENGINEER_PASSWORD: password too short"):
        ensure_demo_users(settings, {"GRIDVERSE_ENGINEER_PASSWORD": "abc"})
    assert not (tmp_path / "u.yaml").exists(), "nothing half-made"


def test_gridverse_demo_prints_its_users_once_before_starting(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gridverse demo` (with its UI) creates the users and prints each password once; the stack
    itself is replaced here (the end-to-end test runs it)."""

    async def no_stack(make: object, **kw: object) -> dict:
        return {}

    monkeypatch.setattr("gridverse.stack.run_stack", no_stack)
    monkeypatch.setattr("gridverse.demo.DemoStack", lambda *a, **k: None)
    monkeypatch.setenv("GRIDVERSE_SECAUD_PASSWORD", "auditor password from env")
    assert main(["--config", str(config), "demo"]) == 0
    out = capsys.readouterr().out
    store = UserStore(load_settings(config).auth)
    printed = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in {r.value for r in Role}:
            printed[words[0]] = words[1]
    assert set(printed) == {r.value for r in Role} - {"secaud"}
    assert "auditor password from env" not in out and "(from GRIDVERSE_SECAUD_PASSWORD)" in out
    assert store.authenticate("operator", printed["operator"]).outcome is Outcome.OK
    assert main(["--config", str(config), "demo"]) == 0
    again = capsys.readouterr().out
    assert printed["operator"] not in again and "Sign in with a user from" in again, "shown once"
