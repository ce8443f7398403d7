"""Server-side sessions: a random token (from `secrets`) maps to who signed in and when; a session
ends after `idle_timeout_s` without use or `absolute_timeout_s` after sign-in, whichever comes
first. The UI keeps the token only in Streamlit's server-side `session_state`, never in a URL or a
cookie; the table holds only the token's SHA-256, so a memory dump gives no usable token."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Session:
    user: str
    created: float
    last_seen: float
    source: str = ""


class SessionExpired(Exception):
    """A session that existed but ran out (`reason`: "idle" or "absolute")."""

    def __init__(self, session: Session, reason: str) -> None:
        super().__init__(f"session of {session.user} expired ({reason} limit)")
        self.session = session
        self.reason = reason


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """The session table of one UI process (thread-safe: Streamlit runs each browser session in
    its own thread). Restarting the UI ends every session."""

    def __init__(
        self, idle_timeout_s: float, absolute_timeout_s: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.absolute_timeout_s = absolute_timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def create(self, user: str, source: str = "") -> str:
        """A new session for `user`; returns its token (256 random bits)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._purge(now)
            self._sessions[_digest(token)] = Session(user, now, now, source)
        return token

    def check(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of `token` (its idle clock restarted when `touch`), None when there is
        none; raises SessionExpired (and forgets it) when it ran past a limit."""
        if not token:
            return None
        key = _digest(token)
        now = self.clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            reason = self._expired(session, now)
            if reason:
                del self._sessions[key]
                raise SessionExpired(session, reason)
            if touch:
                session = self._sessions[key] = replace(session, last_seen=now)
            return session

    def end(self, token: str | None) -> Session | None:
        """Sign-out: forget the session; returns it (None when there was none)."""
        if not token:
            return None
        with self._lock:
            return self._sessions.pop(_digest(token), None)

    def end_user(self, user: str) -> int:
        """End every session of `user` (disabled, password changed); returns how many."""
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s.user == user]
            for k in keys:
                del self._sessions[k]
        return len(keys)

    def __len__(self) -> int:
        with self._lock:
            self._purge(self.clock())
            return len(self._sessions)

    def _expired(self, session: Session, now: float) -> str:
        if now - session.created >= self.absolute_timeout_s:
            return "absolute"
        if now - session.last_seen >= self.idle_timeout_s:
            return "idle"
        return ""

    def _purge(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]
