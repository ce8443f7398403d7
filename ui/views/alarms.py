"""The operators' alarm page (ISA-18.2): the alarm table with acknowledge, shelve and unshelve
(operators), remove from service and return to service (engineers: maintenance, under their
authority), a flood banner, and the alarm-load figures of EEMUA 191.

Every action is checked on the server inside its handler (`require`) and written to the audit
record BEFORE the alarm store changes: an action the record refuses is not performed. With the
stack down (its detectors have not evaluated recently) the page says so and shows the states as
last recorded, never as live."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from anomaly.alarmstate import InvalidTransition, bad_actors, flood, parse_key, per_window, standing
from anomaly.alarmstates import Event, transition
from gridverse.audit import open_audit
from gridverse.auth.roles import Permission
from ui import alarmdata, data
from ui.signin import allowed, require, source

PICK_KEY = "alarms.pick"
TABLE_KEY = "alarms.table"
ROW_HEIGHT_PX = 78
SHELF_CHOICES = {"1 hour": 3600.0, "4 hours": 4 * 3600.0, "8 hours (a shift)": 8 * 3600.0, "24 hours": 86400.0}
ACTIONS = {
    Event.ACK: "alarm.ack",
    Event.SHELVE: "alarm.shelve",
    Event.UNSHELVE: "alarm.unshelve",
    Event.REMOVE: "alarm.remove",
    Event.RETURN: "alarm.return",
}
PERMISSIONS = {
    Event.ACK: Permission.ALARM_ACK,
    Event.SHELVE: Permission.ALARM_SHELVE,
    Event.UNSHELVE: Permission.ALARM_SHELVE,
    Event.REMOVE: Permission.ALARM_SERVICE,
    Event.RETURN: Permission.ALARM_SERVICE,
}
VERBS = {
    "ack": "Acknowledged",
    "shelve": "Shelved",
    "unshelve": "Unshelved",
    "remove": "Removed from service",
    "return": "Returned to service",
}


def _act(event: Event, keys: list[str], *, reason: str = "", until_ns: int | None = None) -> None:
    """Apply one operator action to each selected alarm: check the permission, record it in the
    audit record, then change the store. Results go to the session for the next run to show."""
    user = require(PERMISSIONS[event])  # server side, in the handler: deny by default
    store = alarmdata.store()
    audit = open_audit(data.settings())
    done, refused = [], []
    for key in keys:
        row = store.get(parse_key(key))
        if row is None:
            refused.append(f"{key}: no longer in the alarm store")
            continue
        try:
            after = transition(row.status, event)
        except InvalidTransition as exc:
            refused.append(f"{key}: {exc}")
            continue
        before_doc: dict[str, object] = {"state": str(row.state), "active": row.active}
        after_doc: dict[str, object] = {"state": str(after.state), "active": after.active}
        if event is Event.SHELVE and until_ns is not None:
            after_doc["until"] = pd.Timestamp(until_ns, tz="UTC").isoformat()
        try:
            audit.append(
                user.name,
                user.role.value,
                ACTIONS[event],
                target=key,
                source=source(),
                before=before_doc,
                after=after_doc,
                reason=reason,
            )
        except Exception as exc:  # not recorded, so not done
            refused.append(f"{key}: not done, the audit record refused it ({exc})")
            continue
        try:
            if event is Event.ACK:
                store.acknowledge(key, user.name, reason)
            elif event is Event.SHELVE:
                assert until_ns is not None
                store.shelve(key, user.name, reason, until_ns)
            elif event is Event.REMOVE:
                store.remove_from_service(key, user.name, reason)
            elif event is Event.RETURN:
                store.return_to_service(key, user.name)
            else:
                store.unshelve(key, user.name)
        except (InvalidTransition, KeyError) as exc:
            refused.append(f"{key}: {exc}")
            continue
        done.append(key)
    st.session_state["alarms.result"] = (event.value, done, refused)
    for key in (PICK_KEY, TABLE_KEY, "alarms.table_pick"):  # done: nothing stays selected
        st.session_state.pop(key, None)


def _result() -> None:
    result = st.session_state.pop("alarms.result", None)
    if result is None:
        return
    what, done, refused = result
    verb = VERBS[what]
    if done:
        st.success(f"{verb}: {', '.join(done)}")
    for line in refused:
        st.error(line)


def _flood_banner(events: list, now_ns: int) -> None:
    cfg = data.settings().anomaly
    found = flood(events, now_ns, window_s=cfg.flood_window_s, limit=cfg.flood_count)
    if found is None:
        return
    where = ", ".join(f"{s}: {n}" for s, n in list(found.by_substation.items())[:6])
    devices = ", ".join(f"{d} ({n})" for d, n in list(found.by_device.items())[:8])
    st.error(
        f"**Alarm flood**: {found.arrivals} alarms in the last {found.window_s / 60:.0f} minutes "
        f"(more than {found.limit}). By substation: {where}. Most from: {devices}. "
        "Handle the highest priority first; consider shelving the known consequences.",
        icon=":material/flood:",
    )


def _actions(keys: list[str], table: pd.DataFrame) -> None:
    """The buttons for the selected alarms (shown only to those who may press them; the handlers
    check again)."""
    cfg = data.settings().anomaly
    can_ack, can_shelve = allowed(Permission.ALARM_ACK), allowed(Permission.ALARM_SHELVE)
    if not (can_ack or can_shelve):
        st.caption("Your role may look at alarms; acknowledging and shelving need an operator.")
        return
    states = dict(zip(table["key"], table["state"], strict=False))
    st.caption(f"{len(keys)} selected" if keys else "Select alarms in the table (or the list) to act on them.")
    c1, c2, c3 = st.columns(3)
    with c1:
        comment = st.text_input("Comment (optional)", key="alarms.comment")
        if st.button("Acknowledge", key="alarms.ack", disabled=not (keys and can_ack), type="primary"):
            _act(Event.ACK, keys, reason=comment)
            st.rerun()
    with c2:
        reason = st.text_input("Shelving reason (required)", key="alarms.reason")
        choices = [k for k, s in SHELF_CHOICES.items() if s <= cfg.shelve_max_s] or [next(iter(SHELF_CHOICES))]
        expiry = st.selectbox("Shelve for", choices, key="alarms.expiry")
        if st.button("Shelve", key="alarms.shelve", disabled=not (keys and can_shelve)):
            if not reason.strip():
                st.error("Shelving needs a reason: say why the alarm may be set aside.")
            else:
                until = time.time_ns() + int(min(SHELF_CHOICES[expiry], cfg.shelve_max_s) * 1e9)
                _act(Event.SHELVE, keys, reason=reason.strip(), until_ns=until)
                st.rerun()
    with c3:
        shelved = [k for k in keys if states.get(k) == alarmdata.STATE_LABELS["shelved"]]
        st.write("")
        if st.button("Unshelve", key="alarms.unshelve", disabled=not (shelved and can_shelve)):
            _act(Event.UNSHELVE, shelved)
            st.rerun()
    if allowed(Permission.ALARM_SERVICE):
        _service_actions(keys, states)


def _service_actions(keys: list[str], states: dict[str, str]) -> None:
    """Remove from service (maintenance: the alarm is not annunciated until returned) and return
    to service: an engineer's actions, each with its reason in the audit record."""
    out = alarmdata.STATE_LABELS["out_of_service"]
    removed = [k for k in keys if states.get(k) == out]
    with st.expander("Maintenance: remove from service (engineers)"):
        why = st.text_input("Reason and work order (required)", key="alarms.service_reason")
        c1, c2 = st.columns(2)
        if c1.button("Remove from service", key="alarms.remove", disabled=not keys):
            if not why.strip():
                st.error("Removing an alarm from service needs a reason (and its work order).")
            else:
                _act(Event.REMOVE, [k for k in keys if k not in removed], reason=why.strip())
                st.rerun()
        if c2.button("Return to service", key="alarms.return", disabled=not removed):
            _act(Event.RETURN, removed)
            st.rerun()


def _alarm_load(events: list, rows: list, now_ns: int) -> None:
    cfg = data.settings().anomaly
    st.subheader("Alarm load")
    hours = 6
    since = now_ns - hours * 3600 * 10**9
    counts = per_window(events, since, now_ns, 600.0)
    starts = [pd.Timestamp(since + i * 600 * 10**9, tz="UTC") for i in range(len(counts))]
    frame = pd.DataFrame({"alarms per 10 minutes": counts}, index=pd.DatetimeIndex(starts, name="from"))
    c1, c2, c3 = st.columns(3)
    c1.metric("Alarms, last 10 minutes", counts[-1] if counts else 0, help="EEMUA 191: at most about 1 is manageable")
    c2.metric(f"Average per 10 minutes, last {hours} h", f"{sum(counts) / max(len(counts), 1):.1f}")
    c3.metric("Peak 10 minutes", max(counts) if counts else 0)
    st.bar_chart(frame, height=180)
    left, right = st.columns(2)
    with left:
        st.markdown("**Standing alarms** (active for more than 24 h)")
        stand = standing(rows, now_ns)
        if stand:
            st.dataframe(alarmdata.table(stand)[["key", "raised", "message"]], hide_index=True)
        else:
            st.caption("None.")
        st.markdown(f"**Chattering** ({cfg.chatter_count}+ in {cfg.chatter_window_s / 60:.0f} min: held and folded)")
        chatter = [r for r in rows if r.chattering]
        if chatter:
            st.dataframe(alarmdata.table(chatter)[["key", "count", "message"]], hide_index=True)
        else:
            st.caption("None.")
    with right:
        st.markdown(f"**Top 10 bad actors** (last {hours} h)")
        worst = bad_actors([e for e in events if e.time_ns >= since], 10)
        if worst:
            st.dataframe(pd.DataFrame(worst, columns=["alarm", "occurrences"]), hide_index=True)
        else:
            st.caption("None.")


def _table_pick(keys: list[str], rows: list[int]) -> list[str]:
    """The alarms picked in the table, by key. Streamlit reports row positions; they are turned
    into keys against the table the operator clicked (the previous run's), and only when the
    selection changed, so a refresh that reorders the table never retargets an action."""
    state = st.session_state
    if rows != state.get("alarms.rows_seen"):
        shown_before = state.get("alarms.keys_shown", keys)
        state["alarms.table_pick"] = [shown_before[i] for i in rows if i < len(shown_before)]
        state["alarms.rows_seen"] = rows
    state["alarms.keys_shown"] = keys
    return [k for k in state.get("alarms.table_pick", []) if k in keys]


def _pending() -> bool:
    """Alarms are selected: live refresh pauses so the table holds still under the operator."""
    state = st.session_state
    return bool(state.get(PICK_KEY)) or bool(state.get("alarms.table_pick"))


def _in_fragment_run() -> bool:
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def page() -> None:
    require(Permission.GRID_VIEW)
    st.title("Alarms")
    _result()
    pending = _pending()
    refresh_s = data.settings().ui.refresh_s

    @st.fragment(run_every=None if pending else refresh_s)
    def live() -> None:
        selected = _live(pending, refresh_s)
        if _in_fragment_run() and bool(selected) != pending:
            st.rerun()  # the whole page: live refresh pauses (or resumes) with the selection

    live()


def _live(pending: bool, refresh_s: float) -> list[str]:
    now = time.time_ns()
    store = alarmdata.store()
    fresh = alarmdata.freshness(now)
    rows = store.rows(now_ns=now)
    events = store.events(now - 6 * 3600 * 10**9)
    if fresh.live:
        how = "paused while alarms are selected" if pending else f"refreshes every {refresh_s:g} s"
        st.caption(f"Live ({how}): {fresh.describe()}.")
    else:
        st.warning(
            f"The stack's detectors are not running ({fresh.describe()}): the states below are as last "
            "recorded and may no longer be true. Start the stack to see live alarms.",
            icon=":material/sync_problem:",
        )
    if fresh.live:
        _flood_banner(events, now)
    show_all = st.toggle("Show alarms back to normal too", key="alarms.all")
    shown = [r for r in rows if show_all or str(r.state) != "normal"]
    table = alarmdata.table(shown)
    title = "Alarms" if fresh.live else "Alarms as last recorded (not live)"
    st.subheader(f"{title} · {len(table)}")
    picked_rows: list[int] = []
    if table.empty:
        st.info("No alarms." if fresh.live else "No alarms recorded.")
    else:
        event = st.dataframe(
            table,
            hide_index=True,
            key=TABLE_KEY,
            on_select="rerun",
            selection_mode="multi-row",
            row_height=ROW_HEIGHT_PX,
            height=min(len(table), 8) * ROW_HEIGHT_PX
            + 40,  # above 64 px Streamlit wraps text: messages are read whole, never cut off
            column_order=["priority", "state", "raised", "substation", "device", "point", "message", "count", "note"],
            column_config={
                "priority": st.column_config.TextColumn("Priority", width=70),
                "state": st.column_config.TextColumn("State", width=140),
                "raised": st.column_config.DatetimeColumn("Raised (UTC)", format="MM-DD HH:mm:ss", width=100),
                "substation": st.column_config.TextColumn("Substation", width=85),
                "device": st.column_config.TextColumn("Device", width=80),
                "point": st.column_config.TextColumn("Point", width=105),
                "message": st.column_config.TextColumn("Message", width=360),
                "count": st.column_config.NumberColumn("Count", width=50, help="occurrences (chattering folded in)"),
                "note": st.column_config.TextColumn("Note", width=160, help="acknowledgement, shelf or suppression"),
            },
        )
        selection = getattr(event, "selection", None)
        picked_rows = list(getattr(selection, "rows", []) or []) if selection is not None else []
    keys = list(table["key"])
    from_table = _table_pick(keys, picked_rows)
    chosen = st.multiselect("Selected alarms", keys, default=None, key=PICK_KEY)
    selected = list(dict.fromkeys(from_table + [k for k in chosen if k in keys]))
    if selected:
        with st.expander("Selected alarms in full (the actions apply to these)", expanded=True):
            by_key = {r.key_text: r for r in shown}
            for k in selected:
                r = by_key[k]
                st.markdown(
                    f"**{k}** — {r.priority}, {alarmdata.STATE_LABELS.get(str(r.state), r.state)}  \n{r.message}"
                )
    _actions(selected, table)
    _alarm_load(events, rows, now)
    return selected
