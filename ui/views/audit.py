"""The security auditor's page: browse the audit record (who did what, when, from where, to what,
why), filtered by actor, action and time, and verify its hash chain and signed checkpoints.
Read-only: nothing on this page writes to the record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

from gridverse.audit import AuditRecord, verify_record
from gridverse.auth.roles import Permission
from ui import data
from ui.signin import require

COLUMNS = ["seq", "time", "actor", "role", "source", "action", "target", "before", "after", "reason"]
MAX_ROWS = 2000


def _frame(path: Path) -> pd.DataFrame:
    """The record's entries as a table; before/after as compact JSON text."""
    rows = [e.to_dict() for e in AuditRecord(path).entries()]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "hash"])
    for col in ("before", "after"):
        frame[col] = [
            "" if v is None else json.dumps(v, ensure_ascii=False, separators=(", ", ": ")) for v in frame[col]
        ]
    frame["when"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame


def _verify(path: Path) -> None:
    require(Permission.AUDIT_VIEW)  # the handler checks too, not only the page
    report = verify_record(path)
    st.session_state["audit.verified"] = (datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), report)


def page() -> None:
    require(Permission.AUDIT_VIEW)
    st.title("Audit record")
    path = Path(data.settings().audit.path)
    st.caption(
        f"Record `{path.resolve()}` — append-only, each entry hash-chained to the one before, with "
        "Ed25519-signed checkpoints. This page only reads it; `gridverse audit verify` checks it from a shell."
    )
    st.button("Verify now", on_click=_verify, args=(path,), type="primary")
    done = st.session_state.get("audit.verified")
    if done is not None:
        when, report = done
        if report.ok:
            st.success(f"Intact (checked {when}): {report.summary().removeprefix('INTACT: ')}")
            for note in report.notes:
                st.caption(note)
        else:
            st.error(f"Broken (checked {when}): {report.summary()}")
            st.markdown("\n".join(f"- {problem}" for problem in report.problems[:50]))
    try:
        frame = _frame(path)
    except OSError as exc:
        st.error(f"The audit record cannot be read: {exc}")
        return
    if frame.empty:
        st.info(f"No entries yet in {path}: sign-ins, acknowledgements, writes and other actions appear here.")
        return
    c1, c2, c3 = st.columns([2, 2, 3])
    actors = c1.multiselect("Actor", sorted(frame["actor"].unique()), key="audit.actors")
    actions = c2.multiselect("Action", sorted(frame["action"].unique()), key="audit.actions")
    first, last = frame["when"].min().date(), frame["when"].max().date()
    span = c3.date_input("Between (UTC dates)", (first, last), min_value=first, max_value=last, key="audit.span")
    shown = frame
    if actors:
        shown = shown[shown["actor"].isin(actors)]
    if actions:
        shown = shown[shown["action"].isin(actions)]
    if isinstance(span, tuple | list) and len(span) == 2:
        start = datetime.combine(span[0], time.min, tzinfo=UTC)
        end = datetime.combine(span[1], time.min, tzinfo=UTC) + timedelta(days=1)
        shown = shown[(shown["when"] >= start) & (shown["when"] < end)]
    shown = shown.sort_values("seq", ascending=False)
    st.caption(
        f"{len(shown)} of {len(frame)} entries"
        + (f"; the newest {MAX_ROWS} shown" if len(shown) > MAX_ROWS else "")
        + f"; newest entry {frame['time'].iloc[-1]}"
    )
    st.dataframe(
        shown.head(MAX_ROWS)[COLUMNS],
        hide_index=True,
        use_container_width=True,
        column_config={
            "seq": st.column_config.NumberColumn("Seq", width="small"),
            "time": st.column_config.TextColumn("When (UTC)"),
            "source": st.column_config.TextColumn("From"),
            "before": st.column_config.TextColumn("Before", width="medium"),
            "after": st.column_config.TextColumn("After", width="medium"),
            "reason": st.column_config.TextColumn("Why", width="medium"),
        },
    )
