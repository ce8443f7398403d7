"""The security administrator's Users page: who may sign in, with which role, who is disabled or
locked out; disable, enable and unlock, each checked in its handler (`users.manage`) and written
to the audit record before the users file changes. Users are added and passwords set on the
server with `gridverse users add|passwd` (a password never passes through this page)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from gridverse.auth.roles import Permission
from gridverse.auth.users import UserError
from ui.signin import require, service, source

RESULT_KEY = "users.result"


def _act(action: str, name: str) -> None:
    """Disable, enable or unlock `name`: permission first, then the audit record, then the file."""
    admin = require(Permission.USERS_MANAGE)
    store = service().users
    user = store.get(name)
    if user is None:
        st.session_state[RESULT_KEY] = ("error", f"No user {name!r} any more.")
        return
    if action == "disable" and user.name == admin.name:
        st.session_state[RESULT_KEY] = ("error", "You cannot disable yourself; ask another security administrator.")
        return
    locked = next((u for u in store.list() if u.name == name), None)
    before: dict[str, object] = {"disabled": user.disabled}
    after: dict[str, object] = {"disabled": action == "disable"} if action != "unlock" else {"locked": False}
    if action == "unlock":
        before = {"locked": bool(locked and locked.locked_until), "failed": locked.failed if locked else 0}
    try:
        service().auditor.append(  # type: ignore[union-attr]
            admin.name, admin.role.value, f"users.{action}", name, source=source(), before=before, after=after
        )
    except Exception as exc:  # not recorded, so not done
        st.session_state[RESULT_KEY] = ("error", f"Not done: the audit record refused it ({exc}).")
        return
    try:
        if action == "unlock":
            store.unlock(name)
        else:
            store.set_disabled(name, action == "disable")
    except UserError as exc:
        st.session_state[RESULT_KEY] = ("error", str(exc))
        return
    st.session_state[RESULT_KEY] = ("success", f"{name}: {action}d.")


def page() -> None:
    require(Permission.USERS_MANAGE)
    st.title("Users")
    store = service().users
    st.caption(
        f"Users file `{store.path.resolve()}`. Add users and set passwords on the server: "
        "`gridverse users add NAME --role ROLE`, `gridverse users passwd NAME` (which also unlocks)."
    )
    result = st.session_state.pop(RESULT_KEY, None)
    if result is not None:
        getattr(st, result[0])(result[1])
    users = store.list()
    if not users:
        st.info("No users yet.")
        return
    now = time.time()
    table = pd.DataFrame(
        {
            "user": [u.name for u in users],
            "role": [u.role.value for u in users],
            "state": [
                "disabled"
                if u.disabled
                else f"locked for {max(0.0, u.locked_until - now) / 60:.0f} min"
                if u.locked_until
                else "enabled"
                for u in users
            ],
            "failed sign-ins": [u.failed for u in users],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch")
    name = st.selectbox("User", [u.name for u in users], key="users.pick")
    chosen = next(u for u in users if u.name == name)
    cols = st.columns(3)
    if chosen.disabled:
        cols[0].button("Enable", key="users.enable", on_click=_act, args=("enable", name))
    else:
        cols[0].button("Disable", key="users.disable", on_click=_act, args=("disable", name))
    cols[1].button("Unlock", key="users.unlock", on_click=_act, args=("unlock", name), disabled=not chosen.locked_until)
