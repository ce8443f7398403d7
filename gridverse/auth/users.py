"""Users, their roles and Argon2id password hashes in one YAML file, plus each user's failed
sign-in count and lockout, so both survive restarts and are shared by every process (the UI, the
`gridverse users` command): each change takes an exclusive file lock, re-reads the file, and
replaces it atomically (written 0600).

Hashing uses argon2-cffi's `PasswordHasher` directly (rather than pwdlib, which wraps the same
library for several algorithms): one algorithm is all we need, and it gives `check_needs_rehash`
for upgrading stored hashes when the configured parameters change.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gridverse.auth.config import AuthConfig
from gridverse.auth.roles import Role, User

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


class UserError(ValueError):
    """A refused users-file change (unknown or duplicate user, bad name, weak password)."""


class Outcome(enum.StrEnum):
    OK = "ok"
    UNKNOWN = "unknown user"
    BAD_PASSWORD = "wrong password"
    LOCKED = "account locked"
    DISABLED = "account disabled"


@dataclass(frozen=True)
class SignInResult:
    """What a sign-in attempt gave. `locked_now` is true on the failure that locked the account."""

    outcome: Outcome
    user: User | None = None
    locked_now: bool = False
    failed: int = 0


@dataclass(frozen=True)
class UserInfo:
    """A user as `gridverse users list` shows it (no hash)."""

    name: str
    role: Role
    disabled: bool
    failed: int
    locked_until: float  # unix seconds; 0 when not locked


def normalise_name(name: str) -> str:
    return name.strip().lower()


def check_password(password: str) -> None:
    """Refuse a password too short or too long (NIST SP 800-63B: length, not composition rules)."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: give at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password too long: give at most {MAX_PASSWORD} characters")


def hasher_for(config: AuthConfig) -> PasswordHasher:
    return PasswordHasher(
        time_cost=config.argon2_time_cost,
        memory_cost=config.argon2_memory_kib,
        parallelism=config.argon2_parallelism,
    )


class UserStore:
    """The users file. Every method re-reads it (cheaply: parsed once per change of the file)."""

    def __init__(self, config: AuthConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(config.users_file)
        self.max_failed = config.max_failed
        self.lockout_s = config.lockout_s
        self.hasher = hasher_for(config)
        self.clock = clock
        self._cache: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None
        self._dummy_hash: str | None = None

    # --- file access -------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.is_file()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock across processes (a sidecar file: the users file itself is replaced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == key:
            return {k: dict(v) for k, v in self._cache[1].items()}
        try:
            doc = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            problem = f"{self.path}: not a users file ({exc.__class__.__name__}); restore it from a backup"
            raise UserError(problem) from None
        users = doc.get("users") or {}
        if not isinstance(users, dict):
            raise UserError(f"{self.path}: key 'users' must be a mapping of user name to entry")
        self._cache = (key, users)
        return {k: dict(v) for k, v in users.items()}

    def _write(self, users: dict[str, dict[str, Any]]) -> None:
        """Atomically replace the file (temporary file 0600 in the same folder, fsync, rename)."""
        text = "# gridverse users: managed by `gridverse users`; hashes are Argon2id, never passwords\n"
        text += yaml.safe_dump({"users": users}, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".users-", dir=self.path.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._cache = None

    # --- reading -----------------------------------------------------------------------------

    def get(self, name: str) -> User | None:
        """The user, or None when unknown (the file is read again only when it changed)."""
        entry = self._read().get(normalise_name(name))
        if entry is None:
            return None
        return User(normalise_name(name), Role(entry["role"]), bool(entry.get("disabled", False)))

    def list(self) -> list[UserInfo]:
        now = self.clock()
        out = []
        for name, e in sorted(self._read().items()):
            until = float(e.get("locked_until", 0) or 0)
            locked = until if until > now else 0
            out.append(UserInfo(name, Role(e["role"]), bool(e.get("disabled")), int(e.get("failed", 0)), locked))
        return out

    # --- changes -----------------------------------------------------------------------------

    def add(self, name: str, role: Role | str, password: str) -> User:
        name = normalise_name(name)
        if not NAME_RE.match(name):
            raise UserError(
                f"user name {name!r} refused: use 1-64 lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        try:
            role = Role(role)
        except ValueError:
            raise UserError(f"unknown role {role!r}: give one of {', '.join(r.value for r in Role)}") from None
        check_password(password)
        hashed = self.hasher.hash(password)
        with self._locked():
            users = self._read()
            if name in users:
                raise UserError(f"user {name!r} already exists in {self.path}; use `gridverse users passwd {name}`")
            now = self.clock()
            users[name] = {"role": role.value, "hash": hashed, "disabled": False, "failed": 0, "locked_until": 0}
            users[name]["created"] = users[name]["changed"] = _iso(now)
            self._write(users)
        return User(name, role)

    def _change(self, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        name = normalise_name(name)
        with self._locked():
            users = self._read()
            if name not in users:
                raise UserError(f"no user {name!r} in {self.path}; `gridverse users list` shows who exists")
            before = dict(users[name])
            change(users[name])
            users[name]["changed"] = _iso(self.clock())
            self._write(users)
        return before

    def set_password(self, name: str, password: str) -> None:
        """A new password; it also clears the failed count and any lockout."""
        check_password(password)
        hashed = self.hasher.hash(password)
        self._change(name, lambda e: e.update(hash=hashed, failed=0, locked_until=0))

    def set_disabled(self, name: str, disabled: bool = True) -> bool:
        """Disable (or enable) a user; returns the previous state."""
        return bool(self._change(name, lambda e: e.update(disabled=disabled)).get("disabled", False))

    def unlock(self, name: str) -> int:
        """Clear the failed count and any lockout; returns the failed count it had."""
        return int(self._change(name, lambda e: e.update(failed=0, locked_until=0)).get("failed", 0))

    def set_role(self, name: str, role: Role | str) -> Role:
        """Change a user's role; returns the previous one."""
        role = Role(role)
        return Role(self._change(name, lambda e: e.update(role=role.value))["role"])

    # --- sign-in -----------------------------------------------------------------------------

    def _verify(self, hashed: str | None, password: str) -> bool:
        if hashed is None:  # unknown user: spend the same time as a real check, so timing tells nothing
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash("not a password of anyone")
            hashed = self._dummy_hash
        try:
            return self.hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def authenticate(self, name: str, password: str) -> SignInResult:
        """Check a password. Failures are counted in the file (shared by every process); the
        `max_failed`-th failure in a row locks the account for `lockout_s`, during which even the
        right password is refused. Success clears the count and rehashes an outdated hash."""
        name = normalise_name(name)
        entry = self._read().get(name)
        now = self.clock()
        if entry is None or entry.get("disabled") or float(entry.get("locked_until", 0) or 0) > now:
            self._verify(None, password)  # same cost for every refusal
            if entry is None:
                return SignInResult(Outcome.UNKNOWN)
            if entry.get("disabled"):
                return SignInResult(Outcome.DISABLED)
            return SignInResult(Outcome.LOCKED, failed=int(entry.get("failed", 0)))
        ok = self._verify(str(entry.get("hash", "")), password)
        with self._locked():
            users = self._read()  # re-read: another process may have counted a failure meanwhile
            current = users.get(name)
            if current is None:
                return SignInResult(Outcome.UNKNOWN)
            if current.get("disabled"):
                return SignInResult(Outcome.DISABLED)
            locked_until = float(current.get("locked_until", 0) or 0)
            if locked_until > now:
                return SignInResult(Outcome.LOCKED, failed=int(current.get("failed", 0)))
            failed = 0 if locked_until else int(current.get("failed", 0))  # a lockout that ran out starts afresh
            if ok and current.get("hash") != entry.get("hash"):
                ok = self._verify(str(current.get("hash", "")), password)  # the password changed meanwhile
            if ok:
                if self.hasher.check_needs_rehash(str(current["hash"])):
                    current["hash"] = self.hasher.hash(password)
                    log.info("password hash of user %s upgraded to the configured Argon2id parameters", name)
                current.update(failed=0, locked_until=0, last_signin=_iso(now))
                self._write(users)
                return SignInResult(Outcome.OK, User(name, Role(current["role"])))
            failed += 1
            locked_now = failed >= self.max_failed
            current.update(failed=failed, locked_until=now + self.lockout_s if locked_now else 0)
            self._write(users)
        return SignInResult(Outcome.BAD_PASSWORD, locked_now=locked_now, failed=failed)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
