"""The demo's users: one per role, created when the users file does not exist yet, each with a
random password printed once (or the one in `GRIDVERSE_<ROLE>_PASSWORD`, e.g.
`GRIDVERSE_OPERATOR_PASSWORD`, for tests and browser tests). Never a fixed default password."""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gridverse.auth.roles import Role
from gridverse.auth.users import UserError, UserStore, check_password

if TYPE_CHECKING:
    from gridverse.config import Settings

#: The demo's users, named after their roles.
DEMO_ROLES: tuple[Role, ...] = (
    Role.OPERATOR,
    Role.ENGINEER,
    Role.TECHNICIAN,
    Role.ANALYST,
    Role.VIEWER,
    Role.SECADM,
    Role.SECAUD,
)


def password_variable(role: Role) -> str:
    return f"GRIDVERSE_{role.value.upper()}_PASSWORD"


def ensure_demo_users(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Create the demo users unless the users file exists; returns {user: password} for the
    passwords it made up (to print once) and {user: None} for those taken from the environment.
    Empty when the file already existed (its users are kept as they are)."""
    environ = os.environ if environ is None else environ
    store = UserStore(settings.auth)
    if store.exists():
        return {}
    chosen: dict[str, str] = {}
    for role in DEMO_ROLES:
        given = environ.get(password_variable(role))
        if given:
            try:
                check_password(given)
            except UserError as exc:
                raise UserError(f"{password_variable(role)}: {exc}") from None
        chosen[role.value] = given or secrets.token_urlsafe(12)  # 16 characters, 96 random bits
    from gridverse.audit import open_audit

    audit = open_audit(settings)
    created: dict[str, str | None] = {}
    for role in DEMO_ROLES:
        name = role.value
        audit.append(
            getpass.getuser(), "cli", "users.add", name, source="gridverse demo", after={"role": name},
            reason="demo users (the users file did not exist)",
        )  # fmt: skip
        store.add(name, role, chosen[name])
        created[name] = None if environ.get(password_variable(role)) else chosen[name]
    return created


def announce_demo_users(settings: Settings) -> None:
    """What `gridverse demo` calls before starting the UI: create the users when needed and print
    their passwords once. A refused `GRIDVERSE_<ROLE>_PASSWORD` is a configuration error."""
    from gridverse.settings import ConfigError

    try:
        created = ensure_demo_users(settings)
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    text = banner(created, settings.auth.users_file)
    print(text or f"Sign in with a user from {settings.auth.users_file} (`gridverse users list`).", flush=True)


def banner(created: Mapping[str, str | None], users_file: object) -> str:
    """The lines the demo prints once: who to sign in as, with which password."""
    if not created:
        return ""
    lines = [f"Demo users created in {users_file} (shown once; `gridverse users passwd NAME` changes one):"]
    for name, password in created.items():
        shown = password if password is not None else f"(from {password_variable(Role(name))})"
        lines.append(f"  {name:<11} {shown}")
    return "\n".join(lines)
