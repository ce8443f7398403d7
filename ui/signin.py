"""Sign-in for the console: the form, the signed-in user, and the permission checks every page
and every action makes on the server (deny by default).

- `require(p)` at the top of every page AND inside every action handler before acting: it shows
  "not permitted" and stops the run when the signed-in user lacks `p` (or nobody is signed in).
- `allowed(p)` to decide what to show (a button only for those who may press it); it is not a
  substitute for `require` in the handler.
- `current_user()` the signed-in user, or None.

The session token lives only in `st.session_state` (server side), never in a URL or a cookie. A
full run of the script counts as activity for the idle limit; a fragment's own run (a live panel
refreshing itself) does not, so an unattended console still signs itself out.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import streamlit as st

from gridverse.auth.roles import ROLE_PERMISSIONS, Permission, Role, User
from gridverse.auth.service import REFUSED, AuthService
from gridverse.auth.sessions import SessionExpired

log = logging.getLogger(__name__)

TOKEN_KEY = "gridverse.auth.token"
NOTICE_KEY = "gridverse.auth.notice"


@st.cache_resource
def service() -> AuthService:
    """One sign-in service per UI process (its session table lives here)."""
    from ui import data

    return AuthService.from_settings(data.settings())


def source() -> str:
    """Where the browser connects from (Streamlit gives no address for loopback clients)."""
    try:
        ip = st.context.ip_address
    except Exception:  # no client context (a bare script run)
        ip = None
    return ip if isinstance(ip, str) and ip else "ui"


def _in_fragment_run() -> bool:
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def current_user() -> User | None:
    """The signed-in user, or None (nobody signed in, or the session ran past its idle or
    absolute limit, or the user was disabled meanwhile)."""
    token = st.session_state.get(TOKEN_KEY)
    if not token:
        return None
    try:
        user = service().current(token, touch=not _in_fragment_run(), source=source())
    except SessionExpired as exc:
        st.session_state.pop(TOKEN_KEY, None)
        limit = "without use" if exc.reason == "idle" else "since sign-in"
        minutes = service()._limit(exc.reason) / 60
        st.session_state[NOTICE_KEY] = f"Your session ended after {minutes:.0f} min {limit}; sign in again."
        return None
    if user is None:
        st.session_state.pop(TOKEN_KEY, None)
    return user


def allowed(permission: Permission) -> bool:
    """Whether the signed-in user holds `permission` (False when nobody is signed in)."""
    user = current_user()
    return user is not None and user.can(permission)


def roles_with(permission: Permission) -> list[str]:
    return [r.value for r in Role if permission in ROLE_PERMISSIONS[r]]


def require(permission: Permission) -> User:
    """The signed-in user when they hold `permission`; otherwise say so and stop this run here
    (nothing after the call happens). Server-side: call it inside every action handler too."""
    user = current_user()
    if user is None:
        st.warning("Sign in first: this needs a signed-in user.")
        st.stop()
        raise AssertionError("unreachable")  # st.stop raises; this is for the type checker
    if not user.can(permission):
        log.warning("refused %s to user %s (role %s)", permission.value, user.name, user.role.value)
        st.error(
            f"Not permitted: {permission.value} needs the role {' or '.join(roles_with(permission))}; "
            f"you are signed in as {user.name} ({user.role.value})."
        )
        st.stop()
    return user


def guard_fragments() -> None:
    """Make every `st.fragment` of the pages re-check the session when it runs on its own (a live
    panel refreshing itself every few seconds): once the session has expired, or the user was
    disabled, the whole app reruns and shows the sign-in form instead of going on drawing live
    data for nobody. Called by ui/app.py before any page; idempotent."""
    if getattr(st.fragment, "_gridverse_guarded", False):
        return
    original = st.fragment

    def fragment(func: Any = None, **kwargs: Any) -> Any:
        def wrap(body: Any) -> Any:
            @functools.wraps(body)
            def guarded(*args: Any, **kw: Any) -> Any:
                if _in_fragment_run() and current_user() is None:
                    st.rerun(scope="app")
                return body(*args, **kw)

            return original(guarded, **kwargs)

        return wrap(func) if func is not None else wrap

    fragment._gridverse_guarded = True  # type: ignore[attr-defined]
    st.fragment = fragment


def sign_in_page() -> None:
    """The sign-in form (the only page a signed-out browser gets, at whatever URL it opened)."""
    st.title("gridverse — sign in")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.info(notice)
    if not service().users.exists():
        st.warning(
            "No users yet. A security administrator creates them on the server: "
            "`gridverse users add NAME --role ROLE` (roles: " + ", ".join(r.value for r in Role) + ")."
        )
    _oidc_form()
    with st.form("signin", clear_on_submit=True):
        name = st.text_input("User name", key="signin.user", autocomplete="username")
        password = st.text_input("Password", type="password", key="signin.password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        token, user = service().sign_in(name, password, source=source())
        del password
        if token is None:
            st.error(REFUSED)
            cfg = service().config
            st.caption(
                f"{cfg.max_failed} wrong passwords in a row lock an account for {cfg.lockout_s / 60:.0f} min; "
                "a security administrator can reset it (`gridverse users passwd NAME`)."
            )
            return
        st.session_state[TOKEN_KEY] = token
        st.rerun()


def start_session(name: str) -> str:
    """A session for a user whose identity was established elsewhere (OIDC through `st.login`;
    tests: `at.session_state[TOKEN_KEY] = start_session("operator")`). The user must exist and
    be enabled in the users file, which gives the role; KeyError otherwise."""
    user = service().users.get(name)
    if user is None or user.disabled:
        raise KeyError(f"no enabled user {name!r} in {service().users.path}; add it with `gridverse users add`")
    return service().sessions.create(user.name, source())


def _oidc_form() -> None:
    """Sign-in through the identity provider (`auth.oidc`); its user name (preferred_username,
    else e-mail) must be a user in the users file, which gives the role. Untested here: there is
    no identity provider on this machine."""
    oidc = service().config.oidc
    if not oidc.enabled:
        return
    identity = st.user
    if identity.get("is_logged_in"):
        name = str(identity.get("preferred_username") or identity.get("email") or "(unnamed)")
        user = service().users.get(name)
        if user is None or user.disabled:
            service().audit(name, "", "auth.signin_failed", name, source=source(), reason="oidc: no such enabled user")
            st.error(f"{name} is known to the identity provider but not a console user; ask a security administrator.")
            if st.button("Sign out of the identity provider", key="signin.oidc_out"):
                st.logout()
            return
        st.session_state[TOKEN_KEY] = start_session(name)
        service().audit(name, user.role.value, "auth.signin", name, source=source(), reason="oidc")
        st.rerun()
    if st.button("Sign in with the identity provider", key="signin.oidc"):
        if oidc.provider:
            st.login(oidc.provider)
        else:
            st.login()


def sign_out() -> None:
    service().sign_out(st.session_state.pop(TOKEN_KEY, None), source=source())
    if service().config.oidc.enabled and st.user.get("is_logged_in"):
        st.logout()


def sidebar(user: User) -> None:
    """Who is signed in, and the sign-out button (always visible)."""
    with st.sidebar:
        st.markdown(f"Signed in as **{user.name}** ({user.role.value})")
        if st.button("Sign out", key="signin.signout", icon=":material/logout:"):
            sign_out()
            st.rerun()
