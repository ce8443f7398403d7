"""Sign-in, session checks and sign-out in one place, each audited (no Streamlit here: the UI
calls it, the tests drive it directly)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gridverse.auth.config import AuthConfig
from gridverse.auth.roles import User
from gridverse.auth.sessions import SessionExpired, SessionStore
from gridverse.auth.users import Outcome, UserStore

if TYPE_CHECKING:
    from gridverse.config import Settings

log = logging.getLogger(__name__)

#: One message for every refused sign-in, so it tells nobody whether a user name exists.
REFUSED = "Sign-in refused: wrong user name or password, or the account is locked or disabled."


class Auditor(Protocol):
    """What the service needs of the audit record (`gridverse.audit.AuditRecord`)."""

    def append(
        self,
        actor: str,
        role: str,
        action: str,
        target: str = "",
        *,
        source: str = "",
        before: object = None,
        after: object = None,
        reason: str = "",
    ) -> object: ...


def open_auditor(settings: Settings | None) -> Auditor:
    """The audit record of `settings` (`audit.path`)."""
    from gridverse.audit import open_audit

    if settings is None:
        raise ValueError("no settings: the audit record's path (audit.path) comes from the configuration")
    return open_audit(settings)


class AuthService:
    """Users (shared file) + sessions (this process) + the audit record."""

    def __init__(self, config: AuthConfig, auditor: Auditor | None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.users = UserStore(config, clock=clock)
        self.sessions = SessionStore(config.idle_timeout_s, config.absolute_timeout_s, clock=clock)
        self.auditor = auditor
        self._audit_failing = False
        self._audit_lock = threading.Lock()
        self.audit_failures = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthService:
        return cls(settings.auth, open_auditor(settings))

    def audit(self, actor: str, role: str, action: str, target: str = "", **kw: Any) -> None:
        """Append to the audit record; a failing record is logged once (and counted), never
        raised at the user, and its recovery is logged once."""
        if self.auditor is None:
            return
        try:
            self.auditor.append(actor, role, action, target, **kw)
        except Exception as exc:
            with self._audit_lock:
                self.audit_failures += 1
                first, self._audit_failing = not self._audit_failing, True
            if first:
                log.error("audit record: cannot append %s (%s); fix the audit.path file, sign-ins go on", action, exc)
            return
        if self._audit_failing:
            self._audit_failing = False
            log.info("audit record: appending again")

    def sign_in(self, name: str, password: str, source: str = "") -> tuple[str | None, User | None]:
        """A session token and the user, or (None, None) when refused (say `REFUSED`, whatever
        the reason: the reason goes only to the audit record)."""
        given = name.strip().lower()[:64]
        result = self.users.authenticate(given, password)
        if result.outcome is Outcome.OK and result.user is not None:
            token = self.sessions.create(result.user.name, source)
            self.audit(result.user.name, result.user.role, "auth.signin", result.user.name, source=source)
            log.info("user %s signed in (%s) from %s", result.user.name, result.user.role, source or "?")
            return token, result.user
        known = self.users.get(given)
        role = known.role.value if known else ""
        reason = result.outcome.value
        if result.failed:
            reason += f", failure {result.failed} of {self.config.max_failed}"
        self.audit(given, role, "auth.signin_failed", given, source=source, reason=reason)
        log.warning("sign-in refused for %r from %s: %s", given, source or "?", result.outcome.value)
        if result.locked_now:
            reason = f"{self.config.max_failed} wrong passwords in a row; locked for {self.config.lockout_s:.0f} s"
            self.audit(given, role, "auth.lockout", given, source=source, reason=reason)
            log.warning("user %s locked out for %.0f s after %d failures", given, self.config.lockout_s, result.failed)
        return None, None

    def current(self, token: str | None, *, touch: bool = True, source: str = "") -> User | None:
        """The signed-in user of `token`, or None. An expired session, or one whose user was since
        disabled or removed, is ended (and audited) here; the role is read afresh each time, so a
        change made with `gridverse users` applies at the user's next click."""
        try:
            session = self.sessions.check(token, touch=touch)
        except SessionExpired as exc:
            user = self.users.get(exc.session.user)
            reason = f"{exc.reason} limit ({self._limit(exc.reason):.0f} s)"
            self.audit(
                exc.session.user,
                user.role.value if user else "",
                "auth.signout",
                exc.session.user,
                source=source,
                reason=f"session expired: {reason}",
            )
            raise
        if session is None:
            return None
        user = self.users.get(session.user)
        if user is None or user.disabled:
            self.sessions.end(token)
            why = "user disabled" if user else "user removed"
            self.audit(
                session.user,
                user.role.value if user else "",
                "auth.signout",
                session.user,
                source=source,
                reason=f"session ended: {why}",
            )
            return None
        return user

    def sign_out(self, token: str | None, source: str = "") -> None:
        session = self.sessions.end(token)
        if session is not None:
            user = self.users.get(session.user)
            self.audit(
                session.user,
                user.role.value if user else "",
                "auth.signout",
                session.user,
                source=source,
                reason="signed out",
            )
            log.info("user %s signed out", session.user)

    def _limit(self, reason: str) -> float:
        return self.config.absolute_timeout_s if reason == "absolute" else self.config.idle_timeout_s
