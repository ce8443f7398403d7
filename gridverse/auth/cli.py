"""`gridverse users add|passwd|disable|enable|unlock|list`: manage console users in the users file
(`auth.users_file`). Each change is written to the audit record first (as the OS user who ran the
command); no password or hash is ever printed."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from gridverse.auth.roles import Role
from gridverse.auth.users import UserError, UserStore, check_password, normalise_name

if TYPE_CHECKING:
    from gridverse.config import Settings

#: Exit code when a change is refused (unknown or duplicate user, weak password, audit unwritable).
EXIT_REFUSED = 1


def _settings(args: argparse.Namespace) -> Settings:
    from gridverse.settings import load_settings

    return load_settings(args.config)


def _read_password(args: argparse.Namespace, name: str) -> str:
    """From stdin's first line (`--password-stdin`), else asked twice on the terminal."""
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass(f"new password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ; nothing changed")
    return first


def _audit(settings: Settings, action: str, target: str, **kw: Any) -> None:
    """Write the audit entry before the change (AuditError/ValueError: do not change)."""
    from gridverse.audit import open_audit

    open_audit(settings).append(getpass.getuser(), "cli", action, target, source=f"cli@{socket.gethostname()}", **kw)


def cmd_users_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = UserStore(settings.auth)
    name = normalise_name(args.name)
    if store.get(name) is not None:
        raise UserError(f"user {name!r} already exists in {store.path}; use `gridverse users passwd {name}`")
    password = _read_password(args, name)
    check_password(password)
    _audit(settings, "users.add", name, after={"role": args.role, "disabled": False}, reason=args.reason)
    store.add(name, args.role, password)
    print(f"user {name} added with role {args.role} to {store.path}")
    return 0


def cmd_users_passwd(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = UserStore(settings.auth)
    name = normalise_name(args.name)
    if store.get(name) is None:
        raise UserError(f"no user {name!r} in {store.path}; `gridverse users list` shows who exists")
    password = _read_password(args, name)
    check_password(password)
    # (a key naming the password would be refused by the audit record, rightly: say it in a value)
    change = {"changed": "password; failed count and lockout cleared"}
    _audit(settings, "users.passwd", name, after=change, reason=args.reason)
    store.set_password(name, password)
    print(f"password of {name} changed (failed count and lockout cleared)")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    settings = _settings(args)
    store = UserStore(settings.auth)
    name = normalise_name(args.name)
    user = store.get(name)
    if user is None:
        raise UserError(f"no user {name!r} in {store.path}; `gridverse users list` shows who exists")
    action = "users.disable" if disabled else "users.enable"
    _audit(settings, action, name, before={"disabled": user.disabled}, after={"disabled": disabled}, reason=args.reason)
    store.set_disabled(name, disabled)
    what = "disabled (their open sessions end at their next click)" if disabled else "enabled"
    print(f"user {name} {what}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_users_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def cmd_users_unlock(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = UserStore(settings.auth)
    name = normalise_name(args.name)
    info = next((u for u in store.list() if u.name == name), None)
    if info is None:
        raise UserError(f"no user {name!r} in {store.path}; `gridverse users list` shows who exists")
    before = {"locked": bool(info.locked_until), "failed": info.failed}
    _audit(settings, "users.unlock", name, before=before, after={"locked": False, "failed": 0}, reason=args.reason)
    store.unlock(name)
    print(f"user {name} unlocked (failed count cleared)")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    store = UserStore(_settings(args).auth)
    users = store.list()
    print(f"{len(users)} users in {store.path}", file=sys.stderr)
    for u in users:
        state = "disabled" if u.disabled else "enabled"
        if u.locked_until:
            state += f", locked until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(u.locked_until))}"
        elif u.failed:
            state += f", {u.failed} failed sign-ins"
        print(f"{u.name:<24} {u.role.value:<11} {state}")
    return 0


def _run(func: Any) -> Any:
    """Refusals print one line and exit EXIT_REFUSED, without a traceback."""

    def run(args: argparse.Namespace) -> int:
        from gridverse.audit import AuditError

        try:
            return int(func(args))
        except (UserError, AuditError) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED

    return run


def add_users_commands(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Wire `gridverse users …` into the main parser."""
    users = sub.add_parser("users", help="console users: add, change password, disable, list")
    users_sub = users.add_subparsers(dest="action", required=True)
    roles = [r.value for r in Role]

    def with_reason(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--reason", default="", help="why (kept in the audit record)")
        return p

    add = with_reason(users_sub.add_parser("add", help="add a user with a role"))
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=roles)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    add.set_defaults(func=_run(cmd_users_add))
    passwd = with_reason(users_sub.add_parser("passwd", help="set a new password (also clears a lockout)"))
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    passwd.set_defaults(func=_run(cmd_users_passwd))
    disable = with_reason(users_sub.add_parser("disable", help="refuse this user's sign-ins and end their sessions"))
    disable.add_argument("name")
    disable.set_defaults(func=_run(cmd_users_disable))
    enable = with_reason(users_sub.add_parser("enable", help="allow a disabled user again"))
    enable.add_argument("name")
    enable.set_defaults(func=_run(cmd_users_enable))
    unlock = with_reason(users_sub.add_parser("unlock", help="clear a lockout and the failed count"))
    unlock.add_argument("name")
    unlock.set_defaults(func=_run(cmd_users_unlock))
    users_sub.add_parser("list", help="users, roles, disabled or locked (no hashes)").set_defaults(
        func=_run(cmd_users_list)
    )
    return users
